//! Crawl requests: the contract's inbound shape (§2.1), validated with its
//! exact rules, and the internal [`Job`] the scheduler queues.

use crate::extract::Format;
use crate::links::LinkFilters;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use thiserror::Error;

mod rules;
pub(crate) use rules::check_length;
pub use rules::check_spiderid;

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
    /// Run the crawl again on a schedule (`schedule::Schedule` says how;
    /// checked when the request is accepted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Value>,
    /// Compare each run's pages with the last's (`revisit::Revisit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revisit: Option<Value>,
    /// POST the crawl's events here (`notify::Webhook`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<Value>,
    /// What each result carries: `html` (the body, the default),
    /// `markdown`, `text`, `metadata`, `jsonld` (`extract::formats`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formats: Option<Vec<Format>>,
    /// `text` and `markdown` of the page's main part only, without its
    /// navigation and boilerplate.
    #[serde(default, skip_serializing_if = "is_false")]
    pub main_content: bool,
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

    fn filters(&self) -> Result<LinkFilters, regex::Error> {
        LinkFilters::new(
            self.allowed_domains.as_deref(),
            self.allow_regex.as_deref(),
            self.deny_regex.as_deref(),
            self.deny_extensions.as_deref(),
        )
    }

    /// The request's schedule (validated when it was accepted; `None`
    /// if it has none).
    pub fn schedule(&self) -> Option<crate::schedule::Schedule> {
        let field = self.schedule.as_ref()?;
        crate::schedule::Schedule::parse(field, jiff::Timestamp::now()).ok()
    }

    /// The request's webhook (validated when it was accepted).
    pub fn webhook(&self) -> Option<crate::notify::Webhook> {
        crate::notify::Webhook::parse(self.webhook.as_ref()?).ok()
    }

    /// The queued seed request and the crawl it starts, as its first run
    /// (see [`CrawlRequest::into_run`]).
    pub fn into_seed(self) -> Job {
        let run = u32::from(self.schedule.is_some() || self.revisit.is_some());
        self.into_run(run)
    }

    /// The seed of run `run` of the crawl (0: a crawl without runs).
    pub fn into_run(self, run: u32) -> Job {
        let revisit = self
            .revisit
            .as_ref()
            .and_then(|r| crate::revisit::Revisit::parse(r).ok());
        let spec = CrawlSpec {
            run,
            revisit,
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
            formats: self.formats,
            main_content: self.main_content,
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
            prior: None,
        }
    }
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
    /// The run of a scheduled or revisited crawl (from 1); 0 for a crawl
    /// without runs. Dedup is per run: the crawl's seen set is emptied as
    /// a run fires, so each run reads every page again.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub run: u32,
    /// How its pages are compared with the last run's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revisit: Option<crate::revisit::Revisit>,
    /// What its results carry besides (or instead of) the body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formats: Option<Vec<Format>>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub main_content: bool,
    #[serde(skip)]
    filters: OnceLock<LinkFilters>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
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
            // Checked when the request was accepted (`rules.rs`,
            // `check_filters`), by this same code: it cannot fail here.
            .expect("link rules checked at submission compile")
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
    /// What the last run kept of this page, for a revisited crawl: the pop
    /// brings it (no extra store call); never stored with the job.
    #[serde(skip)]
    pub prior: Option<Arc<crate::revisit::PageState>>,
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
