//! Crawl requests: the contract's inbound shape (§2.1), validated with its
//! exact rules, and the internal [`Job`] the scheduler queues.

use crate::links::{filter, LinkFilters, MAX_URL_BYTES};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, OnceLock};
use thiserror::Error;

/// Items in `allowed_domains` and `deny_extensions`.
const MAX_LIST_ITEMS: usize = 1000;
/// Bytes of one list item or one header (name and value).
const MAX_ITEM_BYTES: usize = 8 * 1024;
/// Entries in `headers`.
const MAX_HEADERS: usize = 64;
/// Bytes of a request `body`.
const MAX_BODY_BYTES: usize = 256 * 1024;

#[derive(Debug, Error, PartialEq)]
pub enum RequestError {
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("{0}")]
    Schema(String),
}

/// A crawl request as a client sends it (contract §2.1), defaults filled.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CrawlRequest {
    pub url: String,
    pub appid: String,
    pub crawlid: String,
    #[serde(default = "default_spiderid")]
    pub spiderid: String,
    #[serde(default = "default_priority")]
    pub priority: i64,
    #[serde(default)]
    pub maxdepth: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain_max_pages: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_domains: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_regex: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deny_regex: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deny_extensions: Option<Vec<String>>,
    #[serde(default)]
    pub expires: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub useragent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attrs: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Also seed the crawl from the site's sitemaps (contract §2.1).
    #[serde(default, skip_serializing_if = "is_false")]
    pub sitemaps: bool,
    /// Fetch pages in a headless browser (contract §2.1, §3 "Rendering").
    #[serde(default, skip_serializing_if = "RenderMode::is_never")]
    pub render: RenderMode,
}

/// When a crawl's pages are rendered in a headless browser.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RenderMode {
    #[default]
    Never,
    Always,
    /// Fetched plainly first; rendered when the HTML looks script-built.
    Auto,
}

impl RenderMode {
    pub fn is_never(&self) -> bool {
        *self == RenderMode::Never
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn default_spiderid() -> String {
    "link".into()
}
fn default_priority() -> i64 {
    1
}

impl CrawlRequest {
    /// Parse and validate one request. `maxdepth_limit` is the setting
    /// `crawl.maxdepth_limit`.
    pub fn parse(text: &str, maxdepth_limit: u32) -> Result<Self, RequestError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| RequestError::NotJson(e.to_string()))?;
        Self::from_value(value, maxdepth_limit)
    }

    pub fn from_value(value: Value, maxdepth_limit: u32) -> Result<Self, RequestError> {
        let Value::Object(obj) = &value else {
            return Err(RequestError::Schema(
                "a crawl request must be a JSON object".into(),
            ));
        };
        if let Some((k, _)) = obj.iter().find(|(_, v)| v.is_null()) {
            return Err(RequestError::Schema(format!(
                "`{k}` is null: leave an optional field out instead"
            )));
        }
        let mut req: CrawlRequest =
            serde_json::from_value(value).map_err(|e| RequestError::Schema(e.to_string()))?;
        req.validate(maxdepth_limit)?;
        Ok(req)
    }

    fn validate(&mut self, maxdepth_limit: u32) -> Result<(), RequestError> {
        let bad = |m: String| Err(RequestError::Schema(m));
        let url = self.url.trim();
        if url.is_empty() {
            return bad("`url` is empty".into());
        }
        // The reference retries a URL without a scheme as http://.
        self.url = if url.contains("://") {
            url.to_string()
        } else {
            format!("http://{url}")
        };
        if self.url.len() > MAX_URL_BYTES {
            return bad(format!(
                "`url` is {} bytes, longer than the {MAX_URL_BYTES} allowed",
                self.url.len()
            ));
        }
        match url::Url::parse(&self.url) {
            Err(_) => return bad(format!("`url` {:?} is not a valid URL", self.url)),
            Ok(u) if !matches!(u.scheme(), "http" | "https") => {
                return bad(format!(
                    "`url` {:?} is a {}: URL; only http and https are crawled",
                    self.url,
                    u.scheme()
                ))
            }
            Ok(_) => {}
        }
        check_len("appid", &self.appid, 3, 40)?;
        check_len("crawlid", &self.crawlid, 1, 40)?;
        check_spiderid(&self.spiderid).map_err(RequestError::Schema)?;
        if !(1..=100).contains(&self.priority) {
            return bad(format!("`priority` {} is outside 1..100", self.priority));
        }
        if self.maxdepth > maxdepth_limit {
            return bad(format!(
                "`maxdepth` {} is above the limit {maxdepth_limit}",
                self.maxdepth
            ));
        }
        if self.domain_max_pages.is_some_and(|n| n > 2000) {
            return bad("`domain_max_pages` is outside 0..2000".into());
        }
        for (name, list) in [
            ("allowed_domains", &self.allowed_domains),
            ("allow_regex", &self.allow_regex),
            ("deny_regex", &self.deny_regex),
            ("deny_extensions", &self.deny_extensions),
        ] {
            if let Some(list) = list {
                let regex = name.ends_with("regex");
                let (max_items, max_len) = if regex {
                    (filter::MAX_PATTERNS, filter::MAX_PATTERN_BYTES)
                } else {
                    (MAX_LIST_ITEMS, MAX_ITEM_BYTES)
                };
                if list.len() > max_items {
                    return bad(format!(
                        "`{name}` has {} items, more than the {max_items} allowed",
                        list.len()
                    ));
                }
                if let Some(long) = list.iter().find(|v| v.len() > max_len) {
                    return bad(format!(
                        "`{name}` has an item of {} bytes, longer than the {max_len} allowed",
                        long.len()
                    ));
                }
                let mut seen = HashSet::new();
                if let Some(dup) = list.iter().find(|v| !seen.insert(v.as_str())) {
                    return bad(format!("`{name}` has {dup:?} twice: items must be unique"));
                }
            }
        }
        if self.expires < 0 {
            return bad("`expires` must be Unix seconds, or 0 for never".into());
        }
        if let Some(ua) = &self.useragent {
            check_len("useragent", ua, 3, 1000)?;
        }
        if let Some(c) = &self.cookie {
            check_len("cookie", c, 3, 1000)?;
        }
        if let Some(h) = &self.headers {
            if h.len() > MAX_HEADERS {
                return bad(format!(
                    "`headers` has {} entries, more than the {MAX_HEADERS} allowed",
                    h.len()
                ));
            }
            if let Some((k, _)) = h.iter().find(|(k, v)| k.len() + v.len() > MAX_ITEM_BYTES) {
                return bad(format!(
                    "`headers` entry {k:?} is longer than the {MAX_ITEM_BYTES} bytes allowed"
                ));
            }
            // A name or value that HTTP cannot carry would be refused at
            // fetch time, or split into headers of the request's choosing.
            if let Some((k, _)) = h.iter().find(|(k, v)| {
                reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err()
                    || reqwest::header::HeaderValue::from_str(v).is_err()
            }) {
                return bad(format!(
                    "`headers` entry {k:?} is not a valid HTTP header (no CR, LF or control characters in names or values)"
                ));
            }
        }
        if self.body.as_ref().is_some_and(|b| b.len() > MAX_BODY_BYTES) {
            return bad(format!(
                "`body` is longer than the {MAX_BODY_BYTES} bytes allowed"
            ));
        }
        if let Some(m) = &self.method {
            if m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic()) {
                return bad(format!("`method` {m:?} is not an HTTP method"));
            }
        }
        self.filters().map_err(|e| {
            RequestError::Schema(match e {
                regex::Error::CompiledTooBig(_) => format!(
                    "bad regex: the patterns compile to more than {} bytes; use fewer or simpler ones",
                    filter::MAX_COMPILED_BYTES
                ),
                e => format!("bad regex: {e}"),
            })
        })?;
        Ok(())
    }

    fn filters(&self) -> Result<LinkFilters, regex::Error> {
        LinkFilters::new(
            self.allowed_domains.as_deref(),
            self.allow_regex.as_deref(),
            self.deny_regex.as_deref(),
            self.deny_extensions.as_deref(),
        )
    }

    /// The queued seed request and the crawl it starts.
    pub fn into_seed(self) -> Job {
        let spec = CrawlSpec {
            appid: self.appid,
            crawlid: self.crawlid,
            maxdepth: self.maxdepth,
            domain_max_pages: self.domain_max_pages,
            allowed_domains: self.allowed_domains,
            allow_regex: self.allow_regex,
            deny_regex: self.deny_regex,
            deny_extensions: self.deny_extensions,
            expires: self.expires,
            useragent: self.useragent,
            cookie: self.cookie,
            attrs: self.attrs.map(Value::Object),
            spiderid: self.spiderid.clone(),
            site: crate::links::domain::of_url(&self.url),
            sitemaps: self.sitemaps,
            render: self.render,
            filters: OnceLock::new(),
        };
        let mut headers: Vec<(String, String)> =
            self.headers.unwrap_or_default().into_iter().collect();
        headers.sort();
        Job {
            crawl: Arc::new(spec),
            url: self.url,
            spiderid: self.spiderid,
            priority: self.priority as i32,
            depth: 0,
            method: self
                .method
                .map(|m| m.to_ascii_uppercase())
                .unwrap_or_else(|| "GET".into()),
            headers,
            body: self.body.map(String::into_bytes),
            meta: Vec::new(),
            retries: 0,
            dont_filter: false,
            redirected_from: None,
            redirects: 0,
            pauses: 0,
            spaced: false,
        }
    }
}

fn check_len(name: &str, v: &str, min: usize, max: usize) -> Result<(), RequestError> {
    check_length(name, v, min, max).map_err(RequestError::Schema)
}

/// A spider name (contract §2.1): 1-40 of `A-Z a-z 0-9 _ - .`. It is
/// woven into queue and throttle keys, so nothing else may get in.
pub fn check_spiderid(v: &str) -> Result<(), String> {
    check_length("spiderid", v, 1, 40)?;
    if let Some(c) = v
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(format!(
            "`spiderid` {v:?} has {c:?}: only A-Z a-z 0-9 _ - . are allowed"
        ));
    }
    Ok(())
}

/// The contract's length rule: `name` must be `min..=max` characters.
pub(crate) fn check_length(name: &str, v: &str, min: usize, max: usize) -> Result<(), String> {
    let n = v.chars().count();
    if n < min || n > max {
        return Err(format!("`{name}` must be {min}-{max} characters, got {n}"));
    }
    Ok(())
}

/// What every request of one crawl shares. Stored once per crawl in
/// Redis, so absent options are left out of its JSON.
#[derive(Debug, Serialize, Deserialize)]
pub struct CrawlSpec {
    pub appid: String,
    pub crawlid: String,
    pub maxdepth: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain_max_pages: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_domains: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_regex: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deny_regex: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deny_extensions: Option<Vec<String>>,
    pub expires: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub useragent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attrs: Option<Value>,
    /// The seed's spider (named in info, stop and expired replies).
    #[serde(default)]
    pub spiderid: String,
    /// The seed's registered domain: the crawl's `cookie` and credential
    /// headers go to its hosts only (contract §3). Empty for a crawl stored
    /// before it existed, which then sends them nowhere.
    #[serde(default)]
    pub site: String,
    /// The seed's site's sitemaps seed the crawl too.
    #[serde(default, skip_serializing_if = "is_false")]
    pub sitemaps: bool,
    /// Its pages are rendered (always, or when they look script-built).
    #[serde(default, skip_serializing_if = "RenderMode::is_never")]
    pub render: RenderMode,
    #[serde(skip)]
    filters: OnceLock<LinkFilters>,
}

impl CrawlSpec {
    /// May `url` be sent the crawl's credentials (its `cookie`, credential
    /// headers)? Only hosts of the seed's registered domain may.
    pub fn trusts(&self, url: &str) -> bool {
        !self.site.is_empty() && crate::links::domain::of_url(url) == self.site
    }

    /// Dedup, caps and stop are scoped by appid + crawlid (contract §3).
    pub fn key(&self) -> CrawlKey {
        CrawlKey {
            appid: self.appid.clone(),
            crawlid: self.crawlid.clone(),
        }
    }

    /// The crawl's compiled link rules (validated at submission).
    pub fn filters(&self) -> &LinkFilters {
        self.filters.get_or_init(|| {
            LinkFilters::new(
                self.allowed_domains.as_deref(),
                self.allow_regex.as_deref(),
                self.deny_regex.as_deref(),
                self.deny_extensions.as_deref(),
            )
            .unwrap_or_default()
        })
    }

    pub fn expired(&self, now_unix: i64) -> bool {
        self.expires > 0 && now_unix >= self.expires
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CrawlKey {
    pub appid: String,
    pub crawlid: String,
}

/// One request in the frontier.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    pub crawl: Arc<CrawlSpec>,
    pub url: String,
    pub spiderid: String,
    pub priority: i32,
    pub depth: u32,
    pub method: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    /// Meta values set by the parent spider: name -> JSON text.
    pub meta: Vec<(String, String)>,
    pub retries: u32,
    pub dont_filter: bool,
    /// Set on a redirect hop: the URL the client (or spider) asked for,
    /// which the result reports as `url`.
    #[serde(default)]
    pub redirected_from: Option<String>,
    /// Redirect hops so far.
    #[serde(default)]
    pub redirects: u32,
    /// Times its site answered 429 or 503 and it was put back for later
    /// (these are not failures: `retries` does not count them).
    #[serde(default)]
    pub pauses: u32,
    /// Set on a lease whose pop spaced its domain's fetches (a robots.txt
    /// Crawl-delay or the adaptive throttle was known then); never stored.
    #[serde(skip)]
    pub spaced: bool,
}

impl Job {
    /// Dedup fingerprint: 16 bytes of xxh3-128 over method, URL and body.
    pub fn fingerprint(&self) -> u128 {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        h.update(self.method.as_bytes());
        h.update(b" ");
        h.update(self.url.as_bytes());
        if let Some(b) = &self.body {
            h.update(b"\0");
            h.update(b);
        }
        h.digest128()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<CrawlRequest, RequestError> {
        CrawlRequest::parse(s, 3)
    }

    #[test]
    fn fills_defaults_and_prefixes_scheme() {
        let r = parse(r#"{"url":"example.com","appid":"app","crawlid":"c1"}"#).expect("valid");
        assert_eq!(r.url, "http://example.com");
        assert_eq!(
            (r.spiderid.as_str(), r.priority, r.maxdepth, r.expires),
            ("link", 1, 0, 0)
        );
    }

    #[test]
    fn a_header_with_cr_lf_and_a_file_url_are_refused_with_the_reason() {
        let e = parse(
            r#"{"url":"a.com","appid":"app","crawlid":"c","headers":{"X-A":"1\r\nX-Injected: 2"}}"#,
        )
        .expect_err("invalid");
        assert!(e.to_string().contains("not a valid HTTP header"), "{e}");
        let e = parse(r#"{"url":"a.com","appid":"app","crawlid":"c","headers":{"X A":"1"}}"#)
            .expect_err("invalid");
        assert!(e.to_string().contains("not a valid HTTP header"), "{e}");
        let e = parse(r#"{"url":"file:///etc/passwd","appid":"app","crawlid":"c"}"#)
            .expect_err("invalid");
        assert!(e.to_string().contains("only http and https"), "{e}");
    }

    #[test]
    fn rejects_what_the_contract_rejects() {
        let cases = [
            (r#"{"url":"a.com","appid":"ap","crawlid":"c"}"#, "appid"),
            (
                r#"{"url":"a.com","appid":"app","crawlid":"c","priority":101}"#,
                "priority",
            ),
            (
                r#"{"url":"a.com","appid":"app","crawlid":"c","maxdepth":4}"#,
                "maxdepth",
            ),
            (
                r#"{"url":"a.com","appid":"app","crawlid":"c","extra":1}"#,
                "extra",
            ),
            (
                r#"{"url":"a.com","appid":"app","crawlid":"c","useragent":null}"#,
                "null",
            ),
            (
                r#"{"url":"a.com","appid":"app","crawlid":"c","allow_regex":["x","x"]}"#,
                "twice",
            ),
            (
                r#"{"url":"a.com","appid":"app","crawlid":"c","deny_regex":["("]}"#,
                "regex",
            ),
            (
                r#"{"url":"a.com","appid":"app","crawlid":"c","domain_max_pages":2001}"#,
                "domain_max_pages",
            ),
            (
                r#"{"url":"a.com","appid":"app","crawlid":"c","spiderid":"link|x"}"#,
                "only A-Z",
            ),
            (
                r#"{"url":"a.com","appid":"app","crawlid":"c","spiderid":"a\nb"}"#,
                "only A-Z",
            ),
            (
                r#"{"url":"a.com","appid":"app","crawlid":"c","spiderid":"s2345678901234567890123456789012345678901"}"#,
                "1-40",
            ),
        ];
        for (json, needle) in cases {
            let err = parse(json).expect_err(json).to_string();
            assert!(err.contains(needle), "{json}: {err}");
        }
    }

    #[test]
    fn rejects_oversized_inputs_with_the_reason() {
        let base = serde_json::json!({"url": "a.com", "appid": "app", "crawlid": "c"});
        let with = |k: &str, v: Value| {
            let mut m = base.clone();
            m[k] = v;
            CrawlRequest::from_value(m, 3).map(|_| ())
        };
        let big: Vec<String> = (0..100)
            .map(|i| format!("{i}{}", "a".repeat(10_000)))
            .collect();
        let many: Vec<String> = (0..100).map(|i| format!("x{i}")).collect();
        let heavy: Vec<String> = (0..32).map(|i| format!("\\w{{{}}}x{i}", 200 + i)).collect();
        let cases = [
            (
                "allow_regex",
                Value::from(big.clone()),
                "100 items, more than the 32",
            ),
            ("deny_regex", Value::from(many), "more than the 32"),
            (
                "deny_regex",
                Value::from(vec![big[0].clone()]),
                "longer than the 1024",
            ),
            ("allow_regex", Value::from(heavy), "compile to more than"),
            (
                "url",
                Value::from(format!("a.com/{}", "x".repeat(9000))),
                "longer than the 8192",
            ),
            ("body", Value::from("b".repeat(300_000)), "`body` is longer"),
        ];
        for (field, value, says) in cases {
            let err = with(field, value).expect_err(field).to_string();
            assert!(err.contains(says), "{field}: {err}");
        }
    }

    #[test]
    fn fingerprint_depends_on_method_url_and_body() {
        let j = parse(r#"{"url":"a.com/x","appid":"app","crawlid":"c"}"#)
            .expect("valid")
            .into_seed();
        let mut k = j.clone();
        assert_eq!(j.fingerprint(), k.fingerprint());
        k.method = "POST".into();
        assert_ne!(j.fingerprint(), k.fingerprint());
    }
}
