//! The monitors' side of the Redis store: batched, idempotent ingest of one
//! incoming partition, the control stream the control plane reads (each
//! entry handed to exactly one reader), and per-role heartbeats and
//! counters for the `kafka-monitor` / `redis-monitor` / `rest` stats.

use super::MonitorStore;
use crate::links::domain;
use crate::request::{CrawlKey, Job};
use crate::store::{
    corrupt, crawl_owner, crawl_ref, fingerprint_args, queue_key, unavailable, StoreError, WireJob,
};
use std::collections::BTreeMap;

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
    /// A scheduled crawl, already kept in the schedule book (idempotently,
    /// before its batch is stored): only counted.
    Kept,
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

impl MonitorStore {
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
        if self.redis.shards().len() > 1 {
            return self.ingest_sharded(partition_id, stat_kind, entries).await;
        }
        let all: Vec<(usize, As)> = (0..entries.len()).map(|i| (i, As::Is)).collect();
        let (new, collided, _) = self
            .ingest_on(0, partition_id, Some(stat_kind), entries, &all, "")
            .await?;
        // The caller commits the partition's offsets next.
        self.redis.replicated([(0, self.redis.wrote(0))]).await?;
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
                        self.redis.shards().of_domain(&domain::of_url(&job.url))
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
            self.redis.respec(&seeds).await?;
            start = end;
        }
        outcome.collided.sort_unstable();
        // The caller commits the partition's offsets next.
        let marks: Vec<(usize, u64)> = written
            .into_iter()
            .map(|k| (k, self.redis.wrote(k)))
            .collect();
        self.redis.replicated(marks).await?;
        Ok(outcome)
    }

    /// Every shard's last job id, as JSON (shard 0's is filled in by the
    /// ingest script).
    async fn horizons(&self) -> Result<String, StoreError> {
        let seqs = futures::future::try_join_all(self.redis.shards().all().map(|k| async move {
            let mut con = self.redis.con();
            redis::cmd("GET")
                .arg(format!("{}:seq", self.redis.shards().tag(k)))
                .query_async::<Option<u64>>(&mut con)
                .await
                .map_err(unavailable)
        }))
        .await?;
        // A shard that never queued anything has no sequence yet: 0.
        let seqs: Vec<u64> = seqs.into_iter().map(|s| s.unwrap_or(0)).collect();
        Ok(serde_json::to_string(&seqs).expect("numbers serialise"))
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
        let mut inv = self.redis.call(&self.scripts.ingest, k);
        inv.arg(partition_id)
            // "" tells the script to count no stats.
            .arg(stat_kind.map(String::from).unwrap_or_default())
            .arg(self.global_cap);
        for &(i, how) in items {
            let e = &entries[i];
            let kind = match (&e.what, how) {
                (_, As::Note(_)) | (Ingested::Kept, _) => "note",
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
                    let spec = serde_json::to_string(&*job.crawl).expect("a crawl spec serialises");
                    let payload = WireJob::of(job, &d).to_json();
                    inv.arg(crawl_ref(&key))
                        .arg(crawl_owner(&key))
                        .arg(spec)
                        .arg(&job.crawl.appid)
                        .arg(job.crawl.expires)
                        .arg(fp)
                        .arg(hex)
                        .arg(&d)
                        .arg(queue_key(job, &d))
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
        let mut con = self.redis.con();
        let out: Vec<i64> = inv.invoke_async(&mut con).await.map_err(unavailable)?;
        let [new, ncollided] = [out.first(), out.get(1)].map(|n| n.map(|&n| n.max(0) as usize));
        let (Some(new), Some(ncollided)) = (new, ncollided) else {
            return Err(corrupt(format!("ingest reply {out:?}")));
        };
        let batch_index = |&j: &i64| items.get(j as usize).map(|(i, _)| *i);
        let collided = out.iter().skip(2).take(ncollided).filter_map(batch_index);
        let capped = out.iter().skip(2 + ncollided).filter_map(batch_index);
        Ok((new, collided.collect(), capped.collect()))
    }
}
