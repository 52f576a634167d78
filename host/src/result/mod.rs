//! The crawl result a client sees (contract §4.1), below both the crawl
//! loop that builds it and the sinks that write it: this module imports
//! neither `crawl` nor `bus`.
//!
//! - [`CrawlResult`]: a page's result, typed, as the crawl produced it.
//! - [`ResultJson`] (`json.rs`): its contract JSON, the one writer of it.
//!   A sink encodes a result with it (and may leave parts out to fit a
//!   size limit, [`Part`]); an item pipeline reads single fields of it.

mod json;

pub use json::{Part, ResultJson};

use crate::fetch::Fetched;
use crate::request::Job;
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// Result fields only the host writes: a plugin's value for one of them is
/// dropped, so no plugin can reroute a result to another app or change
/// what was fetched. (`attrs`, `body`, `links` and new fields are the
/// plugins' to set.)
pub const RESERVED: &[&str] = &[
    "appid",
    "crawlid",
    "spiderid",
    "url",
    "response_url",
    "status_code",
    "status_msg",
    "depth",
    "timestamp",
    "fetch_ms",
    "error",
    "links_truncated",
    "rendered",
    "warc",
    "body_ref",
    "run",
    "change",
];

/// Drop the reserved names from a plugin's fields; the names it tried.
pub fn strip_reserved<T>(fields: &mut Vec<(String, T)>) -> Vec<String> {
    let mut tried = Vec::new();
    fields.retain(|(k, _)| {
        let reserved = RESERVED.contains(&k.as_str());
        if reserved {
            tried.push(k.clone());
        }
        !reserved
    });
    tried
}

/// A page's result as the crawl produced it; a sink writes it as the
/// contract's JSON ([`CrawlResult::json`]).
#[derive(Debug, Clone)]
pub struct CrawlResult {
    pub appid: String,
    pub crawlid: String,
    pub spiderid: String,
    /// The URL first asked for (a redirect hop reports its chain's start).
    pub url: String,
    pub depth: u32,
    pub attrs: Option<Value>,
    pub timestamp: String,
    /// What came back; `None` when the fetch itself failed.
    pub fetched: Option<Arc<Fetched>>,
    /// Headers sent, when nothing came back (else `fetched` has them).
    pub request_headers: Vec<(String, String)>,
    pub links: Vec<(String, String)>,
    /// Fields a spider or pipeline added (they win over the fields above).
    pub fields: Map<String, Value>,
    pub error: Option<String>,
    /// Status code set without a response (a body over the size limit).
    pub status_override: Option<u16>,
    /// The page had more links than `crawl.max_links_per_page`: `links`
    /// and the queued children stop at the cap.
    pub links_truncated: bool,
    /// Leave credentials (`Cookie`, `Authorization`, `Proxy-Authorization`)
    /// out of `request_headers`: results go to a shared firehose.
    pub redact_credentials: bool,
    /// The run of a scheduled or revisited crawl.
    pub run: Option<u32>,
    /// A revisited page's change since the last run.
    pub change: Option<crate::revisit::Change>,
    /// The page's `formats`, when the crawl asked for any.
    pub formatted: Option<Arc<crate::extract::Formatted>>,
    /// A data record a spider sent (`response.emit`), not a page: written
    /// as `type: "item"` with the page's names and its own fields only,
    /// sent on `<prefix>.items`.
    pub record: bool,
}

impl CrawlResult {
    /// The result of `job`, with what was fetched; no links, no fields of
    /// a spider's item (the crawl adds those).
    pub fn new(job: &Job, fetched: Option<Arc<Fetched>>, error: Option<String>) -> CrawlResult {
        let c = &job.crawl;
        CrawlResult {
            appid: c.appid.clone(),
            crawlid: c.crawlid.clone(),
            spiderid: job.spiderid.clone(),
            url: job.redirected_from.as_deref().unwrap_or(&job.url).into(),
            depth: job.depth,
            attrs: c.attrs.clone(),
            timestamp: now_iso8601(),
            request_headers: match fetched {
                Some(_) => Vec::new(),
                None => job.headers.clone(),
            },
            fetched,
            links: Vec::new(),
            fields: Map::new(),
            error,
            status_override: None,
            links_truncated: false,
            redact_credentials: true,
            run: (c.run > 0).then_some(c.run),
            change: None,
            formatted: None,
            record: false,
        }
    }

    /// A data record drawn from the page `job` fetched: its fields, the
    /// page's names, no body.
    pub fn record(job: &Job, fields: Map<String, Value>) -> CrawlResult {
        CrawlResult {
            fields,
            record: true,
            request_headers: Vec::new(),
            ..CrawlResult::new(job, None, None)
        }
    }

    /// The status code clients see: the response's, else 0.
    pub fn status(&self) -> u16 {
        self.status_override
            .or(self.fetched.as_ref().map(|f| f.status))
            .unwrap_or(0)
    }

    /// The contract's crawl result (§4.1), the body as text or, with
    /// `base64_body`, as base64 of the raw bytes. Nothing is copied or
    /// decoded until it is written.
    pub fn json(&self, base64_body: bool) -> ResultJson<'_> {
        ResultJson::new(self, base64_body)
    }

    /// What identifies the result when it cannot be delivered whole (dead
    /// letters): never the body, the URL cut to 2 KiB.
    pub fn summary(&self) -> Value {
        let mut url = self.url.clone();
        if url.len() > 2048 {
            url.truncate(url.floor_char_boundary(2048));
            url.push_str("...");
        }
        json!({
            "appid": self.appid,
            "crawlid": self.crawlid,
            "spiderid": self.spiderid,
            "url": url,
            "depth": self.depth,
            "status_code": self.status(),
        })
    }
}

pub fn now_iso8601() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("the clock's year fits RFC 3339")
}

pub fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Results for tests here and in the sinks.
#[cfg(test)]
pub(crate) mod fixture {
    use super::CrawlResult;
    use crate::fetch::Fetched;
    use serde_json::json;
    use std::sync::Arc;
    use std::time::Duration;

    /// A result with every field set: a rendered page (or, without
    /// `fetched`, a failed fetch), credentials among the headers sent,
    /// repeated response headers, a truncated link list, attrs, a
    /// spider's fields (one of them replacing `body`) and an error. The
    /// body is windows-1252 with characters JSON escapes.
    pub(crate) fn every_field(fetched: bool) -> CrawlResult {
        CrawlResult {
            appid: "app\"1".into(),
            crawlid: "c\u{e9}".into(),
            spiderid: "link".into(),
            url: "http://a.test/x?q=<1>".into(),
            depth: 3,
            attrs: Some(json!({"z": 1, "a": [true, null, 1.5]})),
            timestamp: "2026-11-30T00:00:00Z".into(),
            fetched: fetched.then(|| {
                Arc::new(Fetched {
                    status: 200,
                    reason: "OK".into(),
                    response_url: "http://a.test/x".into(),
                    request_headers: vec![
                        ("user-agent".into(), "ua".into()),
                        ("cookie".into(), "secret".into()),
                    ],
                    headers: vec![
                        (
                            "content-type".into(),
                            "text/html; charset=iso-8859-1".into(),
                        ),
                        ("set-cookie".into(), "a=1".into()),
                        ("Set-Cookie".into(), "b=2".into()),
                    ],
                    body: bytes::Bytes::from_static(b"<p>caf\xe9 \"quoted\"\n\ttab\x01</p>"),
                    elapsed: Duration::from_micros(12_345),
                    redirect: None,
                    rendered: true,
                    encoded: None,
                    version: "HTTP/1.1",
                    archived: None,
                })
            }),
            request_headers: vec![("authorization".into(), "Basic x".into())],
            links: vec![("http://a.test/1".into(), "one \\ two".into())],
            fields: [
                ("title".to_string(), json!("T")),
                ("body".to_string(), json!({"replaced": true})),
            ]
            .into_iter()
            .collect(),
            error: Some("boom".into()),
            status_override: None,
            links_truncated: true,
            redact_credentials: true,
            run: None,
            change: None,
            formatted: None,
            record: false,
        }
    }
}
