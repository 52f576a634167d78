//! The `info` replies (contract §4.2), built from what the store counted.

use crate::events::event::Stats;
use crate::monitor::store::{AppCrawlInfo, CrawlInfo, DomainQueue};
use crate::politeness::SiteView;
use crate::request::CrawlRequest;
use crate::schedule::next_at;
use crate::scheduler::Row;
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
    if info.figures != Stats::default() {
        reply["stats"] = json!(info.figures);
    }
    if let Some(row) = &info.schedule {
        reply["schedule"] = schedule_json(row);
    }
    reply
}

/// A schedule as `info` and the actions' replies show it: runs so far,
/// the current one (while it goes on), the last fire time dealt with and
/// when the next run starts (unix seconds), paused, ended.
pub fn schedule_json(row: &Row) -> Value {
    let s = &row.state;
    let schedule = serde_json::from_str::<CrawlRequest>(&row.request)
        .ok()
        .and_then(|r| r.schedule());
    let next = match (row.ended, schedule) {
        (false, Some(schedule)) => next_at(&schedule, s, &row.name()),
        _ => None,
    };
    let mut v = json!({
        "runs": s.runs, "paused": s.paused, "ended": row.ended,
        "last_run": s.last.map(|t| t.as_second()),
        "next_at": next.map(|t| t.as_second()),
    });
    if s.running {
        v["run"] = s.runs.into();
    }
    v
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
