//! The crawl loop: workers take leased requests from the [`Frontier`] and
//! run each through the per-request flow in `page.rs`. The loop only knows
//! the store traits, so it is the same embedded or clustered.

mod page;
pub mod result;

use crate::bus::ResultSink;
use crate::config::Settings;
use crate::fetch::{Fetcher, RobotsCache};
use crate::plugins::Registry;
use crate::request::{CrawlRequest, Job};
use crate::scheduler::{domain, Candidate, DedupStore, Frontier, Pop, StoreError};
use crate::stats::Stats;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Queue a crawl's seed. The seed always goes in (and counts as seen),
/// like the reference's direct enqueue.
pub async fn submit(
    frontier: &dyn Frontier,
    dedup: &dyn DedupStore,
    request: CrawlRequest,
) -> Result<(), StoreError> {
    let job = request.into_seed();
    let cand = Candidate {
        fingerprint: job.fingerprint(),
        domain: domain::of_url(&job.url),
        domain_cap: None,
        global_cap: None,
        force: true,
    };
    let key = job.crawl.key();
    dedup
        .admit_and_push(frontier, &key, &[cand], vec![job])
        .await?;
    Ok(())
}

/// How often a process checks the store for work queued by others.
const IDLE_POLL: Duration = Duration::from_millis(200);

/// Everything a worker needs; shared by all workers of a process.
pub struct Engine {
    pub frontier: Arc<dyn Frontier>,
    pub dedup: Arc<dyn DedupStore>,
    pub sink: Arc<dyn ResultSink>,
    pub fetcher: Fetcher,
    pub robots: Option<RobotsCache>,
    pub registry: Arc<Registry>,
    pub settings: Arc<Settings>,
    pub stats: Arc<Stats>,
    wake: Notify,
    done: AtomicBool,
}

impl Engine {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        frontier: Arc<dyn Frontier>,
        dedup: Arc<dyn DedupStore>,
        sink: Arc<dyn ResultSink>,
        fetcher: Fetcher,
        registry: Arc<Registry>,
        settings: Arc<Settings>,
        stats: Arc<Stats>,
    ) -> Arc<Engine> {
        let robots = settings.crawl.obey_robots.then(|| {
            RobotsCache::new(
                fetcher.clone(),
                &settings.crawl.user_agent,
                Duration::from_secs(settings.crawl.robots_ttl),
            )
        });
        Arc::new(Engine {
            frontier,
            dedup,
            sink,
            fetcher,
            robots,
            registry,
            settings,
            stats,
            wake: Notify::new(),
            done: AtomicBool::new(false),
        })
    }

    /// Queue a crawl's seed (see [`submit`]).
    pub async fn submit(&self, request: CrawlRequest) -> Result<(), StoreError> {
        submit(&*self.frontier, &*self.dedup, request).await?;
        self.wake.notify_waiters();
        Ok(())
    }

    /// Queue children after dedup and caps, in one call to each store.
    async fn enqueue_children(&self, mut children: Vec<Job>) -> Result<usize, StoreError> {
        // Links robots.txt already forbids are not queued: they would only
        // spend a throttle slot to be refused at fetch time.
        if let Some(robots) = &self.robots {
            let before = children.len();
            children.retain(|j| {
                url::Url::parse(&j.url).ok().and_then(|u| robots.known(&u)) != Some(false)
            });
            let denied = (before - children.len()) as u64;
            self.stats
                .robots_denied
                .fetch_add(denied, std::sync::atomic::Ordering::Relaxed);
        }
        let Some(first) = children.first() else {
            return Ok(0);
        };
        let key = first.crawl.key();
        let cap = first.crawl.domain_max_pages;
        let global = self.settings.crawl.global_page_per_domain_limit;
        let global_cap = (global > 0).then_some(global);
        let cands: Vec<Candidate> = children
            .iter()
            .map(|j| Candidate {
                fingerprint: j.fingerprint(),
                domain: domain::of_url(&j.url),
                domain_cap: cap,
                global_cap,
                force: j.dont_filter,
            })
            .collect();
        let n = self
            .dedup
            .admit_and_push(&*self.frontier, &key, &cands, children)
            .await?;
        if n > 0 {
            self.wake.notify_waiters();
        }
        Ok(n)
    }

    /// Run `concurrency` workers. With `until_done`, return once nothing is
    /// queued or in flight; otherwise run until `stop` is notified.
    pub async fn run(self: &Arc<Self>, until_done: bool, stop: Arc<Notify>) {
        let mut tasks = tokio::task::JoinSet::new();
        // Upkeep (lease reclaim) every second, and one poller per process
        // that wakes idle workers when another process queued work, so
        // idle workers do not each poll the store.
        // Announce this worker (heartbeat) and reclaim before working.
        if let Err(e) = self.frontier.maintain().await {
            tracing::warn!(error = %e, "store upkeep failed; retrying");
        }
        let upkeep = {
            let me = self.clone();
            tokio::spawn(async move {
                let mut tick = 0u32;
                loop {
                    tokio::time::sleep(IDLE_POLL).await;
                    tick += 1;
                    if tick % 5 == 0 {
                        if let Err(e) = me.frontier.maintain().await {
                            tracing::warn!(error = %e, "store upkeep failed; retrying");
                        }
                    }
                    match me.frontier.counts().await {
                        Ok(c) if c.queued > 0 => me.wake.notify_waiters(),
                        Ok(c) if until_done && c.in_flight == 0 => {
                            me.done.store(true, Ordering::SeqCst);
                            me.wake.notify_waiters();
                        }
                        _ => {}
                    }
                }
            })
        };
        for _ in 0..self.settings.crawl.concurrency {
            let me = self.clone();
            tasks.spawn(async move { me.worker(until_done).await });
        }
        tokio::select! {
            _ = async { while tasks.join_next().await.is_some() {} } => {}
            _ = stop.notified() => {
                self.done.store(true, Ordering::SeqCst);
                self.wake.notify_waiters();
                while tasks.join_next().await.is_some() {}
            }
        }
        upkeep.abort();
        if let Err(e) = self.sink.flush().await {
            tracing::error!(error = %e, "flushing results failed");
        }
    }

    async fn worker(self: Arc<Self>, until_done: bool) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.done.load(Ordering::SeqCst) {
                return;
            }
            let wait = match self.frontier.pop().await {
                Ok(Pop::Leased(lease)) => {
                    backoff = Duration::from_millis(100);
                    if let Err(e) = self.process(lease).await {
                        tracing::warn!(error = %e, "store error while processing a request; it stays leased and will be retried");
                    }
                    continue;
                }
                Ok(Pop::Wait(d)) => d,
                Ok(Pop::Idle) => {
                    if until_done && self.is_drained().await {
                        self.done.store(true, Ordering::SeqCst);
                        self.wake.notify_waiters();
                        return;
                    }
                    Duration::from_secs(5)
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "frontier unavailable, retrying");
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    backoff
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = &mut notified => {}
            }
        }
    }

    async fn is_drained(&self) -> bool {
        matches!(self.frontier.counts().await, Ok(c) if c.queued == 0 && c.in_flight == 0)
    }

    pub fn is_done(&self) -> bool {
        self.done.load(Ordering::SeqCst)
    }
}
