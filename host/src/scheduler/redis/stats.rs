//! Stats on the Redis store: the contract's windows (§4.2) per spider,
//! machine and queue, and the status page's summary.

use super::{unavailable, unix_now, unix_now_ms, RedisStore};
use crate::scheduler::StoreError;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// What the status page shows (the gateway builds its JSON).
#[derive(Debug)]
pub struct Status {
    /// The most recently active crawls.
    pub crawls: Vec<CrawlStatus>,
    pub workers: Vec<WorkerStatus>,
    /// Pages crawled by the whole cluster, ever.
    pub pages_total: i64,
    /// The queue stats as the contract's `stats` reply has them.
    pub queues: Value,
}

#[derive(Debug)]
pub struct CrawlStatus {
    pub appid: String,
    pub crawlid: String,
    pub spiderid: String,
    pub queued: i64,
    pub in_flight: i64,
    pub crawled: i64,
}

#[derive(Debug)]
pub struct WorkerStatus {
    pub id: String,
    pub heartbeat_age_ms: i64,
    /// As the worker's heartbeat wrote them (JSON).
    pub spiders: Value,
    pub plugins: Value,
}

/// Stats windows (contract §4.2), in seconds.
const WINDOWS: [u64; 6] = [900, 3600, 21600, 43200, 86400, 604800];

impl RedisStore {
    /// Pages crawled by the whole cluster, ever (sum of the spiders'
    /// lifetime status counters).
    pub async fn pages_total(&self) -> Result<i64, StoreError> {
        let keys = self.stat_keys().await?;
        let prefix = self.key("st:s:");
        let spider_keys: Vec<&String> = keys.iter().filter(|k| k.starts_with(&prefix)).collect();
        if spider_keys.is_empty() {
            return Ok(0);
        }
        let mut pipe = redis::pipe();
        for k in &spider_keys {
            pipe.cmd("HGET").arg(*k).arg("life");
        }
        let mut con = self.con();
        let lives: Vec<Option<i64>> = pipe.query_async(&mut con).await.map_err(unavailable)?;
        Ok(lives.into_iter().flatten().sum())
    }

    /// For the status page: the most recently active crawls with their
    /// counts, live workers with heartbeat age and plugins, and the total
    /// of pages crawled (for a rate).
    pub async fn status(&self, crawls: usize) -> Result<Status, StoreError> {
        // The most recent crawls of every shard, then their counts summed
        // over the shards.
        let mut recent: HashMap<String, f64> = HashMap::new();
        for k in self.shards.all() {
            let mut con = self.con();
            let on_shard: Vec<(String, f64)> = redis::cmd("ZREVRANGE")
                .arg(format!("{}:crawls", self.shards.tag(k)))
                .arg(0)
                .arg(crawls.saturating_sub(1))
                .arg("WITHSCORES")
                .query_async(&mut con)
                .await
                .map_err(unavailable)?;
            for (cref, at) in on_shard {
                let e = recent.entry(cref).or_insert(at);
                *e = e.max(at);
            }
        }
        let mut crefs: Vec<(String, f64)> = recent.into_iter().collect();
        crefs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        crefs.truncate(crawls);
        let mut list = Vec::new();
        for (cref, _) in &crefs {
            let Some(spec) = self.spec(cref).await? else {
                continue;
            };
            let (mut q, mut f, mut d) = (0, 0, 0);
            for k in self.shards.all() {
                let mut con = self.con();
                let (sq, sf, sd): (Option<i64>, Option<i64>, Option<i64>) = redis::cmd("HMGET")
                    .arg(format!("{}:cc:{cref}", self.shards.tag(k)))
                    .arg("q")
                    .arg("f")
                    .arg("d")
                    .query_async(&mut con)
                    .await
                    .map_err(unavailable)?;
                q += sq.unwrap_or(0).max(0);
                f += sf.unwrap_or(0).max(0);
                d += sd.unwrap_or(0);
            }
            list.push(CrawlStatus {
                appid: spec.appid.clone(),
                crawlid: spec.crawlid.clone(),
                spiderid: spec.spiderid.clone(),
                queued: q,
                in_flight: f,
                crawled: d,
            });
        }
        let mut con = self.con();
        let beats: Vec<(String, i64)> = redis::cmd("ZRANGE")
            .arg(self.key("hb"))
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(&mut con)
            .await
            .map_err(unavailable)?;
        let info: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.key("hbinfo"))
            .query_async(&mut con)
            .await
            .map_err(unavailable)?;
        let now = unix_now_ms();
        let workers = beats
            .into_iter()
            .map(|(id, at)| {
                let mut i: Value = info
                    .get(&id)
                    .and_then(|j| serde_json::from_str(j).ok())
                    .unwrap_or_default();
                WorkerStatus {
                    id,
                    heartbeat_age_ms: (now - at).max(0),
                    spiders: i["spiders"].take(),
                    plugins: i["plugins"].take(),
                }
            })
            .collect();
        Ok(Status {
            crawls: list,
            workers,
            pages_total: self.pages_total().await?,
            queues: self.queue_stats().await?,
        })
    }

    /// Stats by type: `spider`, `machine`, `queue`, `crawler` (all three).
    pub async fn stats(&self, kind: &str) -> Result<Value, StoreError> {
        Ok(match kind {
            "spider" => json!({"spiders": self.spider_stats().await?}),
            "machine" => json!({"machines": self.machine_stats().await?}),
            "queue" => json!({"queues": self.queue_stats().await?}),
            _ => json!({
                "spiders": self.spider_stats().await?,
                "machines": self.machine_stats().await?,
                "queue": self.queue_stats().await?,
            }),
        })
    }

    /// Status counters by (name, status) for `st:<kind>:` keys.
    pub(super) async fn status_windows(
        &self,
        kind: char,
    ) -> Result<BTreeMap<(String, String), Value>, StoreError> {
        let keys = self.stat_keys().await?;
        let mut con = self.con();
        let prefix = self.key(&format!("st:{kind}:"));
        let mut out = BTreeMap::new();
        let (minute, hour) = (unix_now() / 60, unix_now() / 3600);
        for key in keys {
            let Some(rest) = key.strip_prefix(&prefix) else {
                continue;
            };
            let Some((name, status)) = rest.rsplit_once(':') else {
                continue;
            };
            let fields: HashMap<String, i64> = redis::cmd("HGETALL")
                .arg(&key)
                .query_async(&mut con)
                .await
                .map_err(unavailable)?;
            let sum = |res: char, from: i64| -> i64 {
                fields
                    .iter()
                    .filter_map(|(k, v)| {
                        let t: i64 = k.strip_prefix(res)?.parse().ok()?;
                        (t > from).then_some(*v)
                    })
                    .sum()
            };
            let mut w = Map::new();
            for secs in WINDOWS {
                let n = if secs <= 43200 {
                    sum('m', minute - (secs / 60) as i64)
                } else {
                    sum('h', hour - (secs / 3600) as i64)
                };
                w.insert(secs.to_string(), n.into());
            }
            w.insert(
                "lifetime".into(),
                fields.get("life").copied().unwrap_or(0).into(),
            );
            out.insert((name.to_string(), status.to_string()), Value::Object(w));
        }
        Ok(out)
    }

    async fn spider_stats(&self) -> Result<Value, StoreError> {
        let workers = self.live_workers().await?;
        let mut spiders = Map::new();
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for (_, _, names) in &workers {
            for n in names {
                *counts.entry(n.clone()).or_default() += 1;
            }
        }
        spiders.insert("unique_spider_count".into(), counts.len().into());
        spiders.insert(
            "total_spider_count".into(),
            counts.values().sum::<u64>().into(),
        );
        for (name, count) in &counts {
            spiders.insert(name.clone(), json!({"count": count}));
        }
        for ((name, status), w) in self.status_windows('s').await? {
            let entry = spiders.entry(name).or_insert_with(|| json!({"count": 0}));
            entry[status] = w;
        }
        Ok(Value::Object(spiders))
    }

    async fn machine_stats(&self) -> Result<Value, StoreError> {
        let hosts: BTreeSet<String> = self
            .live_workers()
            .await?
            .into_iter()
            .map(|(_, h, _)| h)
            .collect();
        let mut machines = Map::new();
        machines.insert("count".into(), hosts.len().into());
        // Counters are per worker (host:pid); the contract reports per host.
        let mut by_host: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
        for ((machine, status), w) in self.status_windows('m').await? {
            let host = machine
                .rsplit_once(':')
                .map(|(h, _)| h.to_string())
                .unwrap_or(machine);
            let slot = by_host.entry(host).or_default();
            match slot.get_mut(&status) {
                Some(acc) => add_windows(acc, &w),
                None => {
                    slot.insert(status, w);
                }
            }
        }
        for (host, statuses) in by_host {
            machines.insert(host, Value::Object(statuses.into_iter().collect()));
        }
        Ok(Value::Object(machines))
    }

    async fn queue_stats(&self) -> Result<Value, StoreError> {
        let (mut qks, mut sizes) = (Vec::new(), Vec::new());
        for k in self.shards.all() {
            let tag = self.shards.tag(k);
            let mut con = self.con();
            let on_shard: Vec<String> = redis::cmd("ZRANGE")
                .arg(format!("{tag}:ready"))
                .arg(0)
                .arg(-1)
                .query_async(&mut con)
                .await
                .map_err(unavailable)?;
            if on_shard.is_empty() {
                continue;
            }
            let mut pipe = redis::pipe();
            for qk in &on_shard {
                pipe.cmd("ZCARD").arg(format!("{tag}:q:{qk}"));
            }
            let n: Vec<u64> = pipe.query_async(&mut con).await.map_err(unavailable)?;
            qks.extend(on_shard);
            sizes.extend(n);
        }
        let mut by_spider: BTreeMap<String, Vec<(String, u64)>> = BTreeMap::new();
        for (qk, n) in qks.iter().zip(sizes) {
            if let Some((spider, d)) = qk.split_once('|') {
                if n > 0 {
                    by_spider
                        .entry(spider.to_string())
                        .or_default()
                        .push((d.to_string(), n));
                }
            }
        }
        let mut queues = Map::new();
        let mut total = 0;
        for (spider, mut domains) in by_spider {
            domains.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            let backlog: u64 = domains.iter().map(|d| d.1).sum();
            total += backlog;
            queues.insert(
                format!("queue_{spider}"),
                json!({
                    "spider_backlog": backlog,
                    "num_domains": domains.len(),
                    "domains": domains.iter().map(|(d, n)| json!({"domain": d, "backlog": n})).collect::<Vec<_>>(),
                }),
            );
        }
        queues.insert("total_backlog".into(), total.into());
        Ok(Value::Object(queues))
    }

    /// Every status-counter key.
    async fn stat_keys(&self) -> Result<Vec<String>, StoreError> {
        let mut con = self.con();
        redis::cmd("SMEMBERS")
            .arg(self.key("stkeys"))
            .query_async(&mut con)
            .await
            .map_err(unavailable)
    }

    /// Drop minute buckets older than 12 h and hour buckets older than 8 days.
    pub(super) async fn trim_stats(&self) -> Result<(), StoreError> {
        let keys = self.stat_keys().await?;
        let mut con = self.con();
        let (minute, hour) = (unix_now() / 60, unix_now() / 3600);
        for key in keys {
            let fields: Vec<String> = redis::cmd("HKEYS")
                .arg(&key)
                .query_async(&mut con)
                .await
                .map_err(unavailable)?;
            let old: Vec<&String> = fields
                .iter()
                .filter(|f| {
                    let (res, t) = f.split_at(1);
                    let t: i64 = t.parse().unwrap_or(i64::MAX);
                    (res == "m" && t <= minute - 720) || (res == "h" && t <= hour - 192)
                })
                .collect();
            if !old.is_empty() {
                let _: i64 = redis::cmd("HDEL")
                    .arg(&key)
                    .arg(old)
                    .query_async(&mut con)
                    .await
                    .map_err(unavailable)?;
            }
        }
        Ok(())
    }
}

/// Windows with nothing counted yet.
pub(super) fn empty_windows() -> Value {
    let mut w: Map<String, Value> = WINDOWS
        .iter()
        .map(|s| (s.to_string(), Value::from(0)))
        .collect();
    w.insert("lifetime".into(), 0.into());
    Value::Object(w)
}

fn add_windows(acc: &mut Value, w: &Value) {
    if let (Value::Object(a), Value::Object(b)) = (acc, w) {
        for (k, v) in b {
            let sum = a.get(k).and_then(Value::as_i64).unwrap_or(0) + v.as_i64().unwrap_or(0);
            a.insert(k.clone(), sum.into());
        }
    }
}
