//! Crawl specs: stored once per crawl (and per shard, lazily, when a
//! crawl's links reach another shard), cached per worker with the version
//! a pop names, so requests travel without them.

use super::{corrupt, crawl_owner, crawl_ref, unavailable, Redis, StoreError};
use crate::links::domain;
use crate::request::{CrawlSpec, Job};
use std::sync::Arc;

/// Crawl specs a process keeps in memory.
const SPEC_CACHE: usize = 10_000;

impl Redis {
    /// The spec cache's key for crawl `cref` as shard k stores it.
    fn spec_key(&self, k: usize, cref: &str) -> String {
        if self.shards.len() == 1 {
            cref.to_string()
        } else {
            format!("{k}:{cref}")
        }
    }

    /// The crawl's spec as cached (any version, any shard), else read from
    /// the shards: for control operations, which need its appid and expiry
    /// only.
    pub async fn spec(&self, cref: &str) -> Result<Option<Arc<CrawlSpec>>, StoreError> {
        {
            let specs = self.specs.lock();
            for k in self.shards.all() {
                if let Some((_, s)) = specs.get(&self.spec_key(k, cref)) {
                    return Ok(Some(s.clone()));
                }
            }
        }
        for k in self.shards.all() {
            if let Some(s) = self.spec_at(k, cref, "").await? {
                return Ok(Some(s));
            }
        }
        Ok(None)
    }

    /// The crawl's spec at `version` on shard k (what a pop names): cached,
    /// else read from Redis.
    pub(crate) async fn spec_at(
        &self,
        k: usize,
        cref: &str,
        version: &str,
    ) -> Result<Option<Arc<CrawlSpec>>, StoreError> {
        let cache_key = self.spec_key(k, cref);
        if let Some((v, s)) = self.specs.lock().get(&cache_key) {
            if v == version {
                return Ok(Some(s.clone()));
            }
        }
        let mut con = self.con();
        let json: Option<String> = redis::cmd("GET")
            .arg(format!("{}:spec:{cref}", self.shards.tag(k)))
            .query_async(&mut con)
            .await
            .map_err(unavailable)?;
        let Some(json) = json else { return Ok(None) };
        let spec: CrawlSpec =
            serde_json::from_str(&json).map_err(|e| corrupt(format!("crawl spec {cref}: {e}")))?;
        let spec = Arc::new(spec);
        self.cache_spec(cache_key, version, &spec);
        Ok(Some(spec))
    }

    fn cache_spec(&self, cache_key: String, version: &str, spec: &Arc<CrawlSpec>) {
        let mut specs = self.specs.lock();
        if specs.len() >= SPEC_CACHE && !specs.contains_key(&cache_key) {
            // Any entry will do: a miss costs one GET.
            if let Some(k) = specs.keys().next().cloned() {
                specs.remove(&k);
            }
        }
        specs.insert(cache_key, (version.to_string(), spec.clone()));
    }

    /// The spec arguments of a push to shard k: the JSON and whether it is
    /// stored only if the shard has none ("lazy"). A seed's (a crawl
    /// submitted, or submitted again with new attrs, cookie or expiry) is
    /// stored; children bring theirs lazily to a shard of a sharded
    /// frontier (it may be the crawl's first request there) and never on
    /// a single shard, so one popped under an older spec cannot undo a
    /// resubmission.
    pub(crate) fn spec_args<'j>(
        &self,
        mut jobs: impl Iterator<Item = &'j Job> + Clone,
    ) -> (String, &'static str) {
        let json = |j: &Job| spec_json(&j.crawl);
        match jobs.clone().find(|j| j.depth == 0) {
            Some(seed) => (json(seed), "0"),
            // No jobs at all: no spec to send.
            None if self.shards.len() > 1 => (jobs.next().map(json).unwrap_or_default(), "1"),
            None => (String::new(), "0"),
        }
    }

    /// A seed's new spec copied to the other shards that hold its crawl
    /// (a sharded frontier only; the seed's own shard stored it).
    pub(crate) async fn respec(&self, seeds: &[&Job]) -> Result<(), StoreError> {
        if self.shards.len() == 1 || seeds.is_empty() {
            return Ok(());
        }
        let mut calls = Vec::new();
        for k in self.shards.all() {
            let mut inv = self.call(&self.respec, k);
            let mut any = false;
            for j in seeds {
                if self.shards.of_domain(&domain::of_url(&j.url)) == k {
                    continue;
                }
                let key = j.crawl.key();
                inv.arg(crawl_ref(&key))
                    .arg(crawl_owner(&key))
                    .arg(spec_json(&j.crawl));
                any = true;
            }
            if any {
                calls.push(inv);
            }
        }
        futures::future::try_join_all(calls.iter().map(|inv| async move {
            let mut con = self.con();
            inv.invoke_async::<i64>(&mut con).await.map_err(unavailable)
        }))
        .await?;
        Ok(())
    }
}

/// A spec as stored: plain data, so writing it cannot fail.
fn spec_json(spec: &CrawlSpec) -> String {
    serde_json::to_string(spec).expect("a crawl spec serialises")
}
