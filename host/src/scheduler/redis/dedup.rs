//! The Redis store as the throttle (outside a pop: redirect hops,
//! robots.txt) and as the dedup store: each link is deduplicated and
//! queued on its domain's shard.

use super::RedisFrontier;
use crate::politeness::throttle::{Admission, ThrottleStore};
use crate::request::{CrawlKey, Job};
use crate::scheduler::{Candidate, DedupStore, Frontier, StoreError};
use crate::store::{
    cap_arg, crawl_owner, crawl_ref, fingerprint_args, owned_count, queue_key, unavailable, WireJob,
};
use async_trait::async_trait;
use std::time::Duration;

#[async_trait]
impl ThrottleStore for RedisFrontier {
    async fn acquire(&self, spider: &str, domain: &str) -> Result<Admission, StoreError> {
        let mut con = self.redis.con();
        let mut inv = self.with_throttle(
            &self.scripts.sites.throttle,
            self.redis.shards().of_domain(domain),
        );
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
        let tag = self
            .redis
            .shards()
            .tag(self.redis.shards().of_domain(domain));
        let key = format!("{tag}:t:{}{split}{domain}", self.throttle_prefix());
        let mut con = self.redis.con();
        let _: Vec<String> = redis::cmd("ZPOPMAX")
            .arg(key)
            .query_async(&mut con)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

#[async_trait]
impl DedupStore for RedisFrontier {
    async fn admit(
        &self,
        crawl: &CrawlKey,
        candidates: &[Candidate],
    ) -> Result<Vec<bool>, StoreError> {
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        // Each link is deduplicated on its domain's shard.
        let by_shard = self.by_shard(candidates);
        let calls = by_shard
            .iter()
            .map(|(&k, idx)| {
                let mut inv = self.redis.call(&self.scripts.admission.admit, k);
                inv.arg(crawl_ref(crawl))
                    .arg(crawl_owner(crawl))
                    .arg(cap_arg(candidates[0].domain_cap))
                    .arg(cap_arg(candidates[0].global_cap));
                for &i in idx {
                    candidate_args(&mut inv, &candidates[i]);
                }
                (k, inv)
            })
            .collect();
        let mut admitted = vec![false; candidates.len()];
        for (k, out) in self.redis.on_shards::<Vec<i64>>(calls).await? {
            for (&i, v) in by_shard[&k].iter().zip(out) {
                admitted[i] = v == 1;
            }
        }
        Ok(admitted)
    }

    async fn new_run(&self, crawl: &CrawlKey) -> Result<(), StoreError> {
        // Every shard holds part of the crawl's seen set and counts.
        let calls = self
            .redis
            .shards()
            .all()
            .map(|k| {
                let mut inv = self.redis.call(&self.scripts.runs.new_run, k);
                inv.arg(crawl_ref(crawl)).arg(crawl_owner(crawl));
                (k, inv)
            })
            .collect();
        for (_, n) in self.redis.on_shards::<i64>(calls).await? {
            owned_count(n)?;
        }
        Ok(())
    }

    async fn admit_and_push(
        &self,
        _frontier: &dyn Frontier,
        crawl: &CrawlKey,
        candidates: &[Candidate],
        jobs: Vec<Job>,
        origin: &str,
    ) -> Result<usize, StoreError> {
        let Some(first) = jobs.first() else {
            return Ok(0);
        };
        let cref = crawl_ref(crawl);
        let spec = &first.crawl;
        let (spec_json, lazy) = self.redis.spec_args(jobs.iter());
        // Each link is deduplicated and queued on its domain's shard, in
        // one atomic step there.
        let by_shard = self.by_shard(&candidates[..candidates.len().min(jobs.len())]);
        let calls = by_shard
            .iter()
            .map(|(&k, idx)| {
                let mut inv = self.redis.call(&self.scripts.admission.admit_push, k);
                inv.arg(&cref)
                    .arg(crawl_owner(crawl))
                    .arg(cap_arg(candidates[0].domain_cap))
                    .arg(cap_arg(candidates[0].global_cap))
                    .arg(&spec_json)
                    .arg(&spec.appid)
                    .arg(spec.expires)
                    .arg(lazy);
                for &i in idx {
                    let (c, j) = (&candidates[i], &jobs[i]);
                    // The candidate already carries the registered domain.
                    let payload = WireJob::of(j, &c.domain).to_json();
                    candidate_args(&mut inv, c);
                    inv.arg(queue_key(j, &c.domain))
                        .arg(j.priority)
                        .arg(payload);
                }
                (k, inv)
            })
            .collect();
        let mut queued = 0;
        let mut written = Vec::new();
        for (k, n) in self.redis.on_shards::<i64>(calls).await? {
            let n = owned_count(n)?;
            if n > 0 {
                self.redis.shards().has_work(k);
                written.push((k, self.redis.wrote(k)));
            }
            queued += n;
        }
        // The page is acked on its own shard after these writes, so that
        // shard keeps their order by itself.
        let own = (!origin.is_empty()).then(|| self.redis.shards().of_domain(origin));
        written.retain(|(k, _)| Some(*k) != own);
        self.redis.replicated(written).await?;
        Ok(queued)
    }
}

/// A candidate link's arguments to the admit scripts: fingerprint, hex,
/// domain, force.
fn candidate_args(inv: &mut redis::ScriptInvocation<'_>, c: &Candidate) {
    let (fp, hex) = fingerprint_args(c.fingerprint);
    inv.arg(fp)
        .arg(hex)
        .arg(&c.domain)
        .arg(if c.force { "1" } else { "0" });
}
