//! Redis-backed frontier and dedup store: what lets any number of workers
//! share one crawl. Every operation is one Lua script on one shard, so one
//! round trip: push, pop (with the throttle and blacklist decision), ack,
//! retry, admit (dedup and caps for a whole page), and the periodic
//! reclaim of expired leases. Key layout: ARCHITECTURE.md, "Redis keys";
//! shards: [`shards`].
//!
//! The store has two sides over one connection and shard map: the
//! frontier ([`RedisStore`]: queues, leases, dedup, throttle, the worker's
//! heartbeat and shared upkeep), and the monitor side ([`Monitor`]: ingest,
//! the control stream, crawl info and stop, domain settings, the monitor
//! roles' heartbeats, stats and replies), in `ingest.rs`, `control.rs`,
//! `stats.rs` and `replies.rs` (the handle: `monitor.rs`).

use super::{Candidate, Counts, Frontier, Lease, Pop, StoreError};
use crate::backoff::Backoff;
use crate::config::Settings;
use crate::politeness::{Politeness, Requeue, Sample};
use crate::request::{CrawlSpec, Job};
use crate::scheduler::domain;
use crate::telemetry::Stats;
use crate::timeouts;
use async_trait::async_trait;
use connection::Con;
use parking_lot::Mutex;
use redis::Script;
use shards::{Reply, Shards};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

mod connection;
mod control;
mod dedup;
mod ingest;
mod monitor;
mod pace;
mod replies;
mod shards;
mod specs;
mod stats;
mod wire;
mod workers;
pub use control::{AppCrawlInfo, CrawlInfo, DomainAction, DomainQueue, Expired};
pub use ingest::{IngestEntry, IngestOutcome, Ingested};
pub use monitor::Monitor;
pub use shards::MAX_SHARDS;
pub use stats::{
    CrawlStatus, QueueDepth, SitePaces, Status, Windows, WorkerStatus, SITES_LISTED, WINDOWS,
};
pub use wire::{crawl_owner, crawl_ref};
use wire::{owned_count, WireJob};
pub use workers::LiveWorker;

/// The Lua every script starts with, in order: helpers, politeness (its
/// rules' numbers come as arguments), then leases, queues and crawls.
const PRELUDE: [&str; 3] = [
    include_str!("common.lua"),
    include_str!("../../politeness/site.lua"),
    include_str!("frontier.lua"),
];

/// Leases per shard whose fetch is over, waiting for a pop to tell.
const MAX_FETCHES_OVER: usize = 1024;

/// Crawl specs a worker keeps in memory.
const SPEC_CACHE: usize = 10_000;

fn script(body: &str) -> Script {
    Script::new(&format!("{}\n{body}", PRELUDE.join("\n")))
}

struct Scripts {
    stop: Script,
    expire: Script,
    info: Script,
    push: Script,
    pop: Script,
    throttle: Script,
    ack: Script,
    count: Script,
    respec: Script,
    retry: Script,
    crawl_delay: Script,
    reclaim: Script,
    release: Script,
    renew: Script,
    admit: Script,
    admit_push: Script,
    ingest: Script,
}

fn unix_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Milliseconds, for a script argument.
fn ms(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

fn unix_now() -> i64 {
    unix_now_ms() / 1000
}

fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

pub struct RedisStore {
    con: Con,
    /// The frontier's shards; shard 0's tag is `ns`.
    shards: Shards,
    /// Writes per shard, and those a replica confirmed (Redis Cluster).
    marks: shards::Marks,
    /// The nodes of `redis.url` (several: a Redis Cluster).
    nodes: Vec<String>,
    /// For blocking reads (the control stream), apart from `con`.
    blocking: tokio::sync::Mutex<Option<Con>>,
    stats: Arc<Stats>,
    /// Shard 0's hash tag, `{namespace}`: the monitors', stats' and
    /// workers' keys live there.
    ns: String,
    scripts: Scripts,
    throttle: crate::config::Throttle,
    lease_ms: u64,
    idle_ttl_ms: u64,
    politeness: Politeness,
    /// This process renders: its pops take requests that need a browser.
    renders: bool,
    /// `crawl.global_page_per_domain_limit` (0 = off), for seeds ingested.
    global_cap: u32,
    /// Crawl specs by cref (and shard, when there are several: each keeps
    /// its copy and version), with the version they were read at; a pop
    /// names the current version, so a resubmitted crawl's new spec (attrs,
    /// cookie, expiry) is read again. At most SPEC_CACHE entries.
    specs: Mutex<HashMap<String, (String, Arc<CrawlSpec>)>>,
    /// This process in stats and heartbeats: `host:pid`.
    machine: String,
    host: String,
    heartbeat_ttl_ms: u64,
    /// Spiders this worker runs (for the `spider` stats).
    spiders: Mutex<Vec<String>>,
    /// Plugins this worker has loaded (for the status page).
    plugins: Mutex<Vec<serde_json::Value>>,
    /// Statuses of acked pages not yet in the stats windows: (spider,
    /// status) -> count, written once a second by
    /// [`RedisStore::flush_tally`] instead of by every ack.
    tally: Mutex<HashMap<(String, u16), u64>>,
    /// When this worker next beats and runs upkeep; its wake-up signal.
    pace: pace::Pace,
    /// Per shard, leases whose fetch is over, told with the next pop there
    /// (no round trip of their own): see [`Frontier::fetched`].
    fetches_over: Mutex<Vec<Vec<u64>>>,
}

impl RedisStore {
    /// Connect (retrying with backoff until Redis answers).
    pub async fn connect(
        settings: &Settings,
        stats: Arc<Stats>,
    ) -> Result<Arc<RedisStore>, StoreError> {
        let nodes = connection::nodes(&settings.redis.url);
        for n in &nodes {
            redis::Client::open(n.as_str()).map_err(|e| {
                StoreError::Unavailable(format!(
                    "bad redis.url {:?}: {e}",
                    crate::config::redact(&settings.redis.url)
                ))
            })?;
        }
        let mut backoff = Backoff::standard();
        let con = loop {
            match Con::open(&nodes, timeouts::REDIS_RESPONSE).await {
                Ok(c) => break c,
                // Waiting cannot mend a configuration or a password.
                Err(e) if connection::is_configuration(&e) => {
                    return Err(StoreError::Unavailable(format!(
                        "redis.url {}: {e}",
                        crate::config::redact(&settings.redis.url)
                    )));
                }
                Err(e) => {
                    let wait = backoff.next_delay();
                    tracing::warn!(url = %crate::config::redact(&settings.redis.url), error = %e, retry_in = ?wait, "Redis unreachable, retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        };
        let shards = Shards::new(
            &settings.redis.namespace,
            settings.redis.shard_count(nodes.len() > 1),
        );
        agree_on_shards(&con, shards.tag(0), shards.len()).await?;
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".into());
        Ok(Arc::new(RedisStore {
            con,
            ns: shards.tag(0).to_string(),
            marks: shards::Marks::new(shards.len()),
            shards,
            nodes,
            blocking: tokio::sync::Mutex::new(None),
            stats,
            scripts: Scripts {
                stop: script(include_str!("stop.lua")),
                expire: script(include_str!("expire.lua")),
                info: script(include_str!("info.lua")),
                push: script(include_str!("push.lua")),
                pop: script(include_str!("pop.lua")),
                throttle: script(include_str!("throttle.lua")),
                ack: script(include_str!("ack.lua")),
                count: script(include_str!("count.lua")),
                respec: script(include_str!("respec.lua")),
                retry: script(include_str!("retry.lua")),
                crawl_delay: script(include_str!("crawl_delay.lua")),
                reclaim: script(include_str!("reclaim.lua")),
                release: script(include_str!("release.lua")),
                renew: script(include_str!("renew.lua")),
                admit: script(include_str!("admit.lua")),
                admit_push: script(include_str!("admit_push.lua")),
                ingest: script(include_str!("ingest.lua")),
            },
            throttle: settings.throttle.clone(),
            lease_ms: (settings.crawl.lease_ttl * 1000.0) as u64,
            politeness: Politeness::of(&settings.crawl),
            renders: crate::render::available(&settings.render),
            idle_ttl_ms: settings.crawl.dupe_idle_ttl * 1000,
            global_cap: settings.crawl.global_page_per_domain_limit,
            specs: Mutex::new(HashMap::new()),
            machine: format!("{host}:{}", std::process::id()),
            host,
            heartbeat_ttl_ms: settings.stats.heartbeat_ttl * 1000,
            spiders: Mutex::new(Vec::new()),
            plugins: Mutex::new(Vec::new()),
            pace: pace::Pace::default(),
            fetches_over: Mutex::new(Vec::new()),
            tally: Mutex::new(HashMap::new()),
        }))
    }

    pub fn namespace(&self) -> &str {
        &self.ns
    }

    /// This process in heartbeats and stats: `host:pid`.
    pub fn machine(&self) -> &str {
        &self.machine
    }

    /// `<ns>:<suffix>`: every key of the namespace shares its hash tag.
    fn key(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.ns)
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
        let mut call = self.scripts.count.key(format!("{}:ready", self.ns));
        call.arg(&self.ns);
        for ((spider, status), n) in &tally {
            call.arg(format!("s:{spider}:{status}")).arg(n);
            *machine.entry(*status).or_default() += n;
        }
        for (status, n) in machine {
            call.arg(format!("m:{}:{status}", self.machine)).arg(n);
        }
        let written: Result<i64, _> = call.invoke_async(&mut self.con()).await;
        if let Err(e) = written {
            let mut kept = self.tally.lock();
            for (k, n) in tally {
                *kept.entry(k).or_default() += n;
            }
            return Err(unavailable(e));
        }
        Ok(())
    }

    /// A handle for one request (one round trip, counted).
    fn con(&self) -> Con {
        self.stats.emit(crate::telemetry::Event::StoreRoundTrip);
        self.con.clone()
    }

    /// A call of `script` on shard k: its first key names the shard's slot
    /// and its first argument is the shard's prefix.
    fn call<'a>(&self, script: &'a Script, k: usize) -> redis::ScriptInvocation<'a> {
        let tag = self.shards.tag(k);
        let mut inv = script.prepare_invoke();
        inv.key(format!("{tag}:ready")).arg(tag);
        inv
    }

    /// `spider|domain`, and `|r` for a request that needs a browser (see
    /// `common.lua`'s `qk_parts`).
    fn queue_key(job: &Job, domain: &str) -> String {
        if job.crawl.render.is_never() {
            format!("{}|{domain}", job.spiderid)
        } else {
            format!("{}|{domain}|r", job.spiderid)
        }
    }

    /// A call of `script` on shard k whose arguments start with the shard
    /// and the throttle settings: hits, window in ms, moderated, key
    /// prefix, split.
    fn with_throttle<'a>(&self, script: &'a Script, k: usize) -> redis::ScriptInvocation<'a> {
        let mut inv = self.call(script, k);
        inv.arg(self.throttle.hits)
            .arg((self.throttle.window * 1000.0) as u64)
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
            let mut con = self.con();
            let mut inv = self.with_throttle(&self.scripts.pop, k);
            let over = self.take_fetches_over(k);
            let out: Vec<String> = inv
                .arg(self.lease_ms)
                .arg(lease_token())
                .arg(self.politeness.max_in_flight)
                .arg(if self.renders { "1" } else { "0" })
                .arg(ms(crate::politeness::FULL_RECHECK))
                .arg(&over)
                .invoke_async(&mut con)
                .await
                .map_err(unavailable)?;
            match out.as_slice() {
                [lease, cref, payload, version, spaced] if !lease.is_empty() => {
                    let id = self.shards.lease_id(lease.parse().unwrap_or(0), k);
                    let wire: WireJob = match serde_json::from_str(payload) {
                        Ok(w) => w,
                        Err(e) => {
                            tracing::error!(error = %e, "dropping a corrupt queued request");
                            self.ack(id, None, None).await?;
                            continue;
                        }
                    };
                    let Some(spec) = self.spec_at(k, cref, version).await? else {
                        tracing::warn!(crawl = %cref, "request of a crawl whose state is gone; dropped");
                        self.ack(id, None, None).await?;
                        continue;
                    };
                    self.pace.leased();
                    let mut job = wire.into_job(spec);
                    job.spaced = spaced == "1";
                    return Ok(Pop::Leased(Lease { id, job }));
                }
                [_, wait] if wait == "-1" => return Ok(Pop::Idle),
                [_, wait] => {
                    return Ok(Pop::Wait(Duration::from_millis(
                        wait.parse().unwrap_or(100),
                    )))
                }
                other => {
                    return Err(StoreError::Unavailable(format!(
                        "unexpected pop reply {other:?}"
                    )))
                }
            }
        }
    }

    /// On a Redis Cluster, wait until the replicas of the given shards
    /// hold this process's writes there up to the given marks (from
    /// [`shards::Marks::wrote`]), before anything that relies on them (a
    /// page's ack on another shard, a Kafka offset) is done: masters
    /// replicate asynchronously, and a failover keeps only what reached
    /// the replica. Concurrent callers share one `WAIT` per shard. Free on
    /// a single server.
    async fn replicated(
        &self,
        writes: impl IntoIterator<Item = (usize, u64)>,
    ) -> Result<(), StoreError> {
        if !self.con.is_cluster() {
            return Ok(());
        }
        futures::future::try_join_all(writes.into_iter().map(|(k, mark)| async move {
            let key = format!("{}:ready", self.shards.tag(k));
            self.marks
                .confirm(k, mark, || async {
                    self.con().wait_for_replica(&key).await.map_err(unavailable)
                })
                .await
        }))
        .await?;
        Ok(())
    }

    /// Candidates' indexes grouped by the shard of their domain.
    fn by_shard(&self, candidates: &[Candidate]) -> HashMap<usize, Vec<usize>> {
        let mut by_shard: HashMap<usize, Vec<usize>> = HashMap::new();
        for (i, c) in candidates.iter().enumerate() {
            by_shard
                .entry(self.shards.of_domain(&c.domain))
                .or_default()
                .push(i);
        }
        by_shard
    }

    /// Run one call per shard, all at once; the replies in shard order.
    async fn on_shards<'a, T: redis::FromRedisValue>(
        &self,
        calls: Vec<(usize, redis::ScriptInvocation<'a>)>,
    ) -> Result<Vec<(usize, T)>, StoreError> {
        futures::future::try_join_all(calls.iter().map(|(k, inv)| async move {
            let mut con = self.con();
            let out: T = inv.invoke_async(&mut con).await.map_err(unavailable)?;
            Ok::<_, StoreError>((*k, out))
        }))
        .await
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

/// Every process of a namespace must split it alike: the first to connect
/// records its shard count, and a process set up otherwise is refused
/// (its shards would hold requests nobody else pops).
async fn agree_on_shards(con: &Con, ns: &str, n: usize) -> Result<(), StoreError> {
    let key = format!("{ns}:shards");
    let (stored,): (Option<usize>,) = redis::pipe()
        .cmd("SET")
        .arg(&key)
        .arg(n)
        .arg("NX")
        .ignore()
        .cmd("GET")
        .arg(&key)
        .query_async(&mut con.clone())
        .await
        .map_err(unavailable)?;
    match stored {
        Some(s) if s != n => Err(StoreError::Unavailable(format!(
            "redis.shards is {n} here but namespace {ns} was set up with {s} shards: \
             set redis.shards = {s} (or use another redis.namespace)"
        ))),
        _ => Ok(()),
    }
}

#[async_trait]
impl Frontier for RedisStore {
    async fn push(&self, jobs: Vec<Job>) -> Result<(), StoreError> {
        // One script call per crawl and shard (a page's children share one).
        let mut groups: HashMap<(String, usize), Vec<(Job, String)>> = HashMap::new();
        for j in jobs {
            let d = domain::of_url(&j.url);
            let k = self.shards.of_domain(&d);
            groups
                .entry((crawl_ref(&j.crawl.key()), k))
                .or_default()
                .push((j, d));
        }
        for ((cref, k), group) in groups {
            let jobs = group.iter().map(|(j, _)| j);
            let spec = &group[0].0.crawl;
            let (spec_json, lazy) = self.spec_args(jobs.clone());
            let mut inv = self.call(&self.scripts.push, k);
            inv.arg(&cref)
                .arg(crawl_owner(&spec.key()))
                .arg(spec_json)
                .arg(&spec.appid)
                .arg(spec.expires)
                .arg(lazy);
            for (j, d) in &group {
                let payload = serde_json::to_string(&WireJob::of(j, d)).unwrap_or_default();
                inv.arg(Self::queue_key(j, d)).arg(j.priority).arg(payload);
            }
            let mut con = self.con();
            let n: i64 = inv.invoke_async(&mut con).await.map_err(unavailable)?;
            owned_count(n)?;
            self.shards.has_work(k);
            let seeds: Vec<&Job> = jobs.filter(|j| j.depth == 0).collect();
            self.respec(&seeds).await?;
            self.replicated([(k, self.marks.wrote(k))]).await?;
        }
        Ok(())
    }

    async fn pop(&self) -> Result<Pop, StoreError> {
        if self.shards.len() == 1 {
            return self.pop_shard(0).await;
        }
        let (ask, mut wait) = self.shards.to_ask(&self.pace.wakes());
        for k in ask {
            let reply = match self.pop_shard(k).await? {
                leased @ Pop::Leased(_) => return Ok(leased),
                Pop::Idle => Reply::Empty,
                Pop::Wait(d) => {
                    wait = Some(wait.map_or(d, |w| w.min(d)));
                    Reply::WaitFor(d)
                }
            };
            self.shards.asked(k, reply);
        }
        Ok(wait.map_or(Pop::Idle, Pop::Wait))
    }

    async fn ack(
        &self,
        lease_id: u64,
        status: Option<u16>,
        sample: Option<Sample>,
    ) -> Result<(), StoreError> {
        let (k, lease) = self.shards.of_lease(lease_id);
        let mut con = self.con();
        let (latency, failed) = self.sample_args(sample);
        let (found, spider): (i64, String) = self
            .call(&self.scripts.ack, k)
            .arg(lease)
            .arg(status.map(|s| s.to_string()).unwrap_or_default())
            .arg(latency)
            .arg(failed)
            .arg(ms(self.politeness.max_crawl_delay))
            .invoke_async(&mut con)
            .await
            .map_err(unavailable)?;
        // The lease's site has a fetch fewer open: worth asking its shard
        // again, even if it said to wait (a site at its in-flight cap).
        self.shards.has_work(k);
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
        let (k, lease) = self.shards.of_lease(lease_id);
        let d = domain::of_url(&retry.url);
        if self.shards.of_domain(&d) != k {
            // Another shard's domain (a redirect hop, never delayed):
            // queued there first, then the lease is finished without a
            // result (so nothing is lost between).
            self.push(vec![retry]).await?;
            return self.ack(lease_id, None, None).await;
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
        let payload = serde_json::to_string(&WireJob::of(&retry, &d)).unwrap_or_default();
        let mut con = self.con();
        let _: i64 = self
            .call(&self.scripts.retry, k)
            .arg(lease)
            .arg(Self::queue_key(&retry, &d))
            .arg(retry.priority)
            .arg(payload)
            .arg(after)
            .arg(pause)
            .arg(&pauses)
            .arg(self.sample_args(sample).0)
            .arg(ms(self.politeness.max_crawl_delay))
            .invoke_async(&mut con)
            .await
            .map_err(unavailable)?;
        self.shards.has_work(k);
        Ok(())
    }

    async fn crawl_delay(&self, domain: &str, delay: Option<Duration>) -> Result<(), StoreError> {
        let k = self.shards.of_domain(domain);
        let mut con = self.con();
        let _: i64 = self
            .call(&self.scripts.crawl_delay, k)
            .arg(domain)
            .arg(delay.map_or(0, |d| d.as_millis() as u64))
            .invoke_async(&mut con)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn fetched(&self, lease_id: u64) {
        let (k, lease) = self.shards.of_lease(lease_id);
        let mut all = self.fetches_over.lock();
        if all.len() <= k {
            all.resize_with(self.shards.len(), Vec::new);
        }
        // Untold ones end with their lease (the ack counts them then).
        if all[k].len() < MAX_FETCHES_OVER {
            all[k].push(lease);
        }
    }

    async fn release(&self, lease_id: u64) -> Result<(), StoreError> {
        let (k, lease) = self.shards.of_lease(lease_id);
        let mut con = self.con();
        let _: i64 = self
            .call(&self.scripts.release, k)
            .arg(lease)
            .invoke_async(&mut con)
            .await
            .map_err(unavailable)?;
        self.shards.has_work(k);
        Ok(())
    }

    async fn renew(&self, lease_ids: &[u64]) -> Result<(), StoreError> {
        // Deadlines from this machine's clock would skew against the
        // scripts' (Redis TIME), so the script sets them.
        let mut by_shard: HashMap<usize, Vec<u64>> = HashMap::new();
        for &id in lease_ids {
            let (k, lease) = self.shards.of_lease(id);
            by_shard.entry(k).or_default().push(lease);
        }
        let calls = by_shard
            .into_iter()
            .map(|(k, leases)| {
                let mut inv = self.call(&self.scripts.renew, k);
                inv.arg(self.lease_ms).arg(leases);
                (k, inv)
            })
            .collect();
        self.on_shards::<i64>(calls).await?;
        Ok(())
    }

    async fn counts(&self) -> Result<Counts, StoreError> {
        let mut total = Counts::default();
        let per_shard = futures::future::try_join_all(self.shards.all().map(|k| async move {
            let mut con = self.con();
            redis::cmd("HMGET")
                .arg(format!("{}:counts", self.shards.tag(k)))
                .arg("q")
                .arg("f")
                .query_async::<(Option<i64>, Option<i64>)>(&mut con)
                .await
                .map_err(unavailable)
        }))
        .await?;
        for (k, (q, f)) in per_shard.into_iter().enumerate() {
            let q = q.unwrap_or(0).max(0) as u64;
            if q > 0 {
                self.shards.has_work(k);
            }
            total.queued += q;
            total.in_flight += f.unwrap_or(0).max(0) as u64;
        }
        Ok(total)
    }

    /// Called every second; paced by [`pace::Pace`], so an idle worker
    /// touches Redis only when something falls due.
    async fn maintain(&self) -> Result<(), StoreError> {
        self.flush_tally().await?;
        if self
            .pace
            .beat_due(Duration::from_millis(self.heartbeat_ttl_ms))
        {
            self.beat().await?;
        }
        if !self.pace.upkeep_due() {
            return Ok(());
        }
        let calls = self
            .shards
            .all()
            .map(|k| {
                let mut inv = self.call(&self.scripts.reclaim, k);
                inv.arg(self.idle_ttl_ms);
                (k, inv)
            })
            .collect();
        let mut next: Option<u64> = None;
        for (k, (reclaimed, next_ms)) in self.on_shards::<(i64, i64)>(calls).await? {
            if reclaimed > 0 {
                tracing::info!(
                    reclaimed,
                    shard = k,
                    "expired leases put back in their queues"
                );
                self.shards.has_work(k);
            }
            if next_ms >= 0 {
                next = Some(next.map_or(next_ms as u64, |n| n.min(next_ms as u64)));
            }
        }
        self.upkeep().await?;
        self.pace.upkeep_done(next.map(Duration::from_millis));
        Ok(())
    }

    async fn flush(&self) -> Result<(), StoreError> {
        self.flush_tally().await
    }

    fn work_signal(&self) -> Option<Arc<tokio::sync::Notify>> {
        let channels = self
            .shards
            .all()
            .map(|k| format!("{}:wake", self.shards.tag(k)))
            .collect();
        Some(self.pace.wake_signal(&self.nodes, channels))
    }
}
