//! What every shard keeps of a crawl's runs beside its queues, written by
//! the frontier's scripts and read by workers and monitors alike: the
//! figures every ack adds to (`rf:<cref>`; a new run starts them again)
//! and the pages a revisited crawl keeps between runs (`pg:<cref>`, on the
//! shard of each page's domain, written by the ack). These are read once
//! per run or per `info`, never per page: a run's end reads the figures,
//! its fire reads the pages, the sweep after it marks the ones it did not
//! reach.

use super::{corrupt, crawl_ref, unavailable, Redis, StoreError};
use crate::events::event::Stats;
use crate::request::CrawlKey;
use crate::revisit::PageState;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A crawl's figures as the shards keep them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    pub stats: Stats,
    /// Pages per minute (unix minutes), the last ten or so.
    pub minutes: BTreeMap<i64, u64>,
}

impl Redis {
    /// The crawl's figures summed over the shards.
    pub async fn figures(&self, crawl: &CrawlKey) -> Result<Stats, StoreError> {
        Ok(self.crawl_figures(&crawl_ref(crawl)).await?.stats)
    }

    /// The figures of the crawl under `cref`, with its pages per minute.
    pub async fn crawl_figures(&self, cref: &str) -> Result<Figures, StoreError> {
        let mut figures = Figures::default();
        let stats = &mut figures.stats;
        let mut since: Option<u64> = None;
        for k in self.shards().all() {
            let mut con = self.con();
            let fields: Vec<(String, u64)> = redis::cmd("HGETALL")
                .arg(format!("{}:rf:{cref}", self.shards().tag(k)))
                .query_async(&mut con)
                .await
                .map_err(unavailable)?;
            for (field, n) in fields {
                match field.split_once(':') {
                    Some(("s", class)) => {
                        *stats.by_status.entry(class.into()).or_default() += n;
                        stats.pages += n;
                    }
                    Some(("e", kind)) => *stats.errors.entry(kind.into()).or_default() += n,
                    Some(("c", change)) => *stats.change.entry(change.into()).or_default() += n,
                    // A domain lives on one shard: counted once.
                    Some(("d", _)) => stats.domains += 1,
                    Some(("m", minute)) => {
                        if let Ok(m) = minute.parse() {
                            *figures.minutes.entry(m).or_default() += n;
                        }
                    }
                    _ if field == "b" => stats.bytes += n,
                    _ if field == "t" => since = Some(since.map_or(n, |s| s.min(n))),
                    _ => {}
                }
            }
        }
        if let Some(t) = since {
            // Redis's clock started it; this host's ends it (the two are
            // kept in step on any cluster worth the name).
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            stats.duration_ms = now.saturating_sub(t);
        }
        Ok(figures)
    }

    /// Every page the crawl keeps, with its shard.
    pub async fn kept_pages(
        &self,
        crawl: &CrawlKey,
    ) -> Result<Vec<(usize, PageState)>, StoreError> {
        let cref = crawl_ref(crawl);
        let mut pages = Vec::new();
        for k in self.shards().all() {
            let mut con = self.con();
            let kept: Vec<(Vec<u8>, String)> = redis::cmd("HGETALL")
                .arg(format!("{}:pg:{cref}", self.shards().tag(k)))
                .query_async(&mut con)
                .await
                .map_err(unavailable)?;
            for (_, record) in kept {
                let page = PageState::decode(&record)
                    .ok_or_else(|| corrupt(format!("kept page {record:?}")))?;
                pages.push((k, page));
            }
        }
        Ok(pages)
    }

    /// Pages due in `run` (not resting, `adaptive`) that no fetch of it
    /// reached, marked gone where they are kept.
    pub async fn sweep_pages(
        &self,
        crawl: &CrawlKey,
        run: u32,
    ) -> Result<Vec<Arc<PageState>>, StoreError> {
        let cref = crawl_ref(crawl);
        let mut swept = Vec::new();
        for (k, mut page) in self.kept_pages(crawl).await? {
            if page.gone || page.run >= run || !page.due(run) {
                continue;
            }
            page.gone = true;
            let mut con = self.con();
            let _: i64 = redis::cmd("HSET")
                .arg(format!("{}:pg:{cref}", self.shards().tag(k)))
                .arg(&page.key()[..])
                .arg(page.encode())
                .query_async(&mut con)
                .await
                .map_err(unavailable)?;
            swept.push(Arc::new(page));
        }
        Ok(swept)
    }

    /// Drop every page the crawl keeps (its schedule ended).
    pub async fn drop_pages(&self, crawl: &CrawlKey) -> Result<(), StoreError> {
        let cref = crawl_ref(crawl);
        for k in self.shards().all() {
            let mut con = self.con();
            let _: i64 = redis::cmd("DEL")
                .arg(format!("{}:pg:{cref}", self.shards().tag(k)))
                .query_async(&mut con)
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }
}
