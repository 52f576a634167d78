//! The request's `webhook` field, validated: `{"url": URL, "events":
//! [NAME, ...], "metadata": {...}}`. Bounds: the URL at most
//! [`MAX_URL`] bytes, http or https; at most one of each event name;
//! metadata at most [`MAX_METADATA`] bytes of JSON.

use crate::events::Kind;
use serde::Deserialize;
use serde_json::{Map, Value};

pub const MAX_URL: usize = 2048;
pub const MAX_METADATA: usize = 4096;

/// Where a crawl's events are POSTed, which, and what rides along.
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    pub url: url::Url,
    /// `None`: every event.
    pub events: Option<Vec<Kind>>,
    /// Sent back in every delivery, as given.
    pub metadata: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    url: String,
    events: Option<Vec<String>>,
    metadata: Option<Map<String, Value>>,
}

impl Webhook {
    pub fn parse(field: &Value) -> Result<Webhook, String> {
        let w = Wire::deserialize(field).map_err(|e| format!("webhook: {e}"))?;
        if w.url.len() > MAX_URL {
            return Err(format!("webhook: url is longer than {MAX_URL} bytes"));
        }
        let url = url::Url::parse(&w.url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| format!("webhook: url {:?} is not an http(s) URL", w.url))?;
        let events = match w.events {
            None => None,
            Some(names) => {
                let mut kinds = Vec::new();
                for n in &names {
                    let k = Kind::ALL
                        .into_iter()
                        .find(|k| k.name() == n)
                        .ok_or_else(|| format!("webhook: no event is named {n:?}"))?;
                    if kinds.contains(&k) {
                        return Err(format!("webhook: {n} is listed twice"));
                    }
                    kinds.push(k);
                }
                Some(kinds)
            }
        };
        if let Some(m) = &w.metadata {
            let n = serde_json::to_vec(m).map_or(usize::MAX, |v| v.len());
            if n > MAX_METADATA {
                return Err(format!(
                    "webhook: metadata is {n} bytes of JSON; at most {MAX_METADATA}"
                ));
            }
        }
        Ok(Webhook {
            url,
            events,
            metadata: w.metadata,
        })
    }

    /// Is `kind` one this webhook asked for?
    pub fn wants(&self, kind: Kind) -> bool {
        self.events.as_ref().is_none_or(|e| e.contains(&kind))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_webhook_field_and_its_mistakes() {
        let w = Webhook::parse(&json!({"url": "https://hooks.example/x", "events": ["crawl.completed"], "metadata": {"team": "a"}}))
            .expect("valid");
        assert!(w.wants(Kind::Completed) && !w.wants(Kind::Started));
        assert!(Webhook::parse(&json!({"url": "http://h.example/"}))
            .expect("valid")
            .wants(Kind::Fired));
        for (v, says) in [
            (json!({"url": "ftp://h.example/"}), "not an http(s) URL"),
            (
                json!({"url": "https://h.example/", "events": ["crawl.done"]}),
                "no event is named",
            ),
            (
                json!({"url": "https://h.example/", "events": ["crawl.failed", "crawl.failed"]}),
                "twice",
            ),
            (
                json!({"url": "https://h.example/", "metadata": {"x": "y".repeat(5000)}}),
                "at most 4096",
            ),
            (
                json!({"url": "https://h.example/", "secret": "x"}),
                "unknown field",
            ),
        ] {
            let e = Webhook::parse(&v).expect_err("invalid");
            assert!(e.contains(says), "{v}: {e}");
        }
    }
}
