//! The `info` replies (contract §4.2), built from what the store counted.

use crate::monitor::store::{AppCrawlInfo, CrawlInfo, DomainQueue};
use crate::politeness::SiteView;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Each domain's queue and pace: `in_flight` (fetches open, all crawls'),
/// and when set the strictest of its origins' `paused_for` (seconds the
/// site asked us to wait still), `crawl_delay` (seconds, robots.txt),
/// `adaptive_rate` (fetches per second the adaptive throttle allows) and
/// `learned_rate` (fetches per second its 429s and 503s taught,
/// `politeness/rate.rs`), and `slow_downs` (429s and 503s that cut a
/// rate, summed); `origins` has each origin's own.
fn domains_json(domains: &BTreeMap<String, DomainQueue>) -> Value {
    let mut m = Map::new();
    for (d, q) in domains {
        let mut v = json!({"total": q.total, "high_priority": q.high_priority, "low_priority": q.low_priority,
                           "in_flight": q.in_flight});
        let strictest = q
            .origins
            .values()
            .fold(SiteView::default(), |a, o| SiteView {
                paused_for: a.paused_for.max(o.paused_for),
                crawl_delay: a.crawl_delay.max(o.crawl_delay),
                adaptive: a.adaptive.max(o.adaptive),
                rate: match (a.rate, o.rate) {
                    (Some(x), Some(y)) => Some(x.min(y)),
                    (x, y) => x.or(y),
                },
                slow_downs: a.slow_downs + o.slow_downs,
            });
        pace_json(&mut v, &strictest);
        if !q.origins.is_empty() {
            let origins: Map<String, Value> = q
                .origins
                .iter()
                .map(|(o, view)| {
                    let mut ov = json!({});
                    pace_json(&mut ov, view);
                    (o.clone(), ov)
                })
                .collect();
            v["origins"] = Value::Object(origins);
        }
        m.insert(d.clone(), v);
    }
    Value::Object(m)
}

/// A pace's fields that are set, into `v`.
fn pace_json(v: &mut Value, site: &SiteView) {
    let secs = |d: Duration| (d.as_secs_f64() * 1000.0).round() / 1000.0;
    if let Some(p) = site.paused_for {
        v["paused_for"] = secs(p).into();
    }
    if let Some(c) = site.crawl_delay {
        v["crawl_delay"] = secs(c).into();
    }
    if let Some(a) = site.adaptive {
        v["adaptive_rate"] = (1.0 / a.as_secs_f64().max(0.001)).round().into();
    }
    if let Some(r) = site.rate {
        v["learned_rate"] = ((r * 1000.0).round() / 1000.0).into();
    }
    if site.slow_downs > 0 {
        v["slow_downs"] = site.slow_downs.into();
    }
}

/// Info on one crawl. `total_pending` and `domains` are the asked
/// spider's; `in_flight`, `crawled` and `done` are the whole crawl's.
pub fn crawl_reply(
    (appid, spiderid, crawlid): (&str, &str, &str),
    info: &CrawlInfo,
    now: i64,
) -> Value {
    let mut reply = json!({
        "appid": appid, "spiderid": spiderid, "crawlid": crawlid,
        "total_pending": info.queued, "total_domains": info.domains.len(),
        "domains": domains_json(&info.domains),
        "in_flight": info.in_flight, "crawled": info.crawled,
        "done": info.open == 0,
        "server_time": now,
    });
    if let Some(e) = info.expires {
        reply["expires"] = e.into();
    }
    reply
}

/// Info on every crawl of an app.
pub fn app_reply(appid: &str, spiderid: &str, crawls: &[AppCrawlInfo], now: i64) -> Value {
    let mut crawlids = Map::new();
    let (mut total_pending, mut all_domains) = (0u64, BTreeSet::new());
    for c in crawls {
        total_pending += c.queued;
        all_domains.extend(c.domains.keys().cloned());
        let mut v = json!({"total": c.queued, "distinct_domains": c.domains.len(),
                           "domains": domains_json(&c.domains)});
        if let Some(e) = c.expires {
            v["expires"] = e.into();
        }
        crawlids.insert(c.crawlid.clone(), v);
    }
    json!({
        "appid": appid, "spiderid": spiderid, "total_pending": total_pending,
        "total_domains": all_domains.len(), "total_crawlids": crawlids.len(), "crawlids": crawlids,
        "server_time": now,
    })
}
