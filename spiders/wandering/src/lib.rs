//! The `wandering` spider (Scrapy Cluster's WanderingSpider): yield the page
//! with its step number in `attrs.step`, then follow one random link: a
//! walk, bounded by `crawl.max_walk_steps` rather than `maxdepth`.
use spinneret_sdk::spider::{host, Item, Output, Request, Response, Spider};

struct Wandering;

impl Spider for Wandering {
    fn parse(response: &Response) -> Result<Vec<Output>, String> {
        let step: u64 = response
            .meta("step")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let attrs = with_step(response.meta("attrs").as_deref(), step);
        let links = response.links();
        let mut out = Vec::with_capacity(2);
        let mut followed = Vec::new();
        if !links.is_empty() {
            let pick = (host::random() % links.len() as u64) as usize;
            let link = links[pick].clone();
            out.push(Output::Request(
                Request::get(link.url.clone())
                    .with_meta("step", (step + 1).to_string())
                    .walk(),
            ));
            followed.push(link);
        }
        out.push(Output::Item(
            Item::page(followed).with_field("attrs", attrs),
        ));
        Ok(out)
    }
}

/// `attrs` with `"step": step` set, built as text to keep the guest small.
/// `attrs` is a JSON object or null (the host guarantees it).
fn with_step(attrs: Option<&str>, step: u64) -> String {
    let inner = attrs
        .map(str::trim)
        .filter(|a| a.starts_with('{') && a.ends_with('}'))
        .map(|a| a[1..a.len() - 1].trim())
        .unwrap_or("");
    if inner.is_empty() {
        format!("{{\"step\":{step}}}")
    } else {
        // If the client's attrs carry a `step` already, ours comes last and
        // wins: the host keeps the last of duplicate keys.
        format!("{{{inner},\"step\":{step}}}")
    }
}

spinneret_sdk::export_spider!(Wandering);
