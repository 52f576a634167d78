//! The worker's frontier on Redis: what lets any number of workers share
//! one crawl. Every operation is one Lua script on one shard, so one round
//! trip: push, pop (with the throttle and blacklist decision), ack, retry,
//! admit (dedup and caps for a whole page), and the periodic reclaim of
//! expired leases. The connection, shards and specs it shares with the
//! monitors' store: [`crate::store`]. Key layout: `docs/redis-keys.md`.
//! The scripts, by role: `scripts.rs`.

use super::{Acked, Candidate, Counts, Frontier, Lease, Pop, StoreError};
use crate::config::{Settings, Throttle};
use crate::links::domain;
use crate::politeness::{Politeness, Requeue, Sample};
use crate::request::Job;
use crate::store::{
    corrupt, crawl_owner, crawl_ref, ms, owned_count, queue_key, unavailable, Redis, Reply, WireJob,
};
use async_trait::async_trait;
use parking_lot::Mutex;
use redis::Script;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

mod dedup;
mod heartbeat;
mod pace;
mod runs;
mod scripts;
pub use heartbeat::WorkerCard;
use scripts::Scripts;

/// Leases per shard whose fetch is over, waiting for a pop to tell.
const MAX_FETCHES_OVER: usize = 1024;

/// Chores of the whole cluster that any worker may run when its upkeep
/// falls due (expired crawls stopped, old stats trimmed): the monitors'
/// store knows how; the frontier paces them.
#[async_trait]
pub trait Chores: Send + Sync {
    async fn run(&self) -> Result<(), StoreError>;
}

/// How long things live: a lease without renewal, a crawl's dedup state
/// once idle, a worker without a heartbeat.
struct Lifetimes {
    lease: Duration,
    dupe_idle: Duration,
    heartbeat: Duration,
}

pub struct RedisFrontier {
    redis: Arc<Redis>,
    scripts: Scripts,
    throttle: Throttle,
    lifetimes: Lifetimes,
    politeness: Politeness,
    /// This worker in the cluster (heartbeat, stats, render).
    card: Arc<WorkerCard>,
    /// Statuses of acked pages not yet in the stats windows: (spider,
    /// status) -> count, written once a second by
    /// [`RedisFrontier::flush_tally`] instead of by every ack.
    tally: Mutex<HashMap<(String, u16), u64>>,
    /// When this worker next beats and runs upkeep; its wake-up signal.
    pace: pace::Pace,
    /// Per shard, leases whose fetch is over, told with the next pop there
    /// (no round trip of their own): see [`Frontier::fetched`].
    fetches_over: Mutex<Vec<Vec<u64>>>,
    chores: Option<Arc<dyn Chores>>,
    /// `throttle.weights` as the pop script reads it (JSON; "" = none).
    weights: String,
}

impl RedisFrontier {
    /// The frontier of this worker (`card`), on a connected store; `chores`
    /// run when its upkeep falls due.
    pub fn new(
        redis: Arc<Redis>,
        settings: &Settings,
        card: Arc<WorkerCard>,
        chores: Option<Arc<dyn Chores>>,
    ) -> RedisFrontier {
        RedisFrontier {
            redis,
            scripts: Scripts::load(),
            throttle: settings.throttle.clone(),
            lifetimes: Lifetimes {
                lease: settings.crawl.lease_ttl,
                dupe_idle: Duration::from_secs(settings.crawl.dupe_idle_ttl),
                heartbeat: Duration::from_secs(settings.stats.heartbeat_ttl),
            },
            politeness: Politeness::of(&settings.crawl, &settings.throttle),
            card,
            pace: pace::Pace::default(),
            fetches_over: Mutex::new(Vec::new()),
            tally: Mutex::new(HashMap::new()),
            chores,
            weights: match settings.throttle.weights.is_empty() {
                true => String::new(),
                false => serde_json::to_string(&settings.throttle.weights)
                    .expect("a map of numbers serialises"),
            },
        }
    }

    /// Write the tally of statuses to the stats windows in one call; kept
    /// for the next try if Redis does not answer.
    async fn flush_tally(&self) -> Result<(), StoreError> {
        let tally = std::mem::take(&mut *self.tally.lock());
        if tally.is_empty() {
            return Ok(());
        }
        // The spider's counters and this machine's, per status.
        let mut machine: HashMap<u16, u64> = HashMap::new();
        let ns = self.redis.namespace();
        let mut call = self.scripts.leases.count.key(format!("{ns}:ready"));
        call.arg(ns);
        for ((spider, status), n) in &tally {
            call.arg(format!("s:{spider}:{status}")).arg(n);
            *machine.entry(*status).or_default() += n;
        }
        for (status, n) in machine {
            call.arg(format!("m:{}:{status}", self.card.machine)).arg(n);
        }
        let written: Result<i64, _> = call.invoke_async(&mut self.redis.con()).await;
        if let Err(e) = written {
            let mut kept = self.tally.lock();
            for (k, n) in tally {
                *kept.entry(k).or_default() += n;
            }
            return Err(unavailable(e));
        }
        Ok(())
    }

    /// A call of `script` on shard k whose arguments start with the shard
    /// and the throttle settings: hits, window in ms, moderated, key
    /// prefix, split.
    fn with_throttle<'a>(&self, script: &'a Script, k: usize) -> redis::ScriptInvocation<'a> {
        let mut inv = self.redis.call(script, k);
        inv.arg(self.throttle.hits)
            .arg(ms(self.throttle.window))
            .arg(if self.throttle.moderated { "1" } else { "0" })
            .arg(self.throttle_prefix())
            .arg(if self.throttle.split_by_spider {
                "1"
            } else {
                "0"
            });
        inv
    }

    /// Shard k's leases whose fetch is over, to tell with a pop there.
    fn take_fetches_over(&self, k: usize) -> Vec<u64> {
        let mut all = self.fetches_over.lock();
        // The list grows on the first fetch over: a shard without a slot has none.
        all.get_mut(k).map(std::mem::take).unwrap_or_default()
    }

    /// A fetch's sample as script arguments: latency in ms and failed
    /// ("1"/"0"), or two empty strings without one.
    fn sample_args(&self, sample: Option<Sample>) -> (String, &'static str) {
        match sample {
            Some(s) => (ms(s.latency).to_string(), if s.failed { "1" } else { "0" }),
            None => (String::new(), ""),
        }
    }

    fn throttle_prefix(&self) -> String {
        if self.throttle.split_by_egress {
            format!("{}|", self.throttle.egress_id)
        } else {
            String::new()
        }
    }

    /// Lease the best request shard k's throttle lets through.
    async fn pop_shard(&self, k: usize) -> Result<Pop, StoreError> {
        loop {
            let mut con = self.redis.con();
            let mut inv = self.with_throttle(&self.scripts.leases.pop, k);
            let over = self.take_fetches_over(k);
            let out: Vec<String> = inv
                .arg(ms(self.lifetimes.lease))
                .arg(lease_token())
                .arg(self.politeness.max_in_flight)
                .arg(if self.card.renders { "1" } else { "0" })
                .arg(ms(crate::politeness::FULL_RECHECK))
                .arg(&self.weights)
                .arg(self.politeness.max_in_flight_per_app)
                .arg(&over)
                .invoke_async(&mut con)
                .await
                .map_err(unavailable)?;
            match out.as_slice() {
                [lease, cref, payload, version, spaced] if !lease.is_empty() => {
                    let seq = lease
                        .parse()
                        .map_err(|_| corrupt(format!("pop reply lease {lease:?}")))?;
                    let id = self.redis.shards().lease_id(seq, k);
                    let wire: WireJob = match serde_json::from_str(payload) {
                        Ok(w) => w,
                        Err(e) => {
                            tracing::error!(error = %e, "dropping a corrupt queued request");
                            self.ack(id, Acked::default()).await?;
                            continue;
                        }
                    };
                    let Some(spec) = self.redis.spec_at(k, cref, version).await? else {
                        tracing::warn!(crawl = %cref, "request of a crawl whose state is gone; dropped");
                        self.ack(id, Acked::default()).await?;
                        continue;
                    };
                    self.pace.leased();
                    let mut job = wire.into_job(spec);
                    job.spaced = spaced == "1";
                    return Ok(Pop::Leased(Lease { id, job }));
                }
                [_, wait] if wait == "-1" => return Ok(Pop::Idle),
                [_, wait] => {
                    let ms = wait
                        .parse()
                        .map_err(|_| corrupt(format!("pop reply wait {wait:?}")))?;
                    return Ok(Pop::Wait(Duration::from_millis(ms)));
                }
                other => return Err(corrupt(format!("pop reply {other:?}"))),
            }
        }
    }

    /// Candidates' indexes grouped by the shard of their domain.
    fn by_shard(&self, candidates: &[Candidate]) -> HashMap<usize, Vec<usize>> {
        let mut by_shard: HashMap<usize, Vec<usize>> = HashMap::new();
        for (i, c) in candidates.iter().enumerate() {
            by_shard
                .entry(self.redis.shards().of_domain(&c.domain))
                .or_default()
                .push(i);
        }
        by_shard
    }
}

/// A new lease's number on its shard: random 52 bits (never 0), so ids
/// stay unique across processes and failovers, and fit a shard index.
fn lease_token() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    static SEED: std::sync::OnceLock<std::collections::hash_map::RandomState> =
        std::sync::OnceLock::new();
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let mut h = SEED
        .get_or_init(std::collections::hash_map::RandomState::new)
        .build_hasher();
    h.write_u64(COUNT.fetch_add(1, Relaxed));
    (h.finish() & ((1 << 52) - 1)).max(1)
}

#[async_trait]
impl Frontier for RedisFrontier {
    async fn push(&self, jobs: Vec<Job>) -> Result<(), StoreError> {
        // One script call per crawl and shard (a page's children share one).
        let mut groups: HashMap<(String, usize), Vec<(Job, String)>> = HashMap::new();
        for j in jobs {
            let d = domain::of_url(&j.url);
            let k = self.redis.shards().of_domain(&d);
            groups
                .entry((crawl_ref(&j.crawl.key()), k))
                .or_default()
                .push((j, d));
        }
        for ((cref, k), group) in groups {
            let jobs = group.iter().map(|(j, _)| j);
            let spec = &group[0].0.crawl;
            let (spec_json, lazy) = self.redis.spec_args(jobs.clone());
            let mut inv = self.redis.call(&self.scripts.leases.push, k);
            inv.arg(&cref)
                .arg(crawl_owner(&spec.key()))
                .arg(spec_json)
                .arg(&spec.appid)
                .arg(spec.expires)
                .arg(lazy);
            for (j, d) in &group {
                let payload = WireJob::of(j, d).to_json();
                inv.arg(queue_key(j, d)).arg(j.priority).arg(payload);
            }
            let mut con = self.redis.con();
            let n: i64 = inv.invoke_async(&mut con).await.map_err(unavailable)?;
            owned_count(n)?;
            self.redis.shards().has_work(k);
            let seeds: Vec<&Job> = jobs.filter(|j| j.depth == 0).collect();
            self.redis.respec(&seeds).await?;
            self.redis.replicated([(k, self.redis.wrote(k))]).await?;
        }
        Ok(())
    }

    async fn pop(&self) -> Result<Pop, StoreError> {
        if self.redis.shards().len() == 1 {
            return self.pop_shard(0).await;
        }
        let (ask, mut wait) = self.redis.shards().to_ask(&self.pace.wakes());
        for k in ask {
            let reply = match self.pop_shard(k).await? {
                leased @ Pop::Leased(_) => return Ok(leased),
                Pop::Idle => Reply::Empty,
                Pop::Wait(d) => {
                    wait = Some(wait.map_or(d, |w| w.min(d)));
                    Reply::WaitFor(d)
                }
            };
            self.redis.shards().asked(k, reply);
        }
        Ok(wait.map_or(Pop::Idle, Pop::Wait))
    }

    async fn ack(&self, lease_id: u64, acked: Acked) -> Result<(), StoreError> {
        let Acked {
            status,
            sample,
            bytes,
            error,
            change,
            page,
        } = acked;
        let (k, lease) = self.redis.shards().of_lease(lease_id);
        let mut con = self.redis.con();
        let (latency, failed) = self.sample_args(sample);
        let (page_key, page) = match &page {
            Some(p) => (p.key().to_vec(), p.encode()),
            None => (Vec::new(), String::new()),
        };
        let (found, spider): (i64, String) = self
            .redis
            .call(&self.scripts.leases.ack, k)
            .arg(lease)
            // "" tells the ack script no result was delivered.
            .arg(status.map(|s| s.to_string()).unwrap_or_default())
            .arg(latency)
            .arg(failed)
            .arg(ms(self.politeness.max_crawl_delay))
            .arg(self.politeness.learning.args())
            .arg(bytes)
            .arg(error.unwrap_or_default())
            .arg(change.map(|c| c.name()).unwrap_or_default())
            .arg(page_key)
            .arg(page)
            .invoke_async(&mut con)
            .await
            .map_err(unavailable)?;
        // The lease's site has a fetch fewer open: worth asking its shard
        // again, even if it said to wait (a site at its in-flight cap).
        self.redis.shards().has_work(k);
        if found == 0 {
            tracing::debug!(
                lease_id,
                "lease had expired and was reclaimed; another worker may crawl it again"
            );
        } else if let Some(status) = status {
            *self.tally.lock().entry((spider, status)).or_default() += 1;
        }
        Ok(())
    }

    async fn retry(&self, lease_id: u64, retry: Job, when: Requeue) -> Result<(), StoreError> {
        let (k, lease) = self.redis.shards().of_lease(lease_id);
        let d = domain::of_url(&retry.url);
        if self.redis.shards().of_domain(&d) != k {
            // Another shard's domain (a redirect hop, never delayed):
            // queued there first, then the lease is finished without a
            // result (so nothing is lost between).
            self.push(vec![retry]).await?;
            return self.ack(lease_id, Acked::default()).await;
        }
        let (after, pause, sample) = match when {
            Requeue::Now => (0, String::new(), None),
            Requeue::After(d, sample) => (ms(d), String::new(), sample),
            Requeue::PauseSite(asked) => (
                0,
                asked
                    .map_or(-1, |d| ms(d.min(self.politeness.max_pause)))
                    .to_string(),
                None,
            ),
        };
        let pauses = self
            .politeness
            .pause_schedule()
            .into_iter()
            .map(|d| ms(d).to_string())
            .collect::<Vec<_>>()
            .join(",");
        let payload = WireJob::of(&retry, &d).to_json();
        let mut con = self.redis.con();
        let _: i64 = self
            .redis
            .call(&self.scripts.leases.retry, k)
            .arg(lease)
            .arg(queue_key(&retry, &d))
            .arg(retry.priority)
            .arg(payload)
            .arg(after)
            .arg(pause)
            .arg(&pauses)
            .arg(self.sample_args(sample).0)
            .arg(ms(self.politeness.max_crawl_delay))
            .arg(self.politeness.learning.args())
            .invoke_async(&mut con)
            .await
            .map_err(unavailable)?;
        self.redis.shards().has_work(k);
        Ok(())
    }

    async fn crawl_delay(&self, origin: &str, delay: Option<Duration>) -> Result<(), StoreError> {
        let domain = domain::of_url(origin);
        let k = self.redis.shards().of_domain(&domain);
        let mut con = self.redis.con();
        let _: i64 = self
            .redis
            .call(&self.scripts.sites.crawl_delay, k)
            .arg(&domain)
            .arg(origin)
            .arg(delay.map_or(0, |d| d.as_millis() as u64))
            .invoke_async(&mut con)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn fetched(&self, lease_id: u64) {
        let (k, lease) = self.redis.shards().of_lease(lease_id);
        let mut all = self.fetches_over.lock();
        if all.len() <= k {
            all.resize_with(self.redis.shards().len(), Vec::new);
        }
        // Untold ones end with their lease (the ack counts them then).
        if all[k].len() < MAX_FETCHES_OVER {
            all[k].push(lease);
        }
    }

    async fn release(&self, lease_id: u64) -> Result<(), StoreError> {
        let (k, lease) = self.redis.shards().of_lease(lease_id);
        let mut con = self.redis.con();
        let _: i64 = self
            .redis
            .call(&self.scripts.leases.release, k)
            .arg(lease)
            .invoke_async(&mut con)
            .await
            .map_err(unavailable)?;
        self.redis.shards().has_work(k);
        Ok(())
    }

    async fn renew(&self, lease_ids: &[u64]) -> Result<(), StoreError> {
        // Deadlines from this machine's clock would skew against the
        // scripts' (Redis TIME), so the script sets them.
        let mut by_shard: HashMap<usize, Vec<u64>> = HashMap::new();
        for &id in lease_ids {
            let (k, lease) = self.redis.shards().of_lease(id);
            by_shard.entry(k).or_default().push(lease);
        }
        let calls = by_shard
            .into_iter()
            .map(|(k, leases)| {
                let mut inv = self.redis.call(&self.scripts.leases.renew, k);
                inv.arg(ms(self.lifetimes.lease)).arg(leases);
                (k, inv)
            })
            .collect();
        self.redis.on_shards::<i64>(calls).await?;
        Ok(())
    }

    async fn counts(&self) -> Result<Counts, StoreError> {
        let mut total = Counts::default();
        for (k, (queued, in_flight)) in self.redis.counts().await?.into_iter().enumerate() {
            if queued > 0 {
                self.redis.shards().has_work(k);
            }
            total.queued += queued;
            total.in_flight += in_flight;
        }
        Ok(total)
    }

    /// Called every second; paced by [`pace::Pace`], so an idle worker
    /// touches Redis only when something falls due.
    async fn maintain(&self) -> Result<(), StoreError> {
        self.flush_tally().await?;
        if self.pace.beat_due(self.lifetimes.heartbeat) {
            self.beat().await?;
        }
        if !self.pace.upkeep_due() {
            return Ok(());
        }
        let calls = self
            .redis
            .shards()
            .all()
            .map(|k| {
                let mut inv = self.redis.call(&self.scripts.leases.reclaim, k);
                inv.arg(ms(self.lifetimes.dupe_idle));
                (k, inv)
            })
            .collect();
        let mut next: Option<u64> = None;
        for (k, (reclaimed, next_ms)) in self.redis.on_shards::<(i64, i64)>(calls).await? {
            if reclaimed > 0 {
                tracing::info!(
                    reclaimed,
                    shard = k,
                    "expired leases put back in their queues"
                );
                self.redis.shards().has_work(k);
            }
            if next_ms >= 0 {
                next = Some(next.map_or(next_ms as u64, |n| n.min(next_ms as u64)));
            }
        }
        self.drop_silent_workers().await?;
        if let Some(chores) = &self.chores {
            chores.run().await?;
        }
        self.pace.upkeep_done(next.map(Duration::from_millis));
        Ok(())
    }

    async fn flush(&self) -> Result<(), StoreError> {
        self.flush_tally().await
    }

    fn work_signal(&self) -> Option<Arc<tokio::sync::Notify>> {
        let channels = self
            .redis
            .shards()
            .all()
            .map(|k| format!("{}:wake", self.redis.shards().tag(k)))
            .collect();
        Some(self.pace.wake_signal(self.redis.nodes(), channels))
    }

    fn limit_signal(&self) -> Option<Arc<tokio::sync::Notify>> {
        Some(self.pace.lifted())
    }
}
