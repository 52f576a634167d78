//! The monitors' side of the Redis store: batched, idempotent ingest of one
//! incoming partition, the control stream the control plane reads (each
//! entry handed to exactly one reader), and per-role heartbeats and
//! counters for the `kafka-monitor` / `redis-monitor` / `rest` stats.

use super::wire::{crawl_owner, crawl_ref, fingerprint_args, WireJob};
use super::{unavailable, Monitor, RedisStore};
use crate::request::{CrawlKey, Job};
use crate::scheduler::{domain, StoreError};
use redis::Value as RV;
use std::collections::BTreeMap;
use std::time::Duration;

/// What one incoming message became.
#[derive(Debug)]
pub enum Ingested {
    /// A crawl's seed, to queue, with the request's text (dead-lettered
    /// if the seed is refused: see [`IngestOutcome::collided`]).
    Seed { job: Box<Job>, text: String },
    /// A request for the control plane (JSON of a `monitor::ControlRequest`).
    Control(String),
    /// A stop of crawl `key` (JSON of a `ControlRequest::Action`): stored
    /// in order, so it purges what was queued before it and no seed that
    /// came after it.
    Stop { key: CrawlKey, json: String },
    /// Rejected (already dead-lettered); only counted.
    Fail,
}

#[derive(Debug)]
pub struct IngestEntry {
    pub offset: i64,
    /// The message's timestamp (ms), -1 if it has none.
    pub timestamp: i64,
    /// Stats name: `crawl`, `action`, `stats`, `domain-config`, a monitor
    /// plugin's name, or `fail`.
    pub name: String,
    pub what: Ingested,
}

/// What storing a batch did.
#[derive(Debug, Default)]
pub struct IngestOutcome {
    /// Messages not handled before (the rest were redelivered).
    pub new: usize,
    /// Indexes (in the batch) of seeds refused because another crawl holds
    /// their crawl's key (a 64-bit hash collision): nothing of them was
    /// stored, and the caller dead-letters them.
    pub collided: Vec<usize>,
}

/// How a message goes into one shard's ingest call.
#[derive(Debug, Clone, Copy)]
enum As {
    /// Handled there.
    Is,
    /// Only counted (a seed of another shard).
    Counted,
    /// Not a message: another shard refused it for this reason.
    Note(&'static str),
}

/// The control plane's consumer group on the control stream.
const GROUP: &str = "control";
/// An entry read by a control plane that then went silent this long is
/// taken over by another.
const CLAIM_IDLE_MS: u64 = 30_000;

impl RedisStore {
    /// Put a request on the control stream directly (monitor plugins' and
    /// tests' way in; the ingest monitor batches through [`Self::ingest`]).
    /// The stream is never trimmed by length: an entry leaves it only once
    /// answered ([`Self::control_done`]), so no request goes unanswered.
    pub async fn control_push(&self, json: &str) -> Result<(), StoreError> {
        let mut con = self.con();
        let _: String = redis::cmd("XADD")
            .arg(self.key("control"))
            .arg("*")
            .arg("m")
            .arg(json)
            .query_async(&mut con)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

impl Monitor {
    /// Handle a batch of one partition's messages (in offset order) in one
    /// atomic step; messages at or below the partition's watermark were
    /// handled before and are skipped. A sharded frontier takes one step
    /// per shard, each idempotent by its own watermark (see
    /// [`Self::ingest_sharded`]).
    pub async fn ingest(
        &self,
        partition_id: &str,
        stat_kind: char,
        entries: &[IngestEntry],
    ) -> Result<IngestOutcome, StoreError> {
        if entries.is_empty() {
            return Ok(IngestOutcome::default());
        }
        if self.store.shards.len() > 1 {
            return self.ingest_sharded(partition_id, stat_kind, entries).await;
        }
        let all: Vec<(usize, As)> = (0..entries.len()).map(|i| (i, As::Is)).collect();
        let (new, collided, _) = self
            .ingest_on(0, partition_id, Some(stat_kind), entries, &all, "")
            .await?;
        // The caller commits the partition's offsets next.
        self.store
            .replicated([(0, self.store.marks.wrote(0))])
            .await?;
        Ok(IngestOutcome { new, collided })
    }

    /// A batch on several shards, in segments that end at each stop: each
    /// shard's seeds first, then shard 0's call, which holds every message
    /// (the seeds of other shards only counted), the control requests and
    /// the batch's stats. A stop's purge horizon on each shard is that
    /// shard's last job id once the seeds before the stop are queued.
    async fn ingest_sharded(
        &self,
        partition_id: &str,
        stat_kind: char,
        entries: &[IngestEntry],
    ) -> Result<IngestOutcome, StoreError> {
        let mut outcome = IngestOutcome::default();
        let mut written = std::collections::BTreeSet::from([0]);
        let mut start = 0;
        while start < entries.len() {
            let end = entries[start..]
                .iter()
                .position(|e| matches!(e.what, Ingested::Stop { .. }))
                .map_or(entries.len(), |p| start + p + 1);
            let mut by_shard: BTreeMap<usize, Vec<(usize, As)>> = BTreeMap::new();
            let mut seeds = Vec::new();
            for (i, e) in entries.iter().enumerate().take(end).skip(start) {
                let k = match &e.what {
                    Ingested::Seed { job, .. } => {
                        seeds.push(&**job);
                        self.store.shards.of_domain(&domain::of_url(&job.url))
                    }
                    _ => 0,
                };
                by_shard.entry(k).or_default().push((i, As::Is));
                if k != 0 {
                    by_shard.entry(0).or_default().push((i, As::Counted));
                }
            }
            written.extend(by_shard.keys().copied());
            let others = by_shard.iter().filter(|(&k, _)| k != 0);
            let done = futures::future::try_join_all(
                others.map(|(&k, items)| self.ingest_on(k, partition_id, None, entries, items, "")),
            )
            .await?;
            let first = by_shard.entry(0).or_default();
            for (_, collided, capped) in done {
                for (i, why) in collided
                    .iter()
                    .map(|&i| (i, "collision"))
                    .chain(capped.iter().map(|&i| (i, "capped")))
                {
                    first.push((i, As::Note(why)));
                }
                outcome.collided.extend(collided);
            }
            let horizons = match entries[end - 1].what {
                Ingested::Stop { .. } => self.horizons().await?,
                _ => String::new(),
            };
            let (new, collided, _) = self
                .ingest_on(0, partition_id, Some(stat_kind), entries, first, &horizons)
                .await?;
            outcome.new += new;
            outcome.collided.extend(collided);
            self.store.respec(&seeds).await?;
            start = end;
        }
        outcome.collided.sort_unstable();
        // The caller commits the partition's offsets next.
        let marks: Vec<(usize, u64)> = written
            .into_iter()
            .map(|k| (k, self.store.marks.wrote(k)))
            .collect();
        self.store.replicated(marks).await?;
        Ok(outcome)
    }

    /// Every shard's last job id, as JSON (shard 0's is filled in by the
    /// ingest script).
    async fn horizons(&self) -> Result<String, StoreError> {
        let seqs = futures::future::try_join_all(self.store.shards.all().map(|k| async move {
            let mut con = self.store.con();
            redis::cmd("GET")
                .arg(format!("{}:seq", self.store.shards.tag(k)))
                .query_async::<Option<u64>>(&mut con)
                .await
                .map_err(unavailable)
        }))
        .await?;
        Ok(
            serde_json::to_string(&seqs.into_iter().map(|s| s.unwrap_or(0)).collect::<Vec<_>>())
                .unwrap_or_default(),
        )
    }

    /// One ingest call on shard k with `items` (batch index, how). Returns
    /// the messages new there, and the batch indexes of seeds refused as
    /// colliding or capped. `stat_kind` None counts no stats.
    async fn ingest_on(
        &self,
        k: usize,
        partition_id: &str,
        stat_kind: Option<char>,
        entries: &[IngestEntry],
        items: &[(usize, As)],
        horizons: &str,
    ) -> Result<(usize, Vec<usize>, Vec<usize>), StoreError> {
        let mut inv = self.store.call(&self.store.scripts.ingest, k);
        inv.arg(partition_id)
            .arg(stat_kind.map(String::from).unwrap_or_default())
            .arg(self.store.global_cap);
        for &(i, how) in items {
            let e = &entries[i];
            let kind = match (&e.what, how) {
                (_, As::Note(_)) => "note",
                (_, As::Counted) | (Ingested::Fail, _) => "fail",
                (Ingested::Seed { .. }, _) => "seed",
                (Ingested::Control(_), _) => "ctl",
                (Ingested::Stop { .. }, _) => "stop",
            };
            let name = match how {
                As::Note(why) => why,
                _ => &e.name,
            };
            inv.arg(e.offset).arg(e.timestamp).arg(kind).arg(name);
            match (&e.what, kind) {
                (Ingested::Seed { job, .. }, "seed") => {
                    let key = job.crawl.key();
                    let d = domain::of_url(&job.url);
                    let (fp, hex) = fingerprint_args(job.fingerprint());
                    let spec = serde_json::to_string(&*job.crawl).unwrap_or_default();
                    let payload = serde_json::to_string(&WireJob::of(job, &d)).unwrap_or_default();
                    inv.arg(crawl_ref(&key))
                        .arg(crawl_owner(&key))
                        .arg(spec)
                        .arg(&job.crawl.appid)
                        .arg(job.crawl.expires)
                        .arg(fp)
                        .arg(hex)
                        .arg(&d)
                        .arg(RedisStore::queue_key(job, &d))
                        .arg(job.priority)
                        .arg(payload);
                }
                (Ingested::Control(json), "ctl") => {
                    for _ in 0..10 {
                        inv.arg("");
                    }
                    inv.arg(json);
                }
                (Ingested::Stop { key, json }, "stop") => {
                    inv.arg(crawl_ref(key)).arg(crawl_owner(key)).arg(horizons);
                    for _ in 0..7 {
                        inv.arg("");
                    }
                    inv.arg(json);
                }
                _ => {
                    for _ in 0..11 {
                        inv.arg("");
                    }
                }
            }
        }
        let mut con = self.store.con();
        let out: Vec<i64> = inv.invoke_async(&mut con).await.map_err(unavailable)?;
        let new = out.first().copied().unwrap_or(0).max(0) as usize;
        let ncollided = out.get(1).copied().unwrap_or(0).max(0) as usize;
        let batch_index = |&j: &i64| items.get(j as usize).map(|(i, _)| *i);
        let collided = out.iter().skip(2).take(ncollided).filter_map(batch_index);
        let capped = out.iter().skip(2 + ncollided).filter_map(batch_index);
        Ok((new, collided.collect(), capped.collect()))
    }

    /// Next control requests for `consumer`: first entries another control
    /// plane read and never finished, else new ones (waiting up to `block`).
    /// Returns (entry id, JSON).
    pub async fn control_read(
        &self,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let stream = self.store.key("control");
        let mut con = self.store.con();
        let created: Result<(), redis::RedisError> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&stream)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut con)
            .await;
        if let Err(e) = created {
            if e.code() != Some("BUSYGROUP") {
                return Err(unavailable(e));
            }
        }
        let claimed: RV = redis::cmd("XAUTOCLAIM")
            .arg(&stream)
            .arg(GROUP)
            .arg(consumer)
            .arg(CLAIM_IDLE_MS)
            .arg("0-0")
            .arg("COUNT")
            .arg(count)
            .query_async(&mut con)
            .await
            .map_err(unavailable)?;
        let stale = match &claimed {
            RV::Array(parts) => parts.get(1).map(stream_entries).unwrap_or_default(),
            _ => Vec::new(),
        };
        if !stale.is_empty() {
            tracing::info!(
                n = stale.len(),
                "taking over control requests a silent control plane left"
            );
            return Ok(stale);
        }
        // A blocking read gets its own connection: on the shared one it
        // would hold up every other command.
        let mut blocking = self.blocking_connection().await?;
        let reply: RV = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(count)
            .arg("BLOCK")
            .arg(block.as_millis() as u64)
            .arg("STREAMS")
            .arg(&stream)
            .arg(">")
            .query_async(&mut blocking)
            .await
            .map_err(unavailable)?;
        let mut out = Vec::new();
        if let RV::Array(streams) = reply {
            for s in streams {
                if let RV::Array(kv) = s {
                    if let Some(entries) = kv.get(1) {
                        out.extend(stream_entries(entries));
                    }
                }
            }
        }
        Ok(out)
    }

    /// The control requests were answered: forget them.
    pub async fn control_done(&self, ids: &[String]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let stream = self.store.key("control");
        let mut con = self.store.con();
        let _: () = redis::pipe()
            .cmd("XACK")
            .arg(&stream)
            .arg(GROUP)
            .arg(ids)
            .ignore()
            .cmd("XDEL")
            .arg(&stream)
            .arg(ids)
            .ignore()
            .query_async(&mut con)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn blocking_connection(&self) -> Result<super::Con, StoreError> {
        let mut slot = self.store.blocking.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let c = super::Con::blocking(&self.store.nodes, crate::timeouts::REDIS_BLOCKING_RESPONSE)
            .await
            .map_err(unavailable)?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Drop the blocking connection after an error, so the next read
    /// reconnects.
    pub async fn reset_blocking(&self) {
        *self.store.blocking.lock().await = None;
    }

    /// Count `n` handled requests under `name` for a monitor's stats
    /// (`stat_kind` 'k' ingest, 'r' control plane), plus the total.
    pub async fn count_handled(
        &self,
        stat_kind: char,
        name: &str,
        n: u64,
    ) -> Result<(), StoreError> {
        let now = super::unix_now();
        let (minute, hour) = (now / 60, now / 3600);
        let mut pipe = redis::pipe();
        for key in [name, "total"] {
            let key = self.store.key(&format!("st:{stat_kind}:{key}:n"));
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
                .arg(self.store.key("stkeys"))
                .arg(&key)
                .ignore();
        }
        let mut con = self.store.con();
        let _: () = pipe.query_async(&mut con).await.map_err(unavailable)?;
        Ok(())
    }

    /// Announce this process in `role` (kafka-monitor, redis-monitor, rest)
    /// and drop silent nodes of that role.
    pub async fn heartbeat(&self, role: &str) -> Result<(), StoreError> {
        let key = self.store.key(&format!("hb:{role}"));
        let now = super::unix_now() * 1000;
        let mut con = self.store.con();
        let _: () = redis::pipe()
            .cmd("ZADD")
            .arg(&key)
            .arg(now)
            .arg(&self.store.machine)
            .ignore()
            .cmd("ZREMRANGEBYSCORE")
            .arg(&key)
            .arg("-inf")
            .arg(now - self.store.heartbeat_ttl_ms as i64)
            .ignore()
            .query_async(&mut con)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Ids (`host:pid`) of the live nodes of `role`.
    pub async fn nodes(&self, role: &str) -> Result<Vec<String>, StoreError> {
        let now = super::unix_now() * 1000;
        let mut con = self.store.con();
        redis::cmd("ZRANGEBYSCORE")
            .arg(self.store.key(&format!("hb:{role}")))
            .arg(now - self.store.heartbeat_ttl_ms as i64)
            .arg("+inf")
            .query_async(&mut con)
            .await
            .map_err(unavailable)
    }
}

/// `[[id, [field, value, ...]], ...]` -> (id, value of field `m`).
fn stream_entries(v: &RV) -> Vec<(String, String)> {
    let text = |v: &RV| match v {
        RV::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        RV::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    let RV::Array(entries) = v else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|e| {
            let RV::Array(parts) = e else { return None };
            let id = text(parts.first()?)?;
            let RV::Array(fields) = parts.get(1)? else {
                return None;
            };
            let body = fields
                .chunks(2)
                .find(|kv| kv.first().and_then(text).as_deref() == Some("m"))
                .and_then(|kv| kv.get(1).and_then(text))?;
            Some((id, body))
        })
        .collect()
}
