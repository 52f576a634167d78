//! The Redis store's shared part: one connection per process (a server or
//! a Redis Cluster), the shard map, the Lua prelude every script starts
//! with, key naming, crawl specs and the wire form of a queued request.
//! Two roles build on it, each a type of its own: the worker's frontier
//! ([`crate::scheduler::redis::RedisFrontier`]: queues, leases, dedup,
//! throttle, site pace, heartbeat) and the monitors' store
//! ([`crate::monitor::store::MonitorStore`]: ingest, the control stream,
//! crawl info and stop, domain settings, stats windows, replies). Key
//! layout: `docs/redis-keys.md`.

use crate::backoff::Backoff;
use crate::config::Settings;
use crate::telemetry::Stats;
use crate::timeouts;
use parking_lot::Mutex;
use redis::Script;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

mod connection;
mod runs;
mod shards;
mod specs;
#[cfg(test)]
pub(crate) mod test_server;
mod wire;
pub use connection::Con;
pub use runs::Figures;
pub use shards::MAX_SHARDS;
pub(crate) use shards::{Reply, Shards};
pub(crate) use wire::{
    cap_arg, crawl_owner, crawl_ref, fingerprint_args, owned_count, queue_key, WireJob,
};

#[derive(Debug, Error)]
pub enum StoreError {
    /// The backing service is down; retry later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store answered something this code never writes (a key changed
    /// by hand, a different version's layout): retrying will not help.
    #[error("store corrupt: {0}")]
    Corrupt(String),
    /// The crawl's (appid, crawlid) hashes to the key another crawl holds;
    /// nothing was stored. Resubmitting under another crawlid works.
    #[error("this crawl's key collides with another crawl's; nothing was queued: send it again with another crawlid")]
    Collision,
}

/// The Lua every script starts with, in order: helpers, politeness (its
/// rules' numbers come as arguments), then leases, queues and crawls.
const PRELUDE: [&str; 3] = [
    include_str!("common.lua"),
    include_str!("../politeness/site.lua"),
    include_str!("frontier.lua"),
];

/// A script: the prelude, then `body`.
pub fn script(body: &str) -> Script {
    Script::new(&format!("{}\n{body}", PRELUDE.join("\n")))
}

pub fn unix_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .expect("the clock is past 1970")
}

pub fn unix_now() -> i64 {
    unix_now_ms() / 1000
}

/// This machine's host name, and this process in heartbeats, stats and
/// claims: `host:pid`.
pub fn this_machine() -> (String, String) {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    let machine = format!("{host}:{}", std::process::id());
    (host, machine)
}

/// Milliseconds, for a script argument.
pub fn ms(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

pub fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// A reply that cannot be what a script returns.
pub fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

/// The connection, shards and specs one process shares between its roles.
pub struct Redis {
    con: Con,
    /// Shard 0's tag is the namespace, `{ns}`.
    shards: Shards,
    /// Writes per shard, and those a replica confirmed (Redis Cluster).
    marks: shards::Marks,
    /// The nodes of `redis.url` (several: a Redis Cluster).
    nodes: Vec<String>,
    /// Counts round trips.
    stats: Arc<Stats>,
    /// Crawl specs by cache key, with the version they were read at.
    specs: Mutex<HashMap<String, (String, Arc<crate::request::CrawlSpec>)>>,
    respec: Script,
}

impl Redis {
    /// Connect (retrying with backoff until Redis answers), and check that
    /// every process of the namespace splits it alike.
    pub async fn connect(settings: &Settings, stats: Arc<Stats>) -> Result<Arc<Redis>, StoreError> {
        let url = &settings.redis.url;
        let nodes = connection::nodes(url);
        for n in &nodes {
            redis::Client::open(n.as_str()).map_err(|e| {
                StoreError::Unavailable(format!(
                    "bad redis.url {:?}: {e}",
                    crate::config::redact(url)
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
                        crate::config::redact(url)
                    )));
                }
                Err(e) => {
                    let wait = backoff.next_delay();
                    tracing::warn!(url = %crate::config::redact(url), error = %e, retry_in = ?wait, "Redis unreachable, retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        };
        let shards = Shards::new(
            &settings.redis.namespace,
            settings.redis.shard_count(nodes.len() > 1),
        );
        agree_on_shards(&con, shards.tag(0), shards.len()).await?;
        Ok(Arc::new(Redis {
            con,
            marks: shards::Marks::new(shards.len()),
            shards,
            nodes,
            stats,
            specs: Mutex::new(HashMap::new()),
            respec: script(include_str!("respec.lua")),
        }))
    }

    /// The namespace's hash tag, `{ns}` (shard 0): the monitors', stats'
    /// and workers' keys live there.
    pub fn namespace(&self) -> &str {
        self.shards.tag(0)
    }

    /// `<ns>:<suffix>`: every key of the namespace shares its hash tag.
    pub fn key(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.namespace())
    }

    pub(crate) fn shards(&self) -> &Shards {
        &self.shards
    }

    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// A handle for one request (one round trip, counted).
    pub fn con(&self) -> Con {
        self.stats.emit(crate::telemetry::Event::StoreRoundTrip);
        self.con.clone()
    }

    /// A call of `script` on shard k: its first key names the shard's slot
    /// and its first argument is the shard's prefix.
    pub fn call<'a>(&self, script: &'a Script, k: usize) -> redis::ScriptInvocation<'a> {
        let tag = self.shards.tag(k);
        let mut inv = script.prepare_invoke();
        inv.key(format!("{tag}:ready")).arg(tag);
        inv
    }

    /// Shard k's write mark now (see [`Redis::replicated`]).
    pub fn wrote(&self, k: usize) -> u64 {
        self.marks.wrote(k)
    }

    /// On a Redis Cluster, wait until the replicas of the given shards
    /// hold this process's writes there up to the given marks (from
    /// [`Redis::wrote`]), before anything that relies on them (a page's
    /// ack on another shard, a Kafka offset) is done: masters replicate
    /// asynchronously, and a failover keeps only what reached the replica.
    /// Concurrent callers share one `WAIT` per shard. Free on a single
    /// server.
    pub async fn replicated(
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

    /// Run one call per shard, all at once; the replies in shard order.
    pub async fn on_shards<T: redis::FromRedisValue>(
        &self,
        calls: Vec<(usize, redis::ScriptInvocation<'_>)>,
    ) -> Result<Vec<(usize, T)>, StoreError> {
        futures::future::try_join_all(calls.iter().map(|(k, inv)| async move {
            let mut con = self.con();
            let out: T = inv.invoke_async(&mut con).await.map_err(unavailable)?;
            Ok::<_, StoreError>((*k, out))
        }))
        .await
    }

    /// Requests queued and in flight, per shard.
    pub async fn counts(&self) -> Result<Vec<(u64, u64)>, StoreError> {
        futures::future::try_join_all(self.shards.all().map(|k| async move {
            let mut con = self.con();
            let (q, f) = redis::cmd("HMGET")
                .arg(format!("{}:counts", self.shards.tag(k)))
                .arg("q")
                .arg("f")
                .query_async::<(Option<i64>, Option<i64>)>(&mut con)
                .await
                .map_err(unavailable)?;
            // Absent: nothing was ever queued on the shard.
            Ok((q.unwrap_or(0).max(0) as u64, f.unwrap_or(0).max(0) as u64))
        }))
        .await
    }
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
