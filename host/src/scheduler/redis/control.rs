//! Control operations and stats on the Redis store: the library the Kafka
//! control plane calls. Every crawl-level operation costs O(size of that
//! crawl) thanks to per-crawl indexes, never O(whole backlog).

use super::{crawl_owner, crawl_ref, unavailable, RedisStore};
use crate::request::CrawlKey;
use crate::scheduler::{domain, StoreError};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A live change to a domain's politeness (contract §2.4).
#[derive(Debug, Clone, PartialEq)]
pub enum DomainAction {
    /// `hits` fetches per `window` seconds, scaled by `scale` (0-1).
    Update {
        hits: u32,
        window: f64,
        scale: f64,
    },
    /// Back to the default throttle.
    Remove,
    /// Not fetched at all; its queue is kept.
    Blacklist,
    Unblacklist,
}

/// A crawl ended by its `expires` time, reported exactly once.
#[derive(Debug, Clone, PartialEq)]
pub struct Expired {
    pub appid: String,
    pub crawlid: String,
    pub purged: u64,
}

/// Stats windows (contract §4.2), in seconds.
const WINDOWS: [u64; 6] = [900, 3600, 21600, 43200, 86400, 604800];

impl RedisStore {
    pub(super) fn key(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.ns)
    }

    /// Name the spiders this worker runs, for the `spider` stats.
    pub fn set_spiders(&self, names: Vec<String>) {
        *self.spiders.lock() = names;
    }

    /// The plugins this worker has loaded (name, kind, version, hash), shown
    /// on the status page.
    pub fn set_plugins(&self, plugins: Vec<Value>) {
        *self.plugins.lock() = plugins;
    }

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
    pub async fn status(&self, crawls: usize) -> Result<Value, StoreError> {
        let mut con = self.con();
        let crefs: Vec<String> = redis::cmd("ZREVRANGE")
            .arg(self.key("crawls"))
            .arg(0)
            .arg(crawls.saturating_sub(1))
            .query_async(&mut con)
            .await
            .map_err(unavailable)?;
        let mut pipe = redis::pipe();
        for cref in &crefs {
            pipe.cmd("HMGET")
                .arg(self.key(&format!("cc:{cref}")))
                .arg("q")
                .arg("f")
                .arg("d");
        }
        let counts: Vec<(Option<i64>, Option<i64>, Option<i64>)> = if crefs.is_empty() {
            Vec::new()
        } else {
            pipe.query_async(&mut con).await.map_err(unavailable)?
        };
        let mut list = Vec::new();
        for (cref, (q, f, d)) in crefs.iter().zip(counts) {
            let Some(spec) = self.spec(cref).await? else {
                continue;
            };
            let (q, f, d) = (q.unwrap_or(0).max(0), f.unwrap_or(0).max(0), d.unwrap_or(0));
            list.push(
                json!({"appid": spec.appid, "crawlid": spec.crawlid, "spiderid": spec.spiderid,
                             "queued": q, "in_flight": f, "crawled": d, "done": q == 0 && f == 0}),
            );
        }
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
        let workers: Vec<Value> = beats
            .into_iter()
            .map(|(id, at)| {
                let i: Value = info
                    .get(&id)
                    .and_then(|j| serde_json::from_str(j).ok())
                    .unwrap_or_default();
                json!({"id": id, "heartbeat_age_ms": (now - at).max(0),
                       "spiders": i["spiders"], "plugins": i["plugins"]})
            })
            .collect();
        let pages = self.pages_total().await?;
        Ok(
            json!({"crawls": list, "workers": workers, "pages_total": pages,
                  "queues": self.queue_stats().await?}),
        )
    }

    /// Info on one crawl: queued per domain, in flight, crawled, done.
    pub async fn info_crawl(
        &self,
        appid: &str,
        crawlid: &str,
        spiderid: &str,
    ) -> Result<Value, StoreError> {
        let key = CrawlKey {
            appid: appid.into(),
            crawlid: crawlid.into(),
        };
        let cref = crawl_ref(&key);
        let (queued, in_flight, crawled, domains) = self
            .crawl_counts(&cref, &crawl_owner(&key), spiderid)
            .await?;
        // `total_pending` and `domains` are the asked spider's (contract
        // §4.2); `in_flight`, `crawled` and `done` are the whole crawl's.
        let all_queued = self.crawl_queued(&cref).await?;
        let mut reply = json!({
            "appid": appid, "spiderid": spiderid, "crawlid": crawlid,
            "total_pending": queued, "total_domains": domains.len(), "domains": domains,
            "in_flight": in_flight, "crawled": crawled, "done": all_queued == 0 && in_flight == 0,
            "server_time": unix_now(),
        });
        if let Some(spec) = self.spec(&cref).await? {
            if spec.expires > 0 && spec.key() == key {
                reply["expires"] = spec.expires.into();
            }
        }
        Ok(reply)
    }

    /// Info on every crawl of an app.
    pub async fn info_app(&self, appid: &str, spiderid: &str) -> Result<Value, StoreError> {
        let mut con = self.con();
        let crefs: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.key(&format!("app:{appid}")))
            .query_async(&mut con)
            .await
            .map_err(unavailable)?;
        let mut crawlids = Map::new();
        let (mut total_pending, mut all_domains) = (0u64, BTreeSet::new());
        for cref in crefs {
            let Some(spec) = self.spec(&cref).await? else {
                continue;
            };
            if spec.appid != appid {
                continue;
            }
            let owner = crawl_owner(&spec.key());
            let (queued, _, _, domains) = self.crawl_counts(&cref, &owner, spiderid).await?;
            if queued == 0 && spec.spiderid != spiderid {
                // Another spider's crawl with nothing queued for this one.
                continue;
            }
            total_pending += queued;
            all_domains.extend(domains.keys().cloned());
            let mut c =
                json!({"total": queued, "distinct_domains": domains.len(), "domains": domains});
            if spec.expires > 0 {
                c["expires"] = spec.expires.into();
            }
            crawlids.insert(spec.crawlid.clone(), c);
        }
        Ok(json!({
            "appid": appid, "spiderid": spiderid, "total_pending": total_pending,
            "total_domains": all_domains.len(), "total_crawlids": crawlids.len(), "crawlids": crawlids,
            "server_time": unix_now(),
        }))
    }

    /// Everything the crawl has queued, whatever the spider.
    async fn crawl_queued(&self, cref: &str) -> Result<u64, StoreError> {
        let mut con = self.con();
        let q: Option<i64> = redis::cmd("HGET")
            .arg(self.key(&format!("cc:{cref}")))
            .arg("q")
            .query_async(&mut con)
            .await
            .map_err(unavailable)?;
        Ok(q.unwrap_or(0).max(0) as u64)
    }

    /// The crawl's requests queued for `spider`, per domain, and the
    /// crawl's in-flight and crawled counts.
    async fn crawl_counts(
        &self,
        cref: &str,
        owner: &str,
        spider: &str,
    ) -> Result<(u64, u64, u64, Map<String, Value>), StoreError> {
        let mut con = self.con();
        let out: Vec<redis::Value> = self
            .scripts
            .info
            .key(self.key("ready"))
            .arg(&self.ns)
            .arg(cref)
            .arg(owner)
            .arg(spider)
            .invoke_async(&mut con)
            .await
            .map_err(unavailable)?;
        let int = |v: &redis::Value| match v {
            redis::Value::Int(i) => *i,
            _ => 0,
        };
        let n = |i: usize| out.get(i).map(int).unwrap_or(0).max(0) as u64;
        let mut domains = Map::new();
        for chunk in out.get(3..).unwrap_or_default().chunks(4) {
            if let [redis::Value::BulkString(d), total, high, low] = chunk {
                domains.insert(
                    String::from_utf8_lossy(d).into_owned(),
                    json!({"total": int(total), "high_priority": int(high), "low_priority": int(low)}),
                );
            }
        }
        Ok((n(0), n(1), n(2), domains))
    }

    /// Stop a crawl: purge its queue, refuse its future children. Requests
    /// in flight may still produce results. With a `horizon` (a stop stored
    /// in order by the ingest script), only requests queued before the
    /// stop (job ids up to it) are purged. Returns how many were purged.
    pub async fn stop(
        &self,
        appid: &str,
        crawlid: &str,
        horizon: Option<u64>,
    ) -> Result<u64, StoreError> {
        let key = CrawlKey {
            appid: appid.into(),
            crawlid: crawlid.into(),
        };
        let mut con = self.con();
        let purged: i64 = self
            .scripts
            .stop
            .key(self.key("ready"))
            .arg(&self.ns)
            .arg(crawl_ref(&key))
            .arg(crawl_owner(&key))
            .arg(horizon.map(|h| h.to_string()).unwrap_or_default())
            .invoke_async(&mut con)
            .await
            .map_err(unavailable)?;
        Ok(purged.max(0) as u64)
    }

    /// Stop every crawl whose `expires` has passed. Each is returned to
    /// exactly one caller across the cluster.
    pub async fn expire_due(&self) -> Result<Vec<Expired>, StoreError> {
        let mut con = self.con();
        let out: Vec<String> = self
            .scripts
            .expire
            .key(self.key("ready"))
            .arg(&self.ns)
            .invoke_async(&mut con)
            .await
            .map_err(unavailable)?;
        let mut expired = Vec::new();
        for pair in out.chunks(2) {
            let [cref, purged] = pair else { continue };
            if let Some(spec) = self.spec(cref).await? {
                expired.push(Expired {
                    appid: spec.appid.clone(),
                    crawlid: spec.crawlid.clone(),
                    purged: purged.parse().unwrap_or(0),
                });
            }
        }
        Ok(expired)
    }

    /// Change a domain's limits or blacklist it. Running workers see it on
    /// their next pop: the throttle is decided inside Redis.
    pub async fn domain(&self, domain_name: &str, action: &DomainAction) -> Result<(), StoreError> {
        let d = domain::registered(domain_name);
        let mut con = self.con();
        let cmd = match action {
            DomainAction::Update {
                hits,
                window,
                scale,
            } => {
                let mut c = redis::cmd("HSET");
                c.arg(self.key("domcfg"))
                    .arg(&d)
                    .arg(format!("{hits},{window},{scale}"));
                c
            }
            DomainAction::Remove => {
                let mut c = redis::cmd("HDEL");
                c.arg(self.key("domcfg")).arg(&d);
                c
            }
            DomainAction::Blacklist => {
                let mut c = redis::cmd("SADD");
                c.arg(self.key("blacklist")).arg(&d);
                c
            }
            DomainAction::Unblacklist => {
                let mut c = redis::cmd("SREM");
                c.arg(self.key("blacklist")).arg(&d);
                c
            }
        };
        let _: i64 = cmd.query_async(&mut con).await.map_err(unavailable)?;
        Ok(())
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

    /// Live workers: id -> (host, spiders).
    async fn live_workers(&self) -> Result<Vec<(String, String, Vec<String>)>, StoreError> {
        let mut con = self.con();
        let info: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.key("hbinfo"))
            .query_async(&mut con)
            .await
            .map_err(unavailable)?;
        Ok(info
            .into_iter()
            .filter_map(|(id, json)| {
                let v: Value = serde_json::from_str(&json).ok()?;
                let host = v["host"].as_str()?.to_string();
                let spiders = v["spiders"]
                    .as_array()?
                    .iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect();
                Some((id, host, spiders))
            })
            .collect())
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
        let mut con = self.con();
        let qks: Vec<String> = redis::cmd("ZRANGE")
            .arg(self.key("ready"))
            .arg(0)
            .arg(-1)
            .query_async(&mut con)
            .await
            .map_err(unavailable)?;
        let mut pipe = redis::pipe();
        for qk in &qks {
            pipe.cmd("ZCARD").arg(self.key(&format!("q:{qk}")));
        }
        let sizes: Vec<u64> = if qks.is_empty() {
            Vec::new()
        } else {
            pipe.query_async(&mut con).await.map_err(unavailable)?
        };
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

    /// This worker's heartbeat: its time, and its details (spiders,
    /// plugins) when they changed.
    pub(super) async fn beat(&self) -> Result<(), StoreError> {
        let mut con = self.con();
        let info = json!({"host": self.host, "spiders": *self.spiders.lock(), "plugins": *self.plugins.lock()})
            .to_string();
        let mut pipe = redis::pipe();
        pipe.cmd("ZADD")
            .arg(self.key("hb"))
            .arg(unix_now_ms())
            .arg(&self.machine)
            .ignore();
        if self.pace.info_changed(&info) {
            pipe.cmd("HSET")
                .arg(self.key("hbinfo"))
                .arg(&self.machine)
                .arg(info)
                .ignore();
        }
        let _: () = pipe.query_async(&mut con).await.map_err(unavailable)?;
        Ok(())
    }

    /// Silent workers dropped, expired crawls stopped, old stats trimmed
    /// (by one worker a minute, cluster-wide).
    pub(super) async fn upkeep(&self) -> Result<(), StoreError> {
        let mut con = self.con();
        let now = unix_now_ms();
        let stale: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(self.key("hb"))
            .arg("-inf")
            .arg(now - self.heartbeat_ttl_ms as i64)
            .query_async(&mut con)
            .await
            .map_err(unavailable)?;
        if !stale.is_empty() {
            let _: () = redis::pipe()
                .cmd("ZREM")
                .arg(self.key("hb"))
                .arg(&stale)
                .ignore()
                .cmd("HDEL")
                .arg(self.key("hbinfo"))
                .arg(&stale)
                .ignore()
                .query_async(&mut con)
                .await
                .map_err(unavailable)?;
        }
        // The `expired` replies go out through the control stream.
        for e in self.expire_due().await? {
            tracing::info!(appid = %e.appid, crawlid = %e.crawlid, purged = e.purged, "crawl expired");
        }
        let mine: Option<String> = redis::cmd("SET")
            .arg(self.key("trimmed"))
            .arg(&self.machine)
            .arg("NX")
            .arg("PX")
            .arg(crate::timeouts::STATS_TRIM_EVERY.as_millis() as u64)
            .query_async(&mut con)
            .await
            .map_err(unavailable)?;
        if mine.is_some() {
            self.trim_stats().await?;
        }
        Ok(())
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
    async fn trim_stats(&self) -> Result<(), StoreError> {
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

fn unix_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub(super) fn unix_now() -> i64 {
    unix_now_ms() / 1000
}
