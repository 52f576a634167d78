//! Crawl requests: the contract's inbound shape (§2.1), validated with its
//! exact rules, and the internal [`Job`] the scheduler queues.

use crate::links::LinkFilters;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, OnceLock};
use thiserror::Error;

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
        if url::Url::parse(&self.url).is_err() {
            return bad(format!("`url` {:?} is not a valid URL", self.url));
        }
        check_len("appid", &self.appid, 3, 40)?;
        check_len("crawlid", &self.crawlid, 1, 40)?;
        check_len("spiderid", &self.spiderid, 1, 100)?;
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
        if let Some(m) = &self.method {
            if m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic()) {
                return bad(format!("`method` {m:?} is not an HTTP method"));
            }
        }
        self.filters()
            .map_err(|e| RequestError::Schema(format!("bad regex: {e}")))?;
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
        }
    }
}

fn check_len(name: &str, v: &str, min: usize, max: usize) -> Result<(), RequestError> {
    check_length(name, v, min, max).map_err(RequestError::Schema)
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
    #[serde(skip)]
    filters: OnceLock<LinkFilters>,
}

impl CrawlSpec {
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
        ];
        for (json, needle) in cases {
            let err = parse(json).expect_err(json).to_string();
            assert!(err.contains(needle), "{json}: {err}");
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
