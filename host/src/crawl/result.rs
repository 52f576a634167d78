//! The crawl result a client sees (contract §4.1), keys sorted on output.

use crate::fetch::{encoding_of, Fetched};
use crate::plugins::SpiderItem;
use crate::request::Job;
use base64::Engine as _;
use serde_json::{json, Map, Value};

/// Build a page's result. `fetched` is `None` when the fetch itself failed.
pub fn build(
    job: &Job,
    fetched: Option<&Fetched>,
    item: Option<&SpiderItem>,
    error: Option<String>,
    base64_body: bool,
) -> Map<String, Value> {
    let c = &job.crawl;
    let mut m = Map::new();
    m.insert("appid".into(), c.appid.clone().into());
    m.insert("crawlid".into(), c.crawlid.clone().into());
    m.insert("spiderid".into(), job.spiderid.clone().into());
    // A redirect hop reports the URL that was asked for.
    m.insert(
        "url".into(),
        job.redirected_from.as_deref().unwrap_or(&job.url).into(),
    );
    m.insert("depth".into(), job.depth.into());
    m.insert("attrs".into(), c.attrs.clone().unwrap_or(Value::Null));
    m.insert("timestamp".into(), now_iso8601().into());
    m.insert("request_headers".into(), headers(&job.headers));
    match fetched {
        Some(f) => {
            m.insert("response_url".into(), f.response_url.clone().into());
            m.insert("status_code".into(), f.status.into());
            m.insert("status_msg".into(), f.reason.clone().into());
            m.insert("request_headers".into(), headers(&f.request_headers));
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
        }
        None => {
            m.insert("response_url".into(), job.url.clone().into());
            m.insert("status_code".into(), 0.into());
            m.insert("status_msg".into(), "".into());
            m.insert("response_headers".into(), json!({}));
            m.insert("body".into(), "".into());
            m.insert("encoding".into(), Value::Null);
            m.insert("fetch_ms".into(), 0.into());
        }
    }
    let links = item
        .map(|i| {
            i.links
                .iter()
                .map(|(url, text)| json!({"url": url, "text": text}))
                .collect()
        })
        .unwrap_or_default();
    m.insert("links".into(), Value::Array(links));
    if let Some(item) = item {
        for (k, v) in &item.fields {
            m.insert(k.clone(), v.clone());
        }
    }
    if let Some(e) = error {
        m.insert("error".into(), e.into());
    }
    m
}

/// Header name -> list of values, names in canonical Title-Case.
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
}
