//! The contract's JSON of a crawl result (§4.1), keys sorted: the one
//! writer of it. The fields are borrowed from the result, in the order of
//! their keys (the order a `serde_json::Map` writes them); nothing is
//! copied, and the body is decoded (or base64-encoded) only when it is
//! written, so reading one field never touches the body.

use super::CrawlResult;
use crate::fetch::{encoding_of, is_credential_header, Fetched};
use base64::Engine as _;
use encoding_rs::Encoding;
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use serde_json::Value;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// A result's contract JSON, ready to write ([`ResultJson::to_vec`]) or to
/// read a field at a time ([`ResultJson::field`]). A sink may leave parts
/// out first ([`ResultJson::leave_out`]) to fit a size limit.
pub struct ResultJson<'a> {
    /// Sorted by name; each name once.
    fields: Vec<(&'a str, Field<'a>)>,
    /// Bytes of the fetched body, to size the output.
    body_bytes: usize,
}

/// A part of a result a sink may leave out; it is then written empty
/// (`""`, `{}`, `[]`, `null`), so the result keeps its shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// `body`.
    Body,
    /// `request_headers` and `response_headers`.
    Headers,
    /// `links`.
    Links,
    /// `attrs`.
    Attrs,
}

/// One field's value, borrowed from the result.
enum Field<'a> {
    Str(Cow<'a, str>),
    U64(u64),
    F64(f64),
    Bool(bool),
    Null,
    Value(&'a Value),
    /// A value the host made for this writing (`warc`, `body_ref`).
    Owned(Value),
    /// The body: text in its encoding, or base64 of the raw bytes.
    Body {
        bytes: &'a [u8],
        encoding: &'static Encoding,
        base64: bool,
    },
    /// Headers, credentials left out when the flag is set.
    Headers(&'a [(String, String)], bool),
    Links(&'a [(String, String)]),
}

impl<'a> ResultJson<'a> {
    pub fn new(r: &'a CrawlResult, base64_body: bool) -> ResultJson<'a> {
        if r.record {
            return Self::record(r);
        }
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
            Some(fetched) => f.extend(fetched_fields(r, fetched, base64_body)),
            None => f.extend(unfetched_fields(r)),
        }
        f.push(("links", Field::Links(&r.links)));
        if r.links_truncated {
            f.push(("links_truncated", Field::Bool(true)));
        }
        if let Some(run) = r.run {
            f.push(("run", Field::U64(run.into())));
        }
        if let Some(c) = r.change {
            f.push(("change", Field::Str(Cow::Borrowed(c.name()))));
        }
        f.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut json = ResultJson {
            fields: f,
            body_bytes: r.fetched.as_ref().map_or(0, |f| f.body.len()),
        };
        // Plugin fields replace the host's of the same name, then `error`
        // replaces them all.
        for (k, v) in &r.fields {
            json.set(k, Field::Value(v));
        }
        if let Some(formatted) = &r.formatted {
            json.formats(formatted);
        }
        if let Some(e) = &r.error {
            json.set("error", Field::Str(Cow::Borrowed(e)));
        }
        json
    }

    /// A data record: its fields, then the names the host writes over
    /// them (`type` is `item`; `url` is the page's).
    fn record(r: &'a CrawlResult) -> ResultJson<'a> {
        let mut json = ResultJson {
            fields: Vec::with_capacity(r.fields.len() + 7),
            body_bytes: 0,
        };
        for (k, v) in &r.fields {
            json.set(k, Field::Value(v));
        }
        json.set("type", Field::Str(Cow::Borrowed("item")));
        json.set("appid", Field::Str(Cow::Borrowed(&r.appid)));
        json.set("crawlid", Field::Str(Cow::Borrowed(&r.crawlid)));
        json.set("spiderid", Field::Str(Cow::Borrowed(&r.spiderid)));
        json.set("url", Field::Str(Cow::Borrowed(&r.url)));
        json.set("timestamp", Field::Str(Cow::Borrowed(&r.timestamp)));
        if let Some(run) = r.run {
            json.set("run", Field::U64(run.into()));
        }
        json
    }

    /// The formats the crawl asked for (over a plugin's fields of the same
    /// names); without `html`, no `body`.
    fn formats(&mut self, f: &'a crate::extract::Formatted) {
        if f.no_body {
            self.fields.retain(|(k, _)| *k != "body");
            self.body_bytes = 0;
        }
        if let Some(m) = &f.metadata {
            self.set("metadata", Field::Value(m));
        }
        if let Some(j) = &f.jsonld {
            self.set("jsonld", Field::Value(j));
        }
        if let Some(t) = &f.text {
            self.set("text", Field::Str(Cow::Borrowed(t)));
        }
        if let Some(m) = &f.markdown {
            self.set("markdown", Field::Str(Cow::Borrowed(m)));
        }
        if let Some(e) = &f.error {
            self.set("error", Field::Str(Cow::Borrowed(e)));
        }
    }

    /// Put `value` under `name`, in its place among the sorted names.
    fn set(&mut self, name: &'a str, value: Field<'a>) {
        match self.fields.binary_search_by(|(k, _)| (*k).cmp(name)) {
            Ok(i) => self.fields[i].1 = value,
            Err(i) => self.fields.insert(i, (name, value)),
        }
    }

    /// Write `part` empty, whatever the result (or a plugin) put there.
    pub fn leave_out(&mut self, part: Part) {
        match part {
            Part::Body => {
                self.set("body", Field::Str(Cow::Borrowed("")));
                self.body_bytes = 0;
            }
            Part::Headers => {
                self.set("request_headers", Field::Headers(&[], false));
                self.set("response_headers", Field::Headers(&[], false));
            }
            Part::Links => self.set("links", Field::Links(&[])),
            Part::Attrs => self.set("attrs", Field::Null),
        }
    }

    /// The body stored elsewhere: `body_ref` says where, and `body` is
    /// not written at all.
    pub fn offload(&mut self, body_ref: &crate::objects::BodyRef) {
        self.fields.retain(|(k, _)| *k != "body");
        self.body_bytes = 0;
        self.set("body_ref", Field::Owned(serde_json::json!(body_ref)));
    }

    /// Set `error` (a sink saying what it left out), replacing any.
    pub fn set_error(&mut self, error: String) {
        self.set("error", Field::Str(Cow::Owned(error)));
    }

    /// The JSON bytes.
    pub fn to_vec(&self) -> Vec<u8> {
        let size = self.body_bytes;
        let mut out = Vec::with_capacity(size + size / 8 + 2048);
        // Writing to a Vec cannot fail, nor can these values (string keys).
        let _ = serde_json::to_writer(&mut out, self);
        out
    }

    fn get(&self, name: &str) -> Option<&Field<'a>> {
        let i = self.fields.binary_search_by(|(k, _)| (*k).cmp(name)).ok()?;
        Some(&self.fields[i].1)
    }

    /// One field as the JSON text it is written as; `None` if the result
    /// has no such field.
    pub fn field(&self, name: &str) -> Option<String> {
        self.get(name)
            .map(|v| serde_json::to_string(v).expect("a result field serialises"))
    }

    /// A field that is a string (not the body), else `None`.
    pub fn str(&self, name: &str) -> Option<&str> {
        match self.get(name)? {
            Field::Str(s) => Some(s),
            Field::Value(Value::String(s)) => Some(s),
            _ => None,
        }
    }

    /// A field that is an unsigned integer, else `None`.
    pub fn u64(&self, name: &str) -> Option<u64> {
        match self.get(name)? {
            Field::U64(n) => Some(*n),
            Field::Value(v) => v.as_u64(),
            _ => None,
        }
    }
}

/// The response's fields of a result that has one.
fn fetched_fields<'a>(
    r: &'a CrawlResult,
    fetched: &'a Fetched,
    base64: bool,
) -> Vec<(&'a str, Field<'a>)> {
    let encoding = encoding_of(fetched.header("content-type"), &fetched.body);
    let mut f = vec![
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
        (
            "body",
            Field::Body {
                bytes: &fetched.body,
                encoding,
                base64,
            },
        ),
        (
            "encoding",
            Field::Str(Cow::Owned(encoding.name().to_ascii_lowercase())),
        ),
        (
            "fetch_ms",
            Field::F64((fetched.elapsed.as_secs_f64() * 1000.0).round()),
        ),
    ];
    if fetched.rendered {
        f.push(("rendered", Field::Bool(true)));
    }
    if let Some(a) = &fetched.archived {
        f.push(("warc", Field::Owned(serde_json::json!(a))));
    }
    f
}

/// The same fields, empty, of a result that never got a response: its
/// own URL and the request's headers.
fn unfetched_fields(r: &CrawlResult) -> [(&str, Field<'_>); 7] {
    [
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
    ]
}

impl Serialize for ResultJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.fields.len()))?;
        for (k, v) in &self.fields {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl Serialize for Field<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Field::Str(v) => s.serialize_str(v),
            Field::U64(v) => s.serialize_u64(*v),
            Field::F64(v) => Value::from(*v).serialize(s),
            Field::Bool(v) => s.serialize_bool(*v),
            Field::Null => s.serialize_unit(),
            Field::Value(v) => v.serialize(s),
            Field::Owned(v) => v.serialize(s),
            Field::Body {
                bytes,
                encoding,
                base64,
            } => {
                if *base64 {
                    s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
                } else {
                    s.serialize_str(&encoding.decode(bytes).0)
                }
            }
            Field::Headers(list, redact) => {
                // Name -> list of values, names in canonical Title-Case.
                let mut grouped: BTreeMap<String, Vec<&str>> = BTreeMap::new();
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
#[derive(Serialize)]
struct Link<'a> {
    text: &'a str,
    url: &'a str,
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

#[cfg(test)]
mod tests {
    use super::super::fixture::every_field;
    use super::*;

    fn text(r: &CrawlResult, base64_body: bool) -> String {
        String::from_utf8(r.json(base64_body).to_vec()).expect("UTF-8")
    }

    /// The bytes of a result with every field set, pinned: a fetched page
    /// and a failed fetch, a plugin field replacing `body`, credentials
    /// left out, repeated headers grouped under Title-Case names.
    #[test]
    fn a_result_with_every_field_is_written_byte_for_byte() {
        let fetched = r#"{"appid":"app\"1","attrs":{"a":[true,null,1.5],"z":1},"body":{"replaced":true},"crawlid":"cé","depth":3,"encoding":"windows-1252","error":"boom","fetch_ms":12.0,"links":[{"text":"one \\ two","url":"http://a.test/1"}],"links_truncated":true,"rendered":true,"request_headers":{"User-Agent":["ua"]},"response_headers":{"Content-Type":["text/html; charset=iso-8859-1"],"Set-Cookie":["a=1","b=2"]},"response_url":"http://a.test/x","spiderid":"link","status_code":200,"status_msg":"OK","timestamp":"2026-11-30T00:00:00Z","title":"T","url":"http://a.test/x?q=<1>"}"#;
        let failed = r#"{"appid":"app\"1","attrs":{"a":[true,null,1.5],"z":1},"body":{"replaced":true},"crawlid":"cé","depth":3,"encoding":null,"error":"boom","fetch_ms":0,"links":[{"text":"one \\ two","url":"http://a.test/1"}],"links_truncated":true,"request_headers":{},"response_headers":{},"response_url":"http://a.test/x?q=<1>","spiderid":"link","status_code":0,"status_msg":"","timestamp":"2026-11-30T00:00:00Z","title":"T","url":"http://a.test/x?q=<1>"}"#;
        for b64 in [false, true] {
            assert_eq!(text(&every_field(true), b64), fetched);
            assert_eq!(text(&every_field(false), b64), failed);
        }
    }

    /// The page's own body, as text in its charset (JSON escapes and all)
    /// or as base64 of the raw bytes; a status set without a response;
    /// credentials kept when the app may see them.
    #[test]
    fn the_body_is_text_in_its_charset_or_base64() {
        let mut r = every_field(true);
        r.fields.remove("body");
        r.error = None;
        let plain = text(&r, false);
        assert!(
            plain.contains(r#","body":"<p>café \"quoted\"\n\ttab\u0001</p>","crawlid":"#),
            "{plain}"
        );
        assert!(!plain.contains("error"), "{plain}");
        let b64 = text(&r, true);
        assert!(
            b64.contains(r#","body":"PHA+Y2Fm6SAicXVvdGVkIgoJdGFiATwvcD4=","crawlid":"#),
            "{b64}"
        );
        r.redact_credentials = false;
        assert!(text(&r, false)
            .contains(r#""request_headers":{"Cookie":["secret"],"User-Agent":["ua"]}"#));

        let mut failed = every_field(false);
        failed.status_override = Some(413);
        failed.redact_credentials = false;
        let out = text(&failed, false);
        assert!(out.contains(r#""status_code":413,"#), "{out}");
        assert!(
            out.contains(r#""request_headers":{"Authorization":["Basic x"]},"#),
            "{out}"
        );
    }

    /// What a pipeline reads: single fields as the JSON they are written
    /// as, the same as in the whole.
    #[test]
    fn single_fields_read_as_written() {
        let r = every_field(true);
        let json = r.json(false);
        let whole: Value = serde_json::from_slice(&json.to_vec()).expect("JSON");
        for (name, value) in whole.as_object().expect("an object") {
            assert_eq!(json.field(name), Some(value.to_string()), "{name}");
        }
        assert_eq!(json.field("missing"), None);
        assert_eq!(json.str("url"), Some("http://a.test/x?q=<1>"));
        assert_eq!(json.str("title"), Some("T"));
        assert_eq!(json.u64("status_code"), Some(200));
        assert_eq!(json.u64("url"), None);
    }

    /// Parts left out are written empty, over what a plugin put there;
    /// `error` is replaced or added in its place.
    #[test]
    fn parts_left_out_are_written_empty() {
        let mut r = every_field(true);
        r.fields.insert("links".into(), serde_json::json!(["x"]));
        r.error = None;
        let mut json = r.json(false);
        for part in [Part::Body, Part::Headers, Part::Links, Part::Attrs] {
            json.leave_out(part);
        }
        json.set_error("cut".into());
        assert_eq!(
            String::from_utf8(json.to_vec()).expect("UTF-8"),
            r#"{"appid":"app\"1","attrs":null,"body":"","crawlid":"cé","depth":3,"encoding":"windows-1252","error":"cut","fetch_ms":12.0,"links":[],"links_truncated":true,"rendered":true,"request_headers":{},"response_headers":{},"response_url":"http://a.test/x","spiderid":"link","status_code":200,"status_msg":"OK","timestamp":"2026-11-30T00:00:00Z","title":"T","url":"http://a.test/x?q=<1>"}"#
        );
    }

    /// The crawl's formats are written over a spider's fields of the same
    /// names; without `html` there is no `body`, and a format that could
    /// not be made says why in `error`.
    #[test]
    fn formats_are_written_and_html_left_out_drops_the_body() {
        let mut r = every_field(true);
        r.error = None;
        r.fields
            .insert("text".into(), serde_json::json!("spider's"));
        r.formatted = Some(std::sync::Arc::new(crate::extract::Formatted {
            no_body: true,
            metadata: Some(serde_json::json!({"title": "T"})),
            jsonld: Some(serde_json::json!([])),
            text: Some("words".into()),
            markdown: Some("# words".into()),
            error: None,
        }));
        let json = r.json(false);
        let whole: Value = serde_json::from_slice(&json.to_vec()).expect("JSON");
        assert!(whole.get("body").is_none(), "{whole}");
        assert_eq!(whole["text"], "words");
        assert_eq!(whole["markdown"], "# words");
        assert_eq!(whole["metadata"]["title"], "T");
        assert_eq!(whole["jsonld"], serde_json::json!([]));
        let mut r = every_field(true);
        r.error = None;
        r.formatted = Some(std::sync::Arc::new(crate::extract::Formatted {
            error: Some("no text: page has more than 5 elements".into()),
            ..Default::default()
        }));
        let whole: Value = serde_json::from_slice(&r.json(false).to_vec()).expect("JSON");
        assert!(whole.get("body").is_some(), "html is asked: the body stays");
        assert_eq!(whole["error"], "no text: page has more than 5 elements");
    }

    /// A record is its fields and the page's names, the host's over the
    /// spider's: no body, headers, links or status.
    #[test]
    fn a_record_is_its_fields_and_the_pages_names() {
        let mut r = every_field(true);
        r.record = true;
        r.fields.insert("type".into(), serde_json::json!("page"));
        let whole: Value = serde_json::from_slice(&r.json(false).to_vec()).expect("JSON");
        assert_eq!(
            whole,
            serde_json::json!({
                "type": "item", "appid": "app\"1", "crawlid": "c\u{e9}", "spiderid": "link",
                "url": "http://a.test/x?q=<1>", "timestamp": "2026-11-30T00:00:00Z",
                "title": "T", "body": {"replaced": true},
            })
        );
    }
}
