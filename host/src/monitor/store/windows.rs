//! Stats on the Redis store, as counted: status counters summed over the
//! contract's windows (§4.2), queue depths, and the status page's summary.
//! The replies' JSON is built from these in `monitor::stats` and `rest`.

use super::crawls::HeldBack;
use super::MonitorStore;
use crate::scheduler::{Row, ScheduleBook};
use crate::store::{corrupt, crawl_owner, unavailable, unix_now, unix_now_ms, Figures, StoreError};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// What the status page shows (the gateway builds its JSON).
#[derive(Debug)]
pub struct Status {
    /// The most recently active crawls.
    pub crawls: Vec<CrawlStatus>,
    pub workers: Vec<WorkerStatus>,
    /// Pages crawled by the whole cluster, ever.
    pub pages_total: i64,
    pub queues: Vec<QueueDepth>,
    pub sites: SitePaces,
}

/// Domains listed in each of [`SitePaces`]' lists (`/metrics` labels).
pub const SITES_LISTED: usize = 20;

/// What `/metrics` shows of the domains' pace.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SitePaces {
    /// Domains paused now.
    pub paused: u64,
    /// The longest pauses: domain and time left.
    pub paused_for: Vec<(String, Duration)>,
    /// The adaptive throttle's widest spacings: domain and spacing.
    pub adaptive: Vec<(String, Duration)>,
    /// The slowest learned rates: origin, fetches per second, and the
    /// 429s and 503s that cut it.
    pub learned: Vec<(String, f64, u64)>,
}

/// Requests queued for one spider on one domain.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueDepth {
    pub spider: String,
    pub domain: String,
    pub backlog: u64,
}

/// One status counter summed over each of [`WINDOWS`], and ever.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Windows {
    pub counts: [i64; WINDOWS.len()],
    pub lifetime: i64,
}

impl Windows {
    pub fn add(&mut self, other: &Windows) {
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            *a += b;
        }
        self.lifetime += other.lifetime;
    }
}

#[derive(Debug)]
pub struct CrawlStatus {
    pub appid: String,
    pub crawlid: String,
    pub spiderid: String,
    pub queued: i64,
    pub in_flight: i64,
    pub crawled: i64,
    /// Pages by status class, errors, bytes, changes; pages per minute.
    pub figures: Figures,
    pub schedule: Option<Row>,
    /// Its latest events, the newest first.
    pub events: Vec<Value>,
    /// The origins holding it back, while it has requests queued.
    pub held_back: Vec<HeldBack>,
}

/// Events the status page shows per crawl.
const EVENTS_SHOWN: usize = 5;

#[derive(Debug)]
pub struct WorkerStatus {
    pub id: String,
    pub heartbeat_age_ms: i64,
    /// As the worker's heartbeat wrote them (JSON).
    pub spiders: Value,
    pub plugins: Value,
    /// `false`, or its render counts (`rendered`, `failed`, `restarts`).
    pub render: Value,
}

/// Stats windows (contract §4.2), in seconds.
pub const WINDOWS: [u64; 6] = [900, 3600, 21600, 43200, 86400, 604800];

impl MonitorStore {
    /// Every status-counter key.
    async fn stat_keys(&self) -> Result<Vec<String>, StoreError> {
        let mut con = self.redis.con();
        redis::cmd("SMEMBERS")
            .arg(self.redis.key("stkeys"))
            .query_async(&mut con)
            .await
            .map_err(unavailable)
    }

    /// Trim old stats if no process did for a while (one claims it).
    pub(super) async fn trim_stats_if_mine(&self) -> Result<(), StoreError> {
        let mut con = self.redis.con();
        let mine: Option<String> = redis::cmd("SET")
            .arg(self.redis.key("trimmed"))
            .arg(&*self.machine)
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

    /// Drop minute buckets older than 12 h and hour buckets older than 8 days.
    async fn trim_stats(&self) -> Result<(), StoreError> {
        let keys = self.stat_keys().await?;
        let mut con = self.redis.con();
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

impl MonitorStore {
    /// Pages crawled by the whole cluster, ever (sum of the spiders'
    /// lifetime status counters).
    pub async fn pages_total(&self) -> Result<i64, StoreError> {
        let keys = self.stat_keys().await?;
        let prefix = self.redis.key("st:s:");
        let spider_keys: Vec<&String> = keys.iter().filter(|k| k.starts_with(&prefix)).collect();
        if spider_keys.is_empty() {
            return Ok(0);
        }
        let mut pipe = redis::pipe();
        for k in &spider_keys {
            pipe.cmd("HGET").arg(*k).arg("life");
        }
        let mut con = self.redis.con();
        let lives: Vec<Option<i64>> = pipe.query_async(&mut con).await.map_err(unavailable)?;
        Ok(lives.into_iter().flatten().sum())
    }

    /// For the status page: the most recently active crawls with their
    /// counts, live workers with heartbeat age and plugins, and the total
    /// of pages crawled (for a rate).
    pub async fn status(&self, crawls: usize) -> Result<Status, StoreError> {
        let mut list = Vec::new();
        for cref in self.recent_crawls(crawls).await? {
            if let Some(c) = self.crawl_status(&cref).await? {
                list.push(c);
            }
        }
        Ok(Status {
            crawls: list,
            workers: self.worker_statuses().await?,
            pages_total: self.pages_total().await?,
            queues: self.queue_depths().await?,
            sites: self.site_paces().await?,
        })
    }

    /// The `crawls` most recently active crawls of every shard, most recent
    /// first.
    async fn recent_crawls(&self, crawls: usize) -> Result<Vec<String>, StoreError> {
        let mut recent: HashMap<String, f64> = HashMap::new();
        for k in self.redis.shards().all() {
            let mut con = self.redis.con();
            let on_shard: Vec<(String, f64)> = redis::cmd("ZREVRANGE")
                .arg(format!("{}:crawls", self.redis.shards().tag(k)))
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
        Ok(crefs.into_iter().map(|(cref, _)| cref).collect())
    }

    /// One crawl's counts summed over the shards; `None` once its spec is
    /// gone.
    async fn crawl_status(&self, cref: &str) -> Result<Option<CrawlStatus>, StoreError> {
        let Some(spec) = self.redis.spec(cref).await? else {
            return Ok(None);
        };
        let (mut q, mut f, mut d) = (0, 0, 0);
        for k in self.redis.shards().all() {
            let mut con = self.redis.con();
            let (sq, sf, sd): (Option<i64>, Option<i64>, Option<i64>) = redis::cmd("HMGET")
                .arg(format!("{}:cc:{cref}", self.redis.shards().tag(k)))
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
        let key = spec.key();
        let held_back = if q > 0 {
            self.held_back(cref, &crawl_owner(&key), &spec.spiderid)
                .await?
        } else {
            Vec::new()
        };
        Ok(Some(CrawlStatus {
            appid: spec.appid.clone(),
            crawlid: spec.crawlid.clone(),
            spiderid: spec.spiderid.clone(),
            queued: q,
            in_flight: f,
            crawled: d,
            figures: self.redis.crawl_figures(cref).await?,
            schedule: self.row(&key).await?,
            events: self.recent_events(&key, EVENTS_SHOWN).await?,
            held_back,
        }))
    }

    /// Live workers: heartbeat age, and the spiders, plugins and render
    /// state their cards list.
    async fn worker_statuses(&self) -> Result<Vec<WorkerStatus>, StoreError> {
        let mut con = self.redis.con();
        let beats: Vec<(String, i64)> = redis::cmd("ZRANGE")
            .arg(self.redis.key("hb"))
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(&mut con)
            .await
            .map_err(unavailable)?;
        let info: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.redis.key("hbinfo"))
            .query_async(&mut con)
            .await
            .map_err(unavailable)?;
        let now = unix_now_ms();
        beats
            .into_iter()
            .map(|(id, at)| {
                // No card yet (a worker between its first two writes) reads as
                // nulls; a card that does not parse is not ours.
                let mut i: Value = match info.get(&id) {
                    None => Value::Null,
                    Some(j) => serde_json::from_str(j)
                        .map_err(|e| corrupt(format!("hbinfo of {id}: {e}")))?,
                };
                Ok(WorkerStatus {
                    heartbeat_age_ms: (now - at).max(0),
                    spiders: i["spiders"].take(),
                    plugins: i["plugins"].take(),
                    render: i["render"].take(),
                    id,
                })
            })
            .collect()
    }

    /// Status counters by (name, status) for `st:<kind>:` keys.
    pub async fn status_windows(
        &self,
        kind: char,
    ) -> Result<BTreeMap<(String, String), Windows>, StoreError> {
        let keys = self.stat_keys().await?;
        let mut con = self.redis.con();
        let prefix = self.redis.key(&format!("st:{kind}:"));
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
            let mut w = Windows {
                lifetime: fields.get("life").copied().unwrap_or(0),
                ..Windows::default()
            };
            for (n, secs) in w.counts.iter_mut().zip(WINDOWS) {
                // Minute buckets up to 12 h, hour buckets beyond.
                *n = if secs <= 43200 {
                    sum('m', minute - (secs / 60) as i64)
                } else {
                    sum('h', hour - (secs / 3600) as i64)
                };
            }
            out.insert((name.to_string(), status.to_string()), w);
        }
        Ok(out)
    }

    /// Domains paused now (a 429 or 503) and those the adaptive throttle
    /// spaces most, over all shards: the [`SITES_LISTED`] longest or
    /// slowest of each.
    pub async fn site_paces(&self) -> Result<SitePaces, StoreError> {
        let now = unix_now_ms();
        let mut out = SitePaces::default();
        for k in self.redis.shards().all() {
            let tag = self.redis.shards().tag(k);
            let mut con = self.redis.con();
            type Scored = Vec<(String, i64)>;
            type Rated = Vec<(String, f64)>;
            let (paused, longest, slowest, learned): (u64, Scored, Scored, Rated) = redis::pipe()
                .cmd("ZCOUNT")
                .arg(format!("{tag}:paused"))
                .arg(now)
                .arg("+inf")
                .cmd("ZREVRANGEBYSCORE")
                .arg(format!("{tag}:paused"))
                .arg("+inf")
                .arg(now)
                .arg("WITHSCORES")
                .arg("LIMIT")
                .arg(0)
                .arg(SITES_LISTED)
                .cmd("ZREVRANGE")
                .arg(format!("{tag}:adaptive"))
                .arg(0)
                .arg(SITES_LISTED - 1)
                .arg("WITHSCORES")
                .cmd("ZRANGE")
                .arg(format!("{tag}:learned"))
                .arg(0)
                .arg(SITES_LISTED - 1)
                .arg("WITHSCORES")
                .query_async(&mut con)
                .await
                .map_err(unavailable)?;
            let ms = |v: i64| Duration::from_millis(v.max(0) as u64);
            out.paused += paused;
            out.paused_for
                .extend(longest.into_iter().map(|(d, at)| (d, ms(at - now))));
            out.adaptive
                .extend(slowest.into_iter().map(|(d, spacing)| (d, ms(spacing))));
            out.learned.extend(self.learned_now(tag, learned).await?);
        }
        out.learned.sort_by(|a, b| a.1.total_cmp(&b.1));
        out.learned.truncate(SITES_LISTED);
        for list in [&mut out.paused_for, &mut out.adaptive] {
            list.sort_by_key(|(_, d)| std::cmp::Reverse(*d));
            list.truncate(SITES_LISTED);
        }
        Ok(out)
    }

    /// The current learned rates of `listed` (domains by their rate after
    /// their last cut); a domain whose rate climbed back to the throttle's
    /// has none and is left out.
    async fn learned_now(
        &self,
        tag: &str,
        listed: Vec<(String, f64)>,
    ) -> Result<Vec<(String, f64, u64)>, StoreError> {
        if listed.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for (d, _) in &listed {
            pipe.cmd("HMGET")
                .arg(format!("{tag}:ds:{d}"))
                .arg("rt")
                .arg("e");
        }
        let now: Vec<(Option<f64>, Option<u64>)> = pipe
            .query_async(&mut self.redis.con())
            .await
            .map_err(unavailable)?;
        Ok(listed
            .into_iter()
            .zip(now)
            .filter_map(|((d, _), (rt, cuts))| Some((d, rt?, cuts.unwrap_or(0))))
            .collect())
    }

    /// Requests queued per spider and domain, over all shards.
    pub async fn queue_depths(&self) -> Result<Vec<QueueDepth>, StoreError> {
        let mut by: BTreeMap<(String, String), u64> = BTreeMap::new();
        for k in self.redis.shards().all() {
            let tag = self.redis.shards().tag(k);
            let mut con = self.redis.con();
            let (plain, rendered): (Vec<String>, Vec<String>) = redis::pipe()
                .cmd("ZRANGE")
                .arg(format!("{tag}:ready"))
                .arg(0)
                .arg(-1)
                .cmd("ZRANGE")
                .arg(format!("{tag}:rready"))
                .arg(0)
                .arg(-1)
                .query_async(&mut con)
                .await
                .map_err(unavailable)?;
            let on_shard: Vec<String> = plain.into_iter().chain(rendered).collect();
            if on_shard.is_empty() {
                continue;
            }
            // Each queue's crawls, then each crawl's requests there (and a
            // queue written before crawls were kept apart).
            let mut pipe = redis::pipe();
            for qk in &on_shard {
                pipe.cmd("ZRANGE")
                    .arg(format!("{tag}:qc:{qk}"))
                    .arg(0)
                    .arg(-1);
            }
            let crawls: Vec<Vec<String>> = pipe.query_async(&mut con).await.map_err(unavailable)?;
            let mut pipe = redis::pipe();
            for (qk, crefs) in on_shard.iter().zip(&crawls) {
                pipe.cmd("ZCARD").arg(format!("{tag}:q:{qk}"));
                for cref in crefs {
                    pipe.cmd("ZCARD").arg(format!("{tag}:q:{qk}#{cref}"));
                }
            }
            let sizes: Vec<u64> = pipe.query_async(&mut con).await.map_err(unavailable)?;
            let mut sizes = sizes.into_iter();
            let n: Vec<u64> = crawls
                .iter()
                .map(|crefs| sizes.by_ref().take(crefs.len() + 1).sum())
                .collect();
            // Queue keys are `<spider>|<domain>|<origin>[|r]`: summed per
            // spider and domain.
            for (qk, backlog) in on_shard.iter().zip(n) {
                let mut parts = qk.split('|');
                if let (Some(spider), Some(domain)) = (parts.next(), parts.next()) {
                    *by.entry((spider.to_string(), domain.to_string()))
                        .or_default() += backlog;
                }
            }
        }
        Ok(by
            .into_iter()
            .filter(|(_, backlog)| *backlog > 0)
            .map(|((spider, domain), backlog)| QueueDepth {
                spider,
                domain,
                backlog,
            })
            .collect())
    }
}

impl MonitorStore {
    /// Count `n` handled requests under `name` for a monitor's stats
    /// (`stat_kind` 'k' ingest, 'r' control plane), plus the total.
    pub async fn count_handled(
        &self,
        stat_kind: char,
        name: &str,
        n: u64,
    ) -> Result<(), StoreError> {
        let now = unix_now();
        let (minute, hour) = (now / 60, now / 3600);
        let mut pipe = redis::pipe();
        for key in [name, "total"] {
            let key = self.redis.key(&format!("st:{stat_kind}:{key}:n"));
            pipe.cmd("HINCRBY")
                .arg(&key)
                .arg(format!("m{minute}"))
                .arg(n)
                .ignore()
                .cmd("HINCRBY")
                .arg(&key)
                .arg(format!("h{hour}"))
                .arg(n)
                .ignore()
                .cmd("HINCRBY")
                .arg(&key)
                .arg("life")
                .arg(n)
                .ignore()
                .cmd("SADD")
                .arg(self.redis.key("stkeys"))
                .arg(&key)
                .ignore();
        }
        let mut con = self.redis.con();
        let _: () = pipe.query_async(&mut con).await.map_err(unavailable)?;
        Ok(())
    }
}
