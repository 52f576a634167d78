//! The in-process twin's book of runs: how much of each run of each crawl
//! is open (queued, leased or waiting to retry), its figures so far, and
//! what a revisited crawl keeps of each page. The frontier keeps it beside
//! its queues and updates it on push, pop and ack, so a run's end and a
//! page's last state cost no call of their own (in Redis, the same
//! scripts will carry them).

use super::EmbeddedFrontier;
use crate::events::event::Stats;
use crate::links::domain;
use crate::request::{CrawlKey, Job};
use crate::revisit::PageState;
use crate::scheduler::{Acked, RunLedger, RunNews, StoreError};
use async_trait::async_trait;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

/// One run in progress.
struct Run {
    /// Requests of it pushed and not yet acked.
    open: u64,
    started: bool,
    since: Instant,
    stats: Stats,
    domains: HashSet<String>,
}

#[derive(Default)]
pub(super) struct RunBook {
    runs: HashMap<(CrawlKey, u32), Run>,
    /// Each revisited crawl's pages, by request fingerprint.
    pages: HashMap<CrawlKey, HashMap<u128, Arc<PageState>>>,
    news: Vec<RunNews>,
}

impl RunBook {
    /// New requests of `job`'s run were queued.
    pub(super) fn pushed(&mut self, job: &Job) {
        let key = (job.crawl.key(), job.crawl.run);
        self.runs
            .entry(key)
            .or_insert_with(|| Run {
                open: 0,
                started: false,
                since: Instant::now(),
                stats: Stats::default(),
                domains: HashSet::new(),
            })
            .open += 1;
    }

    /// `job` was leased: its run has started, and a revisited page gets
    /// what the last run kept of it.
    pub(super) fn popped(&mut self, job: &mut Job) {
        let key = job.crawl.key();
        if job.crawl.revisit.is_some() {
            job.prior = self
                .pages
                .get(&key)
                .and_then(|p| p.get(&job.fingerprint()))
                .cloned();
        }
        if let Some(run) = self.runs.get_mut(&(key, job.crawl.run)) {
            if !std::mem::replace(&mut run.started, true) {
                self.news.push(RunNews::Started {
                    crawl: job.crawl.key(),
                    run: job.crawl.run,
                });
            }
        }
    }

    /// `job`'s lease ended as `acked` says: counted, its page kept, and
    /// its run complete when nothing else of it is open.
    pub(super) fn acked(&mut self, job: &Job, acked: Acked) {
        let crawl = job.crawl.key();
        if let Some(page) = acked.page {
            self.pages
                .entry(crawl.clone())
                .or_default()
                .insert(job.fingerprint(), Arc::new(page));
        }
        let key = (crawl, job.crawl.run);
        let Some(run) = self.runs.get_mut(&key) else {
            return;
        };
        let s = &mut run.stats;
        if let Some(status) = acked.status {
            s.pages += 1;
            *s.by_status
                .entry(format!("{}xx", status / 100))
                .or_default() += 1;
        }
        s.bytes += acked.bytes;
        if let Some(e) = acked.error {
            *s.errors.entry(e.to_string()).or_default() += 1;
        }
        if let Some(c) = acked.change {
            *s.change.entry(c.name().to_string()).or_default() += 1;
        }
        run.domains.insert(domain::of_url(&job.url));
        run.open = run.open.saturating_sub(1);
        if run.open == 0 {
            let Some(mut run) = self.runs.remove(&key) else {
                return;
            };
            run.stats.domains = run.domains.len() as u64;
            run.stats.duration_ms = run.since.elapsed().as_millis() as u64;
            let (crawl, run_no) = key;
            self.news.push(RunNews::Completed {
                crawl,
                run: run_no,
                stats: run.stats,
            });
        }
    }

    pub(super) fn news(&mut self) -> Vec<RunNews> {
        std::mem::take(&mut self.news)
    }

    /// The pages a revisited crawl knows (not those gone).
    pub(super) fn pages(&self, crawl: &CrawlKey) -> Vec<Arc<PageState>> {
        self.pages
            .get(crawl)
            .map(|p| p.values().filter(|s| !s.gone).cloned().collect())
            .unwrap_or_default()
    }

    /// Pages due in `run` that no fetch of it reached: marked gone, and
    /// returned.
    pub(super) fn sweep(&mut self, crawl: &CrawlKey, run: u32) -> Vec<Arc<PageState>> {
        let Some(pages) = self.pages.get_mut(crawl) else {
            return Vec::new();
        };
        let mut swept = Vec::new();
        for s in pages.values_mut() {
            // (A page resting this run, `adaptive`, was not due.)
            if !s.gone && s.run < run && s.due(run) {
                let mut gone = (**s).clone();
                gone.gone = true;
                *s = Arc::new(gone);
                swept.push(s.clone());
            }
        }
        swept
    }

    pub(super) fn forget(&mut self, crawl: &CrawlKey) {
        self.pages.remove(crawl);
    }
}

/// The frontier answers from its book, under the lock its push, pop and
/// ack take.
#[async_trait]
impl RunLedger for EmbeddedFrontier {
    async fn run_news(&self) -> Result<Vec<RunNews>, StoreError> {
        Ok(self.state.lock().runs.news())
    }

    async fn known_pages(&self, crawl: &CrawlKey) -> Result<Vec<Arc<PageState>>, StoreError> {
        Ok(self.state.lock().runs.pages(crawl))
    }

    async fn sweep(&self, crawl: &CrawlKey, run: u32) -> Result<Vec<Arc<PageState>>, StoreError> {
        Ok(self.state.lock().runs.sweep(crawl, run))
    }

    async fn forget_pages(&self, crawl: &CrawlKey) -> Result<(), StoreError> {
        self.state.lock().runs.forget(crawl);
        Ok(())
    }
}
