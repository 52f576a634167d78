//! The in-process dedup store: each crawl's seen fingerprints and page
//! counts per domain (the Redis one is `redis/dedup.rs`).

use super::{Candidate, DedupStore, StoreError};
use crate::request::CrawlKey;
use async_trait::async_trait;
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio::time::Instant;

struct Seen {
    fingerprints: HashSet<u128>,
    per_domain: HashMap<String, u32>,
    touched: Instant,
}

/// Seen fingerprints and page counts per crawl. A crawl's state is dropped
/// once no admission has touched it for `idle_ttl`.
pub struct EmbeddedDedup {
    crawls: Mutex<HashMap<CrawlKey, Seen>>,
    idle_ttl: Duration,
    global_counts: Mutex<HashMap<String, u32>>,
}

impl EmbeddedDedup {
    pub fn new(idle_ttl: Duration) -> Self {
        EmbeddedDedup {
            crawls: Mutex::new(HashMap::new()),
            idle_ttl,
            global_counts: Mutex::new(HashMap::new()),
        }
    }
}

#[async_trait]
impl DedupStore for EmbeddedDedup {
    async fn admit(
        &self,
        crawl: &CrawlKey,
        candidates: &[Candidate],
    ) -> Result<Vec<bool>, StoreError> {
        let now = Instant::now();
        let mut crawls = self.crawls.lock();
        crawls.retain(|_, s| now.duration_since(s.touched) < self.idle_ttl);
        let seen = crawls.entry(crawl.clone()).or_insert_with(|| Seen {
            fingerprints: HashSet::new(),
            per_domain: HashMap::new(),
            touched: now,
        });
        seen.touched = now;
        let mut global = self.global_counts.lock();
        let out = candidates
            .iter()
            .map(|c| {
                if !c.force && seen.fingerprints.contains(&c.fingerprint) {
                    return false;
                }
                let count = seen.per_domain.get(&c.domain).copied().unwrap_or(0);
                if c.domain_cap.is_some_and(|cap| count >= cap) {
                    return false;
                }
                let gcount = global.get(&c.domain).copied().unwrap_or(0);
                if c.global_cap.is_some_and(|cap| gcount >= cap) {
                    return false;
                }
                seen.fingerprints.insert(c.fingerprint);
                *seen.per_domain.entry(c.domain.clone()).or_default() += 1;
                if c.global_cap.is_some() {
                    *global.entry(c.domain.clone()).or_default() += 1;
                }
                true
            })
            .collect();
        Ok(out)
    }

    async fn new_run(&self, crawl: &CrawlKey) -> Result<(), StoreError> {
        self.crawls.lock().remove(crawl);
        Ok(())
    }
}
