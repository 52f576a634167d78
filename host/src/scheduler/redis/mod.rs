//! Redis-backed frontier and dedup store: what lets any number of workers
//! share one crawl. Every operation is one Lua script, so one round trip:
//! push, pop (with the throttle and blacklist decision), ack, retry, admit
//! (dedup and caps for a whole page), and the periodic reclaim of expired
//! leases. Key layout: ARCHITECTURE.md, "Redis keys".

use super::{Candidate, Counts, DedupStore, Frontier, Lease, Pop, StoreError};
use crate::backoff::Backoff;
use crate::config::Settings;
use crate::request::{CrawlKey, CrawlSpec, Job};
use crate::scheduler::domain;
use crate::stats::Stats;
use crate::throttle::{Admission, ThrottleStore};
use crate::timeouts;
use async_trait::async_trait;
use connection::Con;
use parking_lot::Mutex;
use redis::Script;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

mod connection;
mod control;
mod ingest;
mod pace;
mod replies;
mod stats;
mod workers;
pub use control::{DomainAction, Expired};
pub use ingest::{IngestEntry, IngestOutcome, Ingested};

const COMMON: &str = include_str!("common.lua");

/// Crawl specs a worker keeps in memory.
const SPEC_CACHE: usize = 10_000;

fn script(body: &str) -> Script {
    Script::new(&format!("{COMMON}\n{body}"))
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
    retry: Script,
    reclaim: Script,
    release: Script,
    renew: Script,
    admit: Script,
    admit_push: Script,
    ingest: Script,
}

/// A queued request as stored in Redis: the crawl's spec is stored once,
/// not in every request.
#[derive(Debug, Serialize, Deserialize)]
struct WireJob {
    u: String,
    s: String,
    p: i32,
    d: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    m: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    h: Vec<(String, String)>,
    /// The body as base64 (a JSON array of numbers takes 3-4 bytes a byte).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "body64")]
    b: Option<Vec<u8>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    meta: Vec<(String, String)>,
    #[serde(default)]
    r: u32,
    #[serde(default)]
    f: bool,
    /// Registered domain (for per-crawl info and purges).
    #[serde(default)]
    dm: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rf: Option<String>,
    #[serde(default)]
    rc: u32,
}

impl WireJob {
    /// `domain` is the job's registered domain, computed once by the caller.
    fn of(job: &Job, domain: &str) -> WireJob {
        WireJob {
            u: job.url.clone(),
            s: job.spiderid.clone(),
            p: job.priority,
            d: job.depth,
            m: (job.method != "GET").then(|| job.method.clone()),
            h: job.headers.clone(),
            b: job.body.clone(),
            meta: job.meta.clone(),
            r: job.retries,
            f: job.dont_filter,
            dm: domain.to_string(),
            rf: job.redirected_from.clone(),
            rc: job.redirects,
        }
    }

    fn into_job(self, crawl: Arc<CrawlSpec>) -> Job {
        Job {
            crawl,
            url: self.u,
            spiderid: self.s,
            priority: self.p,
            depth: self.d,
            method: self.m.unwrap_or_else(|| "GET".into()),
            headers: self.h,
            body: self.b,
            meta: self.meta,
            retries: self.r,
            dont_filter: self.f,
            redirected_from: self.rf,
            redirects: self.rc,
        }
    }
}

/// A request body in a queued request: base64 text. Requests queued
/// before it was compact (an array of numbers) still read.
mod body64 {
    use base64::{engine::general_purpose::STANDARD, Engine as _};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match b {
            Some(b) => s.serialize_str(&STANDARD.encode(b)),
            None => s.serialize_none(),
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Stored {
        Text(String),
        Bytes(Vec<u8>),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Ok(match Option::<Stored>::deserialize(d)? {
            Some(Stored::Text(t)) => Some(STANDARD.decode(t).map_err(serde::de::Error::custom)?),
            Some(Stored::Bytes(b)) => Some(b),
            None => None,
        })
    }
}

/// A cap for a script: the number, or "" for none.
fn cap_arg(cap: Option<u32>) -> String {
    cap.map(|n| n.to_string()).unwrap_or_default()
}

/// 8 bytes of the 16-byte fingerprint, as a signed integer (so Redis keeps
/// the seen sets as compact intsets) and as hex (its path in the trie).
fn fingerprint_args(fingerprint: u128) -> (String, String) {
    let fp64 = (fingerprint >> 64) as u64;
    ((fp64 as i64).to_string(), format!("{fp64:016x}"))
}

/// The short, key-safe id of a crawl (appid + crawlid).
pub fn crawl_ref(key: &CrawlKey) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(key.appid.as_bytes());
    h.update(b"\0");
    h.update(key.crawlid.as_bytes());
    format!("{:016x}", h.digest())
}

/// The pair behind a [`crawl_ref`], stored with the crawl's state and
/// compared by every script that writes it (length-prefixed, so no two
/// pairs give the same text).
pub fn crawl_owner(key: &CrawlKey) -> String {
    format!("{}:{}{}", key.appid.len(), key.appid, key.crawlid)
}

/// A script's count, where -1 means another crawl owns the key.
fn owned_count(n: i64) -> Result<usize, StoreError> {
    if n < 0 {
        return Err(StoreError::Collision);
    }
    Ok(n as usize)
}

fn unix_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn unix_now() -> i64 {
    unix_now_ms() / 1000
}

fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

pub struct RedisStore {
    con: Con,
    /// The nodes of `redis.url` (several: a Redis Cluster).
    nodes: Vec<String>,
    /// For blocking reads (the control stream), apart from `con`.
    blocking: tokio::sync::Mutex<Option<Con>>,
    stats: Arc<Stats>,
    ns: String,
    scripts: Scripts,
    throttle: crate::config::Throttle,
    lease_ms: u64,
    idle_ttl_ms: u64,
    /// `crawl.global_page_per_domain_limit` (0 = off), for seeds ingested.
    global_cap: u32,
    /// Crawl specs by cref, with the version they were read at; a pop
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
                Err(e) => {
                    let wait = backoff.next_delay();
                    tracing::warn!(url = %crate::config::redact(&settings.redis.url), error = %e, retry_in = ?wait, "Redis unreachable, retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        };
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".into());
        Ok(Arc::new(RedisStore {
            con,
            nodes,
            blocking: tokio::sync::Mutex::new(None),
            stats,
            ns: format!("{{{}}}", settings.redis.namespace),
            scripts: Scripts {
                stop: script(include_str!("stop.lua")),
                expire: script(include_str!("expire.lua")),
                info: script(include_str!("info.lua")),
                push: script(include_str!("push.lua")),
                pop: script(include_str!("pop.lua")),
                throttle: script(include_str!("throttle.lua")),
                ack: script(include_str!("ack.lua")),
                count: script(include_str!("count.lua")),
                retry: script(include_str!("retry.lua")),
                reclaim: script(include_str!("reclaim.lua")),
                release: script(include_str!("release.lua")),
                renew: script(include_str!("renew.lua")),
                admit: script(include_str!("admit.lua")),
                admit_push: script(include_str!("admit_push.lua")),
                ingest: script(include_str!("ingest.lua")),
            },
            throttle: settings.throttle.clone(),
            lease_ms: (settings.crawl.lease_ttl * 1000.0) as u64,
            idle_ttl_ms: settings.crawl.dupe_idle_ttl * 1000,
            global_cap: settings.crawl.global_page_per_domain_limit,
            specs: Mutex::new(HashMap::new()),
            machine: format!("{host}:{}", std::process::id()),
            host,
            heartbeat_ttl_ms: settings.stats.heartbeat_ttl * 1000,
            spiders: Mutex::new(Vec::new()),
            plugins: Mutex::new(Vec::new()),
            pace: pace::Pace::default(),
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
        self.stats
            .store_round_trips
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.con.clone()
    }

    /// The crawl's spec as cached (any version), else read from Redis: for
    /// control operations, which need its appid and expiry only.
    pub async fn spec(&self, cref: &str) -> Result<Option<Arc<CrawlSpec>>, StoreError> {
        let cached = self.specs.lock().get(cref).map(|(v, _)| v.clone());
        self.spec_at(cref, cached.as_deref().unwrap_or("")).await
    }

    /// The crawl's spec at `version` (what a pop names): cached, else read
    /// from Redis.
    pub async fn spec_at(
        &self,
        cref: &str,
        version: &str,
    ) -> Result<Option<Arc<CrawlSpec>>, StoreError> {
        if let Some((v, s)) = self.specs.lock().get(cref) {
            if v == version {
                return Ok(Some(s.clone()));
            }
        }
        let mut con = self.con();
        let json: Option<String> = redis::cmd("GET")
            .arg(format!("{}:spec:{cref}", self.ns))
            .query_async(&mut con)
            .await
            .map_err(unavailable)?;
        let Some(json) = json else { return Ok(None) };
        let spec: CrawlSpec = serde_json::from_str(&json)
            .map_err(|e| StoreError::Unavailable(format!("corrupt crawl spec {cref}: {e}")))?;
        let spec = Arc::new(spec);
        self.cache_spec(cref, version, &spec);
        Ok(Some(spec))
    }

    fn cache_spec(&self, cref: &str, version: &str, spec: &Arc<CrawlSpec>) {
        let mut specs = self.specs.lock();
        if specs.len() >= SPEC_CACHE && !specs.contains_key(cref) {
            // Any entry will do: a miss costs one GET.
            if let Some(k) = specs.keys().next().cloned() {
                specs.remove(&k);
            }
        }
        specs.insert(cref.to_string(), (version.to_string(), spec.clone()));
    }

    /// Spec JSON when `jobs` hold a seed (a crawl submitted, or submitted
    /// again with new attrs, cookie or expiry), else "": children never
    /// write the spec, so one popped under an older spec cannot undo a
    /// resubmission.
    fn spec_arg(jobs: &[Job]) -> String {
        match jobs.iter().find(|j| j.depth == 0) {
            Some(seed) => serde_json::to_string(&*seed.crawl).unwrap_or_default(),
            None => String::new(),
        }
    }

    fn queue_key(job: &Job, domain: &str) -> String {
        format!("{}|{domain}", job.spiderid)
    }

    /// A call of `script` whose arguments start with the namespace and the
    /// throttle settings: hits, window in ms, moderated, key prefix, split.
    fn with_throttle<'a>(&self, script: &'a Script) -> redis::ScriptInvocation<'a> {
        let mut inv = script.prepare_invoke();
        inv.key(format!("{}:ready", self.ns))
            .arg(&self.ns)
            .arg(self.throttle.hits)
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

    fn throttle_prefix(&self) -> String {
        if self.throttle.split_by_egress {
            format!("{}|", self.throttle.egress_id)
        } else {
            String::new()
        }
    }
}

#[async_trait]
impl Frontier for RedisStore {
    async fn push(&self, jobs: Vec<Job>) -> Result<(), StoreError> {
        // One script call per crawl (a page's children share one).
        let mut by_crawl: HashMap<String, Vec<Job>> = HashMap::new();
        for j in jobs {
            by_crawl
                .entry(crawl_ref(&j.crawl.key()))
                .or_default()
                .push(j);
        }
        for (cref, jobs) in by_crawl {
            let mut inv = self.scripts.push.prepare_invoke();
            let spec = &jobs[0].crawl;
            inv.key(format!("{}:ready", self.ns))
                .arg(&self.ns)
                .arg(&cref)
                .arg(crawl_owner(&spec.key()))
                .arg(Self::spec_arg(&jobs))
                .arg(&spec.appid)
                .arg(spec.expires);
            for j in &jobs {
                let d = domain::of_url(&j.url);
                let payload = serde_json::to_string(&WireJob::of(j, &d)).unwrap_or_default();
                inv.arg(Self::queue_key(j, &d)).arg(j.priority).arg(payload);
            }
            let mut con = self.con();
            let n: i64 = inv.invoke_async(&mut con).await.map_err(unavailable)?;
            owned_count(n)?;
        }
        Ok(())
    }

    async fn pop(&self) -> Result<Pop, StoreError> {
        loop {
            let mut con = self.con();
            let mut inv = self.with_throttle(&self.scripts.pop);
            let out: Vec<String> = inv
                .arg(self.lease_ms)
                .invoke_async(&mut con)
                .await
                .map_err(unavailable)?;
            match out.as_slice() {
                [lease, cref, payload, version] if !lease.is_empty() => {
                    let id: u64 = lease.parse().unwrap_or(0);
                    let wire: WireJob = match serde_json::from_str(payload) {
                        Ok(w) => w,
                        Err(e) => {
                            tracing::error!(error = %e, "dropping a corrupt queued request");
                            self.ack(id, None).await?;
                            continue;
                        }
                    };
                    let Some(spec) = self.spec_at(cref, version).await? else {
                        tracing::warn!(crawl = %cref, "request of a crawl whose state is gone; dropped");
                        self.ack(id, None).await?;
                        continue;
                    };
                    self.pace.leased();
                    return Ok(Pop::Leased(Lease {
                        id,
                        job: wire.into_job(spec),
                    }));
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

    async fn ack(&self, lease_id: u64, status: Option<u16>) -> Result<(), StoreError> {
        let mut con = self.con();
        let (found, spider): (i64, String) = self
            .scripts
            .ack
            .key(format!("{}:ready", self.ns))
            .arg(&self.ns)
            .arg(lease_id)
            .arg(status.map(|s| s.to_string()).unwrap_or_default())
            .invoke_async(&mut con)
            .await
            .map_err(unavailable)?;
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

    async fn retry(&self, lease_id: u64, retry: Job) -> Result<(), StoreError> {
        let d = domain::of_url(&retry.url);
        let payload = serde_json::to_string(&WireJob::of(&retry, &d)).unwrap_or_default();
        let mut con = self.con();
        let _: i64 = self
            .scripts
            .retry
            .key(format!("{}:ready", self.ns))
            .arg(&self.ns)
            .arg(lease_id)
            .arg(Self::queue_key(&retry, &d))
            .arg(retry.priority)
            .arg(payload)
            .invoke_async(&mut con)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn release(&self, lease_id: u64) -> Result<(), StoreError> {
        let mut con = self.con();
        let _: i64 = self
            .scripts
            .release
            .key(format!("{}:ready", self.ns))
            .arg(&self.ns)
            .arg(lease_id)
            .invoke_async(&mut con)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn renew(&self, lease_ids: &[u64]) -> Result<(), StoreError> {
        if lease_ids.is_empty() {
            return Ok(());
        }
        // Deadlines from this machine's clock would skew against the
        // scripts' (Redis TIME), so the script sets them.
        let mut con = self.con();
        let mut inv = self.scripts.renew.prepare_invoke();
        inv.key(format!("{}:ready", self.ns))
            .arg(&self.ns)
            .arg(self.lease_ms);
        for id in lease_ids {
            inv.arg(id);
        }
        let _: i64 = inv.invoke_async(&mut con).await.map_err(unavailable)?;
        Ok(())
    }

    async fn counts(&self) -> Result<Counts, StoreError> {
        let mut con = self.con();
        let (q, f): (Option<i64>, Option<i64>) = redis::cmd("HMGET")
            .arg(format!("{}:counts", self.ns))
            .arg("q")
            .arg("f")
            .query_async(&mut con)
            .await
            .map_err(unavailable)?;
        Ok(Counts {
            queued: q.unwrap_or(0).max(0) as u64,
            in_flight: f.unwrap_or(0).max(0) as u64,
        })
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
        let mut con = self.con();
        let (reclaimed, next_ms): (i64, i64) = self
            .scripts
            .reclaim
            .key(format!("{}:ready", self.ns))
            .arg(&self.ns)
            .arg(self.idle_ttl_ms)
            .invoke_async(&mut con)
            .await
            .map_err(unavailable)?;
        if reclaimed > 0 {
            tracing::info!(reclaimed, "expired leases put back in their queues");
        }
        self.upkeep().await?;
        self.pace
            .upkeep_done((next_ms >= 0).then(|| Duration::from_millis(next_ms as u64)));
        Ok(())
    }

    async fn flush(&self) -> Result<(), StoreError> {
        self.flush_tally().await
    }

    fn work_signal(&self) -> Option<Arc<tokio::sync::Notify>> {
        Some(self.pace.wake_signal(&self.nodes, self.key("wake")))
    }
}

#[async_trait]
impl ThrottleStore for RedisStore {
    async fn acquire(&self, spider: &str, domain: &str) -> Result<Admission, StoreError> {
        let mut con = self.con();
        let mut inv = self.with_throttle(&self.scripts.throttle);
        let wait: u64 = inv
            .arg(spider)
            .arg(domain)
            .invoke_async(&mut con)
            .await
            .map_err(unavailable)?;
        Ok(if wait == 0 {
            Admission::Go
        } else {
            Admission::Wait(Duration::from_millis(wait))
        })
    }
    async fn refund(&self, spider: &str, domain: &str) -> Result<(), StoreError> {
        let split = if self.throttle.split_by_spider {
            format!("{spider}|")
        } else {
            String::new()
        };
        let key = format!("{}:t:{}{split}{domain}", self.ns, self.throttle_prefix());
        let mut con = self.con();
        let _: Vec<String> = redis::cmd("ZPOPMAX")
            .arg(key)
            .query_async(&mut con)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

#[async_trait]
impl DedupStore for RedisStore {
    async fn admit(
        &self,
        crawl: &CrawlKey,
        candidates: &[Candidate],
    ) -> Result<Vec<bool>, StoreError> {
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = self.scripts.admit.prepare_invoke();
        inv.key(format!("{}:ready", self.ns))
            .arg(&self.ns)
            .arg(crawl_ref(crawl))
            .arg(crawl_owner(crawl))
            .arg(cap_arg(candidates[0].domain_cap))
            .arg(cap_arg(candidates[0].global_cap));
        for c in candidates {
            let (fp, hex) = fingerprint_args(c.fingerprint);
            inv.arg(fp)
                .arg(hex)
                .arg(&c.domain)
                .arg(if c.force { "1" } else { "0" });
        }
        let mut con = self.con();
        let out: Vec<i64> = inv.invoke_async(&mut con).await.map_err(unavailable)?;
        Ok(out.into_iter().map(|v| v == 1).collect())
    }

    async fn admit_and_push(
        &self,
        _frontier: &dyn Frontier,
        crawl: &CrawlKey,
        candidates: &[Candidate],
        jobs: Vec<Job>,
    ) -> Result<usize, StoreError> {
        let Some(first) = jobs.first() else {
            return Ok(0);
        };
        let cref = crawl_ref(crawl);
        let spec = &first.crawl;
        let mut inv = self.scripts.admit_push.prepare_invoke();
        inv.key(format!("{}:ready", self.ns))
            .arg(&self.ns)
            .arg(&cref)
            .arg(crawl_owner(crawl))
            .arg(cap_arg(candidates[0].domain_cap))
            .arg(cap_arg(candidates[0].global_cap))
            .arg(Self::spec_arg(&jobs))
            .arg(&spec.appid)
            .arg(spec.expires);
        for (c, j) in candidates.iter().zip(&jobs) {
            let (fp, hex) = fingerprint_args(c.fingerprint);
            // The candidate already carries the registered domain.
            let payload = serde_json::to_string(&WireJob::of(j, &c.domain)).unwrap_or_default();
            inv.arg(fp)
                .arg(hex)
                .arg(&c.domain)
                .arg(if c.force { "1" } else { "0" });
            inv.arg(Self::queue_key(j, &c.domain))
                .arg(j.priority)
                .arg(payload);
        }
        let mut con = self.con();
        let n: i64 = inv.invoke_async(&mut con).await.map_err(unavailable)?;
        owned_count(n)
    }
}

#[cfg(test)]
mod tests {
    use super::WireJob;

    #[test]
    fn bodies_are_stored_as_base64_and_old_arrays_still_read() {
        let json = r#"{"u":"http://a.test/","s":"link","p":1,"d":0,"b":[104,105]}"#;
        let mut old: WireJob = serde_json::from_str(json).expect("old form");
        assert_eq!(old.b.as_deref(), Some(&b"hi"[..]));
        old.b = Some(vec![0xff; 300]);
        let text = serde_json::to_string(&old).expect("serialize");
        assert!(text.contains(r#""b":"////"#), "{text}");
        assert!(
            text.len() < 500,
            "300 bytes of body took {} bytes",
            text.len()
        );
        let back: WireJob = serde_json::from_str(&text).expect("new form");
        assert_eq!(back.b, Some(vec![0xff; 300]));
    }
}
