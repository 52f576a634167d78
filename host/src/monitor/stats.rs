//! The `stats` replies (contract §4.2), built from what the store counted:
//! status counters per window for spiders, machines and the monitor roles,
//! queue depths, and the live nodes of each role.

use crate::monitor::store::{MonitorStore, QueueDepth, Windows, WINDOWS};
use crate::scheduler::StoreError;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// `{"900": n, ..., "604800": n, "lifetime": n}`.
pub fn windows_json(w: &Windows) -> Value {
    let mut m: Map<String, Value> = WINDOWS
        .iter()
        .zip(w.counts)
        .map(|(secs, n)| (secs.to_string(), n.into()))
        .collect();
    m.insert("lifetime".into(), w.lifetime.into());
    Value::Object(m)
}

/// Stats of the crawlers by type: `spider`, `machine`, `queue`, or
/// `crawler` (all three).
pub async fn crawler(store: &MonitorStore, kind: &str) -> Result<Value, StoreError> {
    Ok(match kind {
        "spider" => json!({"spiders": spiders(store).await?}),
        "machine" => json!({"machines": machines(store).await?}),
        "queue" => json!({"queues": queues_json(&store.queue_depths().await?)}),
        _ => json!({
            "spiders": spiders(store).await?,
            "machines": machines(store).await?,
            "queue": queues_json(&store.queue_depths().await?),
        }),
    })
}

/// Live spiders by name (with their worker count) and their status
/// counters.
async fn spiders(store: &MonitorStore) -> Result<Value, StoreError> {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for w in store.live_workers().await? {
        for n in w.spiders {
            *counts.entry(n).or_default() += 1;
        }
    }
    let mut spiders = Map::new();
    spiders.insert("unique_spider_count".into(), counts.len().into());
    spiders.insert(
        "total_spider_count".into(),
        counts.values().sum::<u64>().into(),
    );
    for (name, count) in &counts {
        spiders.insert(name.clone(), json!({"count": count}));
    }
    for ((name, status), w) in store.status_windows('s').await? {
        let entry = spiders.entry(name).or_insert_with(|| json!({"count": 0}));
        entry[status] = windows_json(&w);
    }
    Ok(Value::Object(spiders))
}

/// Live hosts and their status counters. Counters are kept per worker
/// (`host:pid`); the contract reports them per host.
async fn machines(store: &MonitorStore) -> Result<Value, StoreError> {
    let hosts: BTreeSet<String> = store
        .live_workers()
        .await?
        .into_iter()
        .map(|w| w.host)
        .collect();
    let mut by_host: BTreeMap<String, BTreeMap<String, Windows>> = BTreeMap::new();
    for ((machine, status), w) in store.status_windows('m').await? {
        let host = machine
            .rsplit_once(':')
            .map_or(machine.as_str(), |(h, _)| h);
        by_host
            .entry(host.to_string())
            .or_default()
            .entry(status)
            .or_default()
            .add(&w);
    }
    let mut machines = Map::new();
    machines.insert("count".into(), hosts.len().into());
    for (host, statuses) in by_host {
        let statuses: Map<String, Value> = statuses
            .into_iter()
            .map(|(status, w)| (status, windows_json(&w)))
            .collect();
        machines.insert(host, Value::Object(statuses));
    }
    Ok(Value::Object(machines))
}

/// The queues by spider (`queue_<spider>`: backlog, domains by backlog)
/// and the total backlog.
pub fn queues_json(depths: &[QueueDepth]) -> Value {
    let mut by_spider: BTreeMap<&str, Vec<&QueueDepth>> = BTreeMap::new();
    for d in depths {
        by_spider.entry(&d.spider).or_default().push(d);
    }
    let mut queues = Map::new();
    let mut total = 0;
    for (spider, mut domains) in by_spider {
        domains.sort_by(|a, b| b.backlog.cmp(&a.backlog).then(a.domain.cmp(&b.domain)));
        let backlog: u64 = domains.iter().map(|d| d.backlog).sum();
        total += backlog;
        queues.insert(
            format!("queue_{spider}"),
            json!({
                "spider_backlog": backlog,
                "num_domains": domains.len(),
                "domains": domains
                    .iter()
                    .map(|d| json!({"domain": d.domain, "backlog": d.backlog}))
                    .collect::<Vec<_>>(),
            }),
        );
    }
    queues.insert("total_backlog".into(), total.into());
    Value::Object(queues)
}

/// Stats of a monitor role: `total`, `fail`, `plugins` (windows per
/// request kind) and `nodes`.
pub async fn monitor_role(
    store: &MonitorStore,
    stat_kind: char,
    role: &str,
) -> Result<Value, StoreError> {
    let mut out = Map::new();
    let mut plugins = Map::new();
    for ((name, _), w) in store.status_windows(stat_kind).await? {
        match name.as_str() {
            "total" | "fail" => out.insert(name, windows_json(&w)),
            _ => plugins.insert(name, windows_json(&w)),
        };
    }
    for k in ["total", "fail"] {
        out.entry(k)
            .or_insert_with(|| windows_json(&Windows::default()));
    }
    out.insert("plugins".into(), Value::Object(plugins));
    out.insert("nodes".into(), nodes(store, role).await?);
    Ok(Value::Object(out))
}

/// Live nodes of `role`: `{host: [ids]}`.
pub async fn nodes(store: &MonitorStore, role: &str) -> Result<Value, StoreError> {
    let mut by_host: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for id in store.nodes(role).await? {
        let host = id.rsplit_once(':').map_or(id.as_str(), |(h, _)| h);
        by_host
            .entry(host.to_string())
            .or_default()
            .push(id.clone());
    }
    Ok(json!(by_host))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth(spider: &str, domain: &str, backlog: u64) -> QueueDepth {
        QueueDepth {
            spider: spider.into(),
            domain: domain.into(),
            backlog,
        }
    }

    #[test]
    fn queues_are_grouped_by_spider_and_sorted_by_backlog() {
        let q = queues_json(&[
            depth("link", "a.com", 2),
            depth("wandering", "b.com", 1),
            depth("link", "c.com", 5),
        ]);
        assert_eq!(q["total_backlog"], 8);
        assert_eq!(q["queue_link"]["spider_backlog"], 7);
        assert_eq!(q["queue_link"]["num_domains"], 2);
        assert_eq!(q["queue_link"]["domains"][0]["domain"], "c.com");
        assert_eq!(q["queue_wandering"]["domains"][0]["backlog"], 1);
    }

    #[test]
    fn windows_name_each_window_and_the_lifetime() {
        let w = Windows {
            counts: [1, 2, 3, 4, 5, 6],
            lifetime: 9,
        };
        let j = windows_json(&w);
        assert_eq!(j["900"], 1);
        assert_eq!(j["604800"], 6);
        assert_eq!(j["lifetime"], 9);
    }
}
