//! Example monitor plugin: a `seed-list` request kind. One message queues
//! many seeds under one crawl, and, with a `uuid`, gets a reply:
//!
//! ```json
//! {"appid": "app", "crawlid": "c1", "urls": ["http://a.com/", "http://b.com/"],
//!  "uuid": "u1", "maxdepth": 1, "spiderid": "link"}
//! ```
use serde_json::{json, Map, Value};
use spinneret_sdk::monitor::{Action, Monitor, Schema};

/// At most this many seeds per message.
const MAX_URLS: usize = 1000;

struct SeedList;

impl Monitor for SeedList {
    fn describe() -> Schema {
        Schema {
            required: vec!["appid".into(), "crawlid".into(), "urls".into()],
            optional: vec!["uuid".into(), "maxdepth".into(), "spiderid".into()],
        }
    }

    fn handle(request: String) -> Result<Vec<Action>, String> {
        let req: Map<String, Value> =
            serde_json::from_str(&request).map_err(|e| format!("not a JSON object: {e}"))?;
        let urls = req["urls"]
            .as_array()
            .ok_or("`urls` must be an array of strings")?;
        if urls.is_empty() {
            return Err("no urls: give at least one".into());
        }
        if urls.len() > MAX_URLS {
            return Err(format!(
                "{} urls: at most {MAX_URLS} per message",
                urls.len()
            ));
        }
        let mut actions = Vec::with_capacity(urls.len() + 1);
        for u in urls {
            let url = u.as_str().ok_or("`urls` must be an array of strings")?;
            // Each seed is an ordinary crawl request: the host validates it.
            let mut crawl = json!({"url": url, "appid": req["appid"], "crawlid": req["crawlid"]});
            for k in ["maxdepth", "spiderid"] {
                if let Some(v) = req.get(k) {
                    crawl[k] = v.clone();
                }
            }
            actions.push(Action::Crawl(crawl.to_string()));
        }
        if let Some(uuid) = req.get("uuid") {
            let reply = json!({"action": "seed-list", "uuid": uuid, "appid": req["appid"],
                               "crawlid": req["crawlid"], "queued": urls.len()});
            actions.push(Action::Reply(reply.to_string()));
        }
        Ok(actions)
    }
}

spinneret_sdk::export_monitor!(SeedList);
