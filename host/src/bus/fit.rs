//! Fitting what goes out to a message's size (`kafka.max_message_bytes`):
//! a result loses its body (or, with an object store, sends it by claim
//! check: `kafka.rs`), then its headers, links and attrs, saying so in its
//! `error`; a reply too large becomes an error reply.

use crate::result::{Part, ResultJson};
use serde_json::{Map, Value};

/// The result to send, `full` being the JSON of `json`: as is if it
/// fits, else without its body (and without headers, links and attrs if
/// that is still too large), with an `error`; `Err` with the reason if
/// even that is over `limit`.
pub(super) fn shrink(
    mut json: ResultJson<'_>,
    full: Vec<u8>,
    limit: usize,
) -> Result<Vec<u8>, String> {
    if full.len() <= limit {
        return Ok(full);
    }
    let size = full.len();
    drop(full);
    json.leave_out(Part::Body);
    json.set_error(format!(
        "result of {size} bytes exceeds kafka.max_message_bytes ({limit}); body dropped"
    ));
    let out = json.to_vec();
    if out.len() <= limit {
        return Ok(out);
    }
    without_extras(json, size, limit, "body, headers, links and attrs dropped")
}

/// `json` (already without its body) without headers, links and attrs
/// too, its `error` saying `what` went; `Err` if even that is over `limit`.
pub(super) fn without_extras(
    mut json: ResultJson<'_>,
    size: usize,
    limit: usize,
    what: &str,
) -> Result<Vec<u8>, String> {
    for part in [Part::Headers, Part::Links, Part::Attrs] {
        json.leave_out(part);
    }
    json.set_error(format!(
        "result of {size} bytes exceeds kafka.max_message_bytes ({limit}); {what}"
    ));
    let out = json.to_vec();
    if out.len() <= limit {
        return Ok(out);
    }
    Err(format!(
        "result of {size} bytes exceeds kafka.max_message_bytes ({limit}) even without its body, headers, links and attrs"
    ))
}

/// A reply that fits the topic, else an error reply in its place that
/// still answers the request (same uuid, appid and kind).
pub fn fit_reply(reply: &Map<String, Value>, limit: usize) -> Vec<u8> {
    let full = serde_json::to_vec(reply).expect("a JSON map serialises");
    if full.len() <= limit {
        return full;
    }
    let mut short: Map<String, Value> = [
        "uuid",
        "appid",
        "action",
        "stats",
        "spiderid",
        "crawlid",
        "domain",
        "server_time",
    ]
    .iter()
    .filter_map(|k| reply.get(*k).map(|v| (k.to_string(), v.clone())))
    .collect();
    short.insert(
        "error".into(),
        format!(
            "reply of {} bytes exceeds kafka.max_message_bytes ({limit}); ask for a narrower scope",
            full.len()
        )
        .into(),
    );
    serde_json::to_vec(&short).expect("a JSON map serialises")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::CrawlResult;
    use serde_json::json;
    use std::sync::Arc;

    fn fit_result(r: &CrawlResult, base64_body: bool, limit: usize) -> Result<Vec<u8>, String> {
        let json = r.json(base64_body);
        let full = json.to_vec();
        shrink(json, full, limit)
    }

    /// A result of 6.5 KB (7.9 KB with a base64 body): sent whole under a
    /// large limit, without its body under 5000 bytes, also without
    /// headers, links and attrs under 2000, not at all under 300. Each
    /// output pinned byte for byte.
    #[test]
    fn an_oversized_result_is_slimmed_and_says_why() {
        let mut r = crate::result::fixture::every_field(true);
        r.fields.clear();
        r.links
            .push(("http://a.test/long".into(), "t".repeat(2000)));
        let mut fetched = (**r.fetched.as_ref().expect("fetched")).clone();
        fetched.body = bytes::Bytes::from(vec![b'x'; 4000]);
        r.fetched = Some(Arc::new(fetched));
        let head = r#"{"appid":"app\"1","attrs":{ATTRS},"body":"{BODY}","crawlid":"cé","depth":3,"encoding":"windows-1252","error":"{ERROR}","fetch_ms":12.0,"links":{LINKS},"links_truncated":true,"rendered":true,"request_headers":{REQ},"response_headers":{RESP},"response_url":"http://a.test/x","spiderid":"link","status_code":200,"status_msg":"OK","timestamp":"2026-11-30T00:00:00Z","url":"http://a.test/x?q=<1>"}"#;
        let attrs = r#"{"a":[true,null,1.5],"z":1}"#;
        let links = r#"[{"text":"one \\ two","url":"http://a.test/1"},{"text":"T2000","url":"http://a.test/long"}]"#
            .replace("T2000", &"t".repeat(2000));
        let req = r#"{"User-Agent":["ua"]}"#;
        let resp =
            r#"{"Content-Type":["text/html; charset=iso-8859-1"],"Set-Cookie":["a=1","b=2"]}"#;
        let want = |attrs: &str, body: &str, error: &str, links: &str, req: &str, resp: &str| {
            head.replace("{ATTRS}", attrs)
                .replace("{BODY}", body)
                .replace("{ERROR}", error)
                .replace("{LINKS}", links)
                .replace("{REQ}", req)
                .replace("{RESP}", resp)
        };
        let text = |b64: bool, limit: usize| {
            fit_result(&r, b64, limit).map(|v| String::from_utf8(v).expect("UTF-8"))
        };
        let base64 = format!("{}eA==", "eHh4".repeat(1333));
        for (b64, body, size) in [(false, "x".repeat(4000), 6570), (true, base64, 7906)] {
            let full = want(attrs, &body, "boom", &links, req, resp);
            assert_eq!(full.len(), size);
            assert_eq!(text(b64, 1 << 20), Ok(full));
            let error = format!(
                "result of {size} bytes exceeds kafka.max_message_bytes (5000); body dropped"
            );
            assert_eq!(
                text(b64, 5000),
                Ok(want(attrs, "", &error, &links, req, resp))
            );
            let error = format!("result of {size} bytes exceeds kafka.max_message_bytes (2000); body, headers, links and attrs dropped");
            assert_eq!(
                text(b64, 2000),
                Ok(want("null", "", &error, "[]", "{}", "{}"))
            );
            assert_eq!(text(b64, 300), Err(format!("result of {size} bytes exceeds kafka.max_message_bytes (300) even without its body, headers, links and attrs")));
        }
    }

    #[test]
    fn an_oversized_reply_becomes_an_error_reply() {
        let Value::Object(r) =
            json!({"uuid": "u1", "appid": "app", "stats": "queue", "queues": "x".repeat(5000)})
        else {
            unreachable!()
        };
        let out: Value = serde_json::from_slice(&fit_reply(&r, 2048)).expect("json");
        assert_eq!(out["uuid"], "u1");
        assert_eq!(out["stats"], "queue");
        assert!(out.get("queues").is_none());
        assert!(out["error"].as_str().is_some_and(|e| e.contains("exceeds")));
    }
}
