//! The crawl result a client sees (contract §4.1), keys sorted on output.

use crate::fetch::{encoding_of, is_credential_header, Fetched};
use crate::plugins::SpiderItem;
use crate::request::Job;
use base64::Engine as _;
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

/// A page's result as the crawl produced it; the sink turns it into the
/// contract's JSON ([`CrawlResult::to_json`]).
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
}

impl CrawlResult {
    /// The result of `job`, with what was fetched and the spider's item.
    pub fn new(
        job: &Job,
        fetched: Option<Arc<Fetched>>,
        item: Option<&SpiderItem>,
        error: Option<String>,
    ) -> CrawlResult {
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
            links: item.map(|i| i.links.clone()).unwrap_or_default(),
            fields: item
                .map(|i| i.fields.iter().cloned().collect())
                .unwrap_or_default(),
            error,
            status_override: None,
            links_truncated: false,
            redact_credentials: true,
        }
    }

    /// The status code clients see: the response's, else 0.
    pub fn status(&self) -> u16 {
        self.status_override
            .or(self.fetched.as_ref().map(|f| f.status))
            .unwrap_or(0)
    }

    /// The contract's crawl result (§4.1); keys sort on output.
    pub fn to_json(&self, base64_body: bool) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("appid".into(), self.appid.clone().into());
        m.insert("crawlid".into(), self.crawlid.clone().into());
        m.insert("spiderid".into(), self.spiderid.clone().into());
        m.insert("url".into(), self.url.clone().into());
        m.insert("depth".into(), self.depth.into());
        m.insert("attrs".into(), self.attrs.clone().unwrap_or(Value::Null));
        m.insert("timestamp".into(), self.timestamp.clone().into());
        m.insert("status_code".into(), self.status().into());
        match &self.fetched {
            Some(f) => {
                m.insert("response_url".into(), f.response_url.clone().into());
                m.insert("status_msg".into(), f.reason.clone().into());
                let sent = self.published_headers(&f.request_headers);
                m.insert("request_headers".into(), headers(&sent));
                m.insert("response_headers".into(), headers(&f.headers));
                let enc = encoding_of(f.header("content-type"), &f.body);
                let body = if base64_body {
                    base64::engine::general_purpose::STANDARD.encode(&f.body)
                } else {
                    enc.decode(&f.body).0.into_owned()
                };
                m.insert("body".into(), body.into());
                m.insert("encoding".into(), enc.name().to_ascii_lowercase().into());
                m.insert(
                    "fetch_ms".into(),
                    (f.elapsed.as_secs_f64() * 1000.0).round().into(),
                );
                if f.rendered {
                    m.insert("rendered".into(), true.into());
                }
            }
            None => {
                m.insert("response_url".into(), self.url.clone().into());
                m.insert("status_msg".into(), "".into());
                let sent = self.published_headers(&self.request_headers);
                m.insert("request_headers".into(), headers(&sent));
                m.insert("response_headers".into(), json!({}));
                m.insert("body".into(), "".into());
                m.insert("encoding".into(), Value::Null);
                m.insert("fetch_ms".into(), 0.into());
            }
        }
        let links = self
            .links
            .iter()
            .map(|(url, text)| json!({"url": url, "text": text}))
            .collect();
        m.insert("links".into(), Value::Array(links));
        if self.links_truncated {
            m.insert("links_truncated".into(), true.into());
        }
        for (k, v) in &self.fields {
            m.insert(k.clone(), v.clone());
        }
        if let Some(e) = &self.error {
            m.insert("error".into(), e.clone().into());
        }
        m
    }

    /// The contract's crawl result as JSON bytes, byte for byte what
    /// serializing [`CrawlResult::to_json`] gives, written straight from
    /// the result: no map of owned values, no copy of the body.
    pub fn to_json_bytes(&self, base64_body: bool) -> Vec<u8> {
        let size = self.fetched.as_ref().map_or(0, |f| f.body.len());
        let mut out = Vec::with_capacity(size + size / 8 + 2048);
        let view = ResultView::new(self, base64_body);
        // Writing to a Vec cannot fail, nor can these values (string keys).
        let _ = serde_json::to_writer(&mut out, &view);
        out
    }

    /// What identifies the result when it cannot be delivered whole (dead
    /// letters): never the body, the URL cut to 2 KiB.
    pub fn summary(&self) -> Value {
        let mut url = self.url.clone();
        if url.len() > 2048 {
            let mut cut = 2048;
            while !url.is_char_boundary(cut) {
                cut -= 1;
            }
            url.truncate(cut);
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

/// Header name -> list of values, names in canonical Title-Case.
impl CrawlResult {
    fn published_headers(&self, sent: &[(String, String)]) -> Vec<(String, String)> {
        sent.iter()
            .filter(|(k, _)| !(self.redact_credentials && is_credential_header(k)))
            .cloned()
            .collect()
    }
}

/// A result's fields borrowed, in the order of their keys (the order a
/// `serde_json::Map` writes them), plugin fields winning over the host's.
struct ResultView<'a> {
    fields: Vec<(&'a str, Field<'a>)>,
}

enum Field<'a> {
    Str(std::borrow::Cow<'a, str>),
    U64(u64),
    F64(f64),
    Bool(bool),
    Null,
    Value(&'a Value),
    /// Headers, credentials left out when `redact` (see `published_headers`).
    Headers(&'a [(String, String)], bool),
    Links(&'a [(String, String)]),
}

impl<'a> ResultView<'a> {
    fn new(r: &'a CrawlResult, base64_body: bool) -> ResultView<'a> {
        use std::borrow::Cow;
        let mut f: Vec<(&'a str, Field<'a>)> = vec![
            ("appid", Field::Str(Cow::Borrowed(&r.appid))),
            ("crawlid", Field::Str(Cow::Borrowed(&r.crawlid))),
            ("spiderid", Field::Str(Cow::Borrowed(&r.spiderid))),
            ("url", Field::Str(Cow::Borrowed(&r.url))),
            ("depth", Field::U64(r.depth.into())),
            ("attrs", r.attrs.as_ref().map_or(Field::Null, Field::Value)),
            ("timestamp", Field::Str(Cow::Borrowed(&r.timestamp))),
            ("status_code", Field::U64(r.status().into())),
        ];
        match &r.fetched {
            Some(fetched) => {
                let enc = encoding_of(fetched.header("content-type"), &fetched.body);
                let body = if base64_body {
                    Cow::Owned(base64::engine::general_purpose::STANDARD.encode(&fetched.body))
                } else {
                    enc.decode(&fetched.body).0
                };
                f.extend([
                    (
                        "response_url",
                        Field::Str(Cow::Borrowed(&fetched.response_url)),
                    ),
                    ("status_msg", Field::Str(Cow::Borrowed(&fetched.reason))),
                    (
                        "request_headers",
                        Field::Headers(&fetched.request_headers, r.redact_credentials),
                    ),
                    ("response_headers", Field::Headers(&fetched.headers, false)),
                    ("body", Field::Str(body)),
                    (
                        "encoding",
                        Field::Str(Cow::Owned(enc.name().to_ascii_lowercase())),
                    ),
                    (
                        "fetch_ms",
                        Field::F64((fetched.elapsed.as_secs_f64() * 1000.0).round()),
                    ),
                ]);
                if fetched.rendered {
                    f.push(("rendered", Field::Bool(true)));
                }
            }
            None => f.extend([
                ("response_url", Field::Str(Cow::Borrowed(&r.url))),
                ("status_msg", Field::Str(Cow::Borrowed(""))),
                (
                    "request_headers",
                    Field::Headers(&r.request_headers, r.redact_credentials),
                ),
                ("response_headers", Field::Headers(&[], false)),
                ("body", Field::Str(Cow::Borrowed(""))),
                ("encoding", Field::Null),
                ("fetch_ms", Field::U64(0)),
            ]),
        }
        f.push(("links", Field::Links(&r.links)));
        if r.links_truncated {
            f.push(("links_truncated", Field::Bool(true)));
        }
        // Plugin fields replace the host's of the same name, then `error`
        // replaces them all, as the map in `to_json` does.
        for (k, v) in &r.fields {
            f.retain(|(name, _)| name != k);
            f.push((k, Field::Value(v)));
        }
        if let Some(e) = &r.error {
            f.retain(|(name, _)| *name != "error");
            f.push(("error", Field::Str(Cow::Borrowed(e))));
        }
        f.sort_by(|a, b| a.0.cmp(b.0));
        ResultView { fields: f }
    }
}

impl serde::Serialize for ResultView<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.fields.len()))?;
        for (k, v) in &self.fields {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl serde::Serialize for Field<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self {
            Field::Str(v) => s.serialize_str(v),
            Field::U64(v) => s.serialize_u64(*v),
            Field::F64(v) => Value::from(*v).serialize(s),
            Field::Bool(v) => s.serialize_bool(*v),
            Field::Null => s.serialize_unit(),
            Field::Value(v) => v.serialize(s),
            Field::Headers(list, redact) => {
                let mut grouped: std::collections::BTreeMap<String, Vec<&str>> = Default::default();
                for (k, v) in list.iter() {
                    if *redact && is_credential_header(k) {
                        continue;
                    }
                    grouped.entry(title_case(k)).or_default().push(v);
                }
                let mut m = s.serialize_map(Some(grouped.len()))?;
                for (k, v) in &grouped {
                    m.serialize_entry(k, v)?;
                }
                m.end()
            }
            Field::Links(links) => {
                let mut seq = s.serialize_seq(Some(links.len()))?;
                for (url, text) in links.iter() {
                    seq.serialize_element(&Link { text, url })?;
                }
                seq.end()
            }
        }
    }
}

/// One link as the contract writes it (keys in order).
#[derive(serde::Serialize)]
struct Link<'a> {
    text: &'a str,
    url: &'a str,
}

fn headers(list: &[(String, String)]) -> Value {
    let mut m: Map<String, Value> = Map::new();
    for (k, v) in list {
        let entry = m
            .entry(title_case(k))
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(a) = entry {
            a.push(v.clone().into());
        }
    }
    Value::Object(m)
}

fn title_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = true;
    for c in name.chars() {
        out.push(if upper {
            c.to_ascii_uppercase()
        } else {
            c.to_ascii_lowercase()
        });
        upper = c == '-';
    }
    out
}

pub fn now_iso8601() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

pub fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_group_values_under_title_case_names() {
        let h = headers(&[
            ("set-cookie".into(), "a=1".into()),
            ("Set-Cookie".into(), "b=2".into()),
        ]);
        assert_eq!(h, json!({"Set-Cookie": ["a=1", "b=2"]}));
    }
    use crate::fetch::Fetched;
    use std::time::Duration;

    fn result(fetched: bool) -> CrawlResult {
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
        }
    }

    /// The direct writer gives the very bytes of the map it replaces, for
    /// a fetched page and a failed fetch, plain and base64 bodies, with
    /// plugin fields overriding the host's.
    #[test]
    fn bytes_written_directly_equal_the_maps() {
        for fetched in [true, false] {
            for b64 in [false, true] {
                let mut r = result(fetched);
                let want = serde_json::to_vec(&r.to_json(b64)).expect("json");
                assert_eq!(
                    String::from_utf8_lossy(&r.to_json_bytes(b64)),
                    String::from_utf8_lossy(&want)
                );
                r.fields.clear();
                r.error = None;
                r.links_truncated = false;
                r.attrs = None;
                r.redact_credentials = false;
                let want = serde_json::to_vec(&r.to_json(b64)).expect("json");
                assert_eq!(r.to_json_bytes(b64), want);
            }
        }
    }
}
