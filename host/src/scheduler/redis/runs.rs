//! What a Redis frontier knows of crawls' runs: read from every shard
//! (the figures and pages themselves are `crate::store::runs`, shared with
//! the monitors); the news a store tells is none, since whoever drives
//! runs looks (`crate::runs`).

use super::RedisFrontier;
use crate::events::event::Stats;
use crate::request::CrawlKey;
use crate::revisit::PageState;
use crate::scheduler::{RunLedger, StoreError};
use crate::store::crawl_ref;
use async_trait::async_trait;
use std::sync::Arc;

#[async_trait]
impl RunLedger for RedisFrontier {
    async fn open(&self, crawl: &CrawlKey) -> Result<Option<u64>, StoreError> {
        let cref = crawl_ref(crawl);
        let calls = self
            .redis
            .shards()
            .all()
            .map(|k| {
                let mut inv = self.redis.call(&self.scripts.runs.open, k);
                inv.arg(&cref);
                (k, inv)
            })
            .collect();
        let open: i64 = self
            .redis
            .on_shards::<i64>(calls)
            .await?
            .into_iter()
            .map(|(_, n)| n.max(0))
            .sum();
        Ok(Some(open as u64))
    }

    async fn figures(&self, crawl: &CrawlKey) -> Result<Option<Stats>, StoreError> {
        self.redis.figures(crawl).await.map(Some)
    }

    async fn known_pages(&self, crawl: &CrawlKey) -> Result<Vec<Arc<PageState>>, StoreError> {
        let pages = self.redis.kept_pages(crawl).await?;
        Ok(pages
            .into_iter()
            .filter(|(_, p)| !p.gone)
            .map(|(_, p)| Arc::new(p))
            .collect())
    }

    async fn sweep(&self, crawl: &CrawlKey, run: u32) -> Result<Vec<Arc<PageState>>, StoreError> {
        self.redis.sweep_pages(crawl, run).await
    }

    async fn forget_pages(&self, crawl: &CrawlKey) -> Result<(), StoreError> {
        self.redis.drop_pages(crawl).await
    }
}
