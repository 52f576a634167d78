//! The scheduler: which request is crawled next, and which are crawled at
//! all. Two stores, each a trait with an embedded (in-process) twin:
//!
//! - [`Frontier`]: per (spider, registered domain) priority queues, an index
//!   of ready domains, the throttle check on pop, and leases.
//! - [`DedupStore`]: per-crawl seen fingerprints plus page caps, decided for
//!   all the links of one page in one call.
//!
//! The crawl loop only ever talks to these traits.

mod book;
mod embedded;
mod queue;
pub mod redis;
mod seen;
#[cfg(test)]
mod twins;

pub use self::redis::{RedisFrontier, WorkerCard};
use crate::politeness::{Requeue, Sample};
pub use crate::store::{StoreError, MAX_SHARDS};
pub use book::{ask, Ask, EmbeddedBook, Life, Row, ScheduleBook};
pub use embedded::EmbeddedFrontier;
pub use seen::EmbeddedDedup;

use crate::events::event::Stats;
use crate::request::{CrawlKey, Job};
use crate::revisit::{Change, PageState};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

/// A request taken from the frontier. It stays leased until acked.
#[derive(Debug)]
pub struct Lease {
    pub id: u64,
    pub job: Job,
}

/// What a pop found.
#[derive(Debug)]
pub enum Pop {
    Leased(Lease),
    /// Work is queued but every domain is throttled: try again after this.
    Wait(Duration),
    /// Nothing queued.
    Idle,
}

/// How a leased request ended, as the store counts it.
#[derive(Debug, Default)]
pub struct Acked {
    /// The status code of the result it delivered; `None` if it was
    /// dropped (robots, expiry, a plugin).
    pub status: Option<u16>,
    /// How its fetch went, for the adaptive throttle (given only when that
    /// is on).
    pub sample: Option<Sample>,
    /// Body bytes fetched, for its run's figures.
    pub bytes: u64,
    /// Why it failed (`fetch`, `robots`, `expired`, `dropped`,
    /// `undelivered`), for its run's figures.
    pub error: Option<&'static str>,
    /// A revisited page's change since the last run.
    pub change: Option<Change>,
    /// What a revisited crawl keeps of the page for its next run.
    pub page: Option<PageState>,
}

/// What the store saw of a crawl's runs since it was last asked.
#[derive(Debug, Clone, PartialEq)]
pub enum RunNews {
    /// The run's first request was leased.
    Started { crawl: CrawlKey, run: u32 },
    /// Nothing of the run is queued, leased or waiting to retry.
    Completed {
        crawl: CrawlKey,
        run: u32,
        stats: Stats,
    },
}

/// Queue and lease counts, for progress and "is the crawl done".
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub queued: u64,
    pub in_flight: u64,
}

/// What a frontier knows of crawls' runs, as its push, pop and ack
/// update it: how much of a crawl is open, its figures, the runs started
/// and over, and a revisited crawl's pages. Embedded, the frontier's own
/// book (`embedded/runs.rs`); on Redis, read from the shards
/// (`redis/runs.rs`, `store/runs.rs`). Driven by `crate::runs`.
#[async_trait]
pub trait RunLedger: Send + Sync {
    /// Requests of `crawl` queued, leased or waiting to retry, for a store
    /// that tells no [`RunNews`]; `None` for one that does.
    async fn open(&self, _crawl: &CrawlKey) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }
    /// The crawl's figures so far (of its current run, for a recurring
    /// crawl), for a store that tells no [`RunNews`]; `None` for one that
    /// does.
    async fn figures(&self, _crawl: &CrawlKey) -> Result<Option<Stats>, StoreError> {
        Ok(None)
    }
    /// Runs started and completed since the last call (each told once).
    async fn run_news(&self) -> Result<Vec<RunNews>, StoreError> {
        Ok(Vec::new())
    }
    /// The pages a revisited crawl knows from its runs (not those gone).
    async fn known_pages(&self, _crawl: &CrawlKey) -> Result<Vec<Arc<PageState>>, StoreError> {
        Ok(Vec::new())
    }
    /// The crawl's pages no fetch of `run` reached, now marked gone.
    async fn sweep(&self, _crawl: &CrawlKey, _run: u32) -> Result<Vec<Arc<PageState>>, StoreError> {
        Ok(Vec::new())
    }
    /// Drop what a revisited crawl keeps of its pages (its schedule ended).
    async fn forget_pages(&self, _crawl: &CrawlKey) -> Result<(), StoreError> {
        Ok(())
    }
}

#[async_trait]
pub trait Frontier: RunLedger + Send + Sync {
    /// Queue requests already admitted by the [`DedupStore`].
    async fn push(&self, jobs: Vec<Job>) -> Result<(), StoreError>;
    /// Lease the best request of a domain the throttle lets through now.
    async fn pop(&self) -> Result<Pop, StoreError>;
    /// The leased request is finished, as `acked` says. Stats count it
    /// here, and its run's figures; a revisited page's state is kept.
    async fn ack(&self, lease_id: u64, acked: Acked) -> Result<(), StoreError>;
    /// Finish the lease and queue `retry` in its place, as one step; it is
    /// fetched no sooner than `when` says (and a [`Requeue::PauseSite`]
    /// pauses its whole domain).
    async fn retry(&self, lease_id: u64, retry: Job, when: Requeue) -> Result<(), StoreError>;
    /// An origin's robots.txt `Crawl-delay` (already capped): its fetches
    /// are spaced at least this far apart, by every worker. `None` clears
    /// it. `origin` is `scheme://host[:port]` (`links::domain::origin_of`).
    async fn crawl_delay(&self, origin: &str, delay: Option<Duration>) -> Result<(), StoreError>;
    /// The leased request's fetch is over (its result is being delivered):
    /// its site may take another fetch under `crawl.max_in_flight`. Until
    /// this (or the lease's end), the fetch counts as open.
    async fn fetched(&self, _lease_id: u64) {}
    /// Give a lease back now: its request is queued again as it was, for
    /// any worker (a clean stop, a result that cannot be delivered yet).
    async fn release(&self, lease_id: u64) -> Result<(), StoreError>;
    /// Push these leases' deadlines to `lease_ttl` from now: the worker
    /// holding them is alive and still busy. Leases already gone are
    /// skipped. Stores whose leases cannot expire need not do anything.
    async fn renew(&self, _lease_ids: &[u64]) -> Result<(), StoreError> {
        Ok(())
    }
    async fn counts(&self) -> Result<Counts, StoreError>;
    /// Periodic upkeep (reclaiming expired leases); every worker calls it
    /// each second, and the store paces it.
    async fn maintain(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Write what the store batches (the stats tally) before the process
    /// exits.
    async fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Notified when another process queues work into an empty frontier,
    /// for stores shared between processes. Without it, idle workers poll.
    fn work_signal(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        None
    }
    /// Notified (after [`Frontier::work_signal`] was asked for) when a
    /// domain's limit was lifted elsewhere: workers waiting on a site
    /// should pop again now.
    fn limit_signal(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        None
    }
}

/// One link considered for the frontier.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub fingerprint: u128,
    /// Registered domain, for the page caps.
    pub domain: String,
    /// The crawl's `domain_max_pages`.
    pub domain_cap: Option<u32>,
    /// `crawl.global_page_per_domain_limit`, across crawls.
    pub global_cap: Option<u32>,
    /// Bypass the seen check (seeds, `dont_filter`); still marked seen.
    pub force: bool,
}

#[async_trait]
pub trait DedupStore: Send + Sync {
    /// For each candidate, in order: `true` if it is admitted (new to the
    /// crawl and within its caps). Not only a decision: admitted ones are
    /// marked seen and counted in the store, in the same step.
    async fn admit(
        &self,
        crawl: &CrawlKey,
        candidates: &[Candidate],
    ) -> Result<Vec<bool>, StoreError>;

    /// A new run of `crawl` fires: forget what it has seen and its page
    /// counts, so the run reads every page again. (Only when no request of
    /// the last run is open.)
    async fn new_run(&self, _crawl: &CrawlKey) -> Result<(), StoreError> {
        Ok(())
    }

    /// Admit `jobs` (described by `candidates`, in the same order) and queue
    /// the admitted ones. A store shared between processes does both in one
    /// atomic step: a worker dying in between must not leave links marked
    /// seen but never queued. `origin` is the registered domain of the page
    /// the links are from ("" for a seed): a sharded store makes sure what
    /// it queued on other shards survives a failover before that page is
    /// acked on its own. Returns how many were queued.
    async fn admit_and_push(
        &self,
        frontier: &dyn Frontier,
        crawl: &CrawlKey,
        candidates: &[Candidate],
        jobs: Vec<Job>,
        _origin: &str,
    ) -> Result<usize, StoreError> {
        let admitted = self.admit(crawl, candidates).await?;
        let jobs: Vec<Job> = jobs
            .into_iter()
            .zip(admitted)
            .filter_map(|(j, ok)| ok.then_some(j))
            .collect();
        let n = jobs.len();
        if n > 0 {
            frontier.push(jobs).await?;
        }
        Ok(n)
    }
}
