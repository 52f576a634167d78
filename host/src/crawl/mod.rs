//! The crawl loop: workers take leased requests from the [`Frontier`] and
//! run each through the per-request flow in `page.rs`. The loop only knows
//! the store traits, so it is the same embedded or clustered.

mod download;
mod page;
mod revisit;
mod settle;
mod sitemaps;
mod spider;
#[cfg(test)]
mod tests;

use crate::archive::Archive;
use crate::backoff::Backoff;
use crate::bus::ResultSink;
use crate::config::Settings;
use crate::fetch::{Fetcher, Robots, RobotsCache};
use crate::links::domain;
use crate::plugins::Registry;
use crate::politeness::throttle::ThrottleStore;
use crate::render::Renderer;
use crate::request::{CrawlRequest, Job};
use crate::scheduler::{Candidate, DedupStore, Frontier, Lease, Pop, StoreError};
use crate::shutdown::Shutdown;
use crate::telemetry::{Event, Stats};
use crate::timeouts::{IDLE_POLL, IDLE_UPKEEP, IDLE_WAIT, STOP_MARGIN, UPKEEP};
use parking_lot::Mutex;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Pages one worker may have settling (delivered, then acked) while it
/// fetches the next.
const SETTLING_PER_WORKER: usize = 4;
/// Bodies all settling pages of a process may hold, in KiB (64 MiB): the
/// pipelining above never multiplies the memory hostile pages can take.
const SETTLING_KIB: usize = 64 * 1024;

/// Rule checks of a page's links done inline; more go to the blocking
/// pool (a check is a prefix compare: this is well under a millisecond).
const INLINE_ROBOTS_RULES: usize = 100_000;

/// A page's children are admitted this many per store call: one Redis
/// script of 250 links runs in about a millisecond.
const ADMIT_CHUNK: usize = 250;

/// Queue a crawl's seed. The seed always goes in (and counts as seen),
/// like the reference's direct enqueue, unless its domain has reached the
/// global per-domain cap (`global_cap`, which counts seeds too, so the cap
/// is exact). Returns whether it was queued.
pub async fn submit(
    frontier: &dyn Frontier,
    dedup: &dyn DedupStore,
    request: CrawlRequest,
    global_cap: u32,
) -> Result<bool, StoreError> {
    let job = request.into_seed();
    let cand = Candidate {
        fingerprint: job.fingerprint(),
        domain: domain::of_url(&job.url),
        domain_cap: None,
        global_cap: (global_cap > 0).then_some(global_cap),
        force: true,
    };
    let key = job.crawl.key();
    let n = dedup
        .admit_and_push(frontier, &key, &[cand], vec![job], "")
        .await?;
    Ok(n > 0)
}

/// Everything a worker needs; shared by all workers of a process.
pub struct Engine {
    pub frontier: Arc<dyn Frontier>,
    pub dedup: Arc<dyn DedupStore>,
    pub sink: Arc<dyn ResultSink>,
    /// Where throttle slots taken for requests never sent are given back.
    pub throttle: Arc<dyn ThrottleStore>,
    pub fetching: Fetching,
    pub registry: Arc<Registry>,
    pub settings: Arc<Settings>,
    pub stats: Arc<Stats>,
    /// Site pauses met, to be told as `domain.paused` by whoever drives
    /// runs (`crate::runs`).
    pub pauses: crate::events::pauses::Pauses,
    /// The loop's own state: wake-ups, stops, leases held, warnings given.
    state: LoopState,
}

/// How a page is got and kept: the HTTP client, robots.txt, the browser,
/// the WARC archive.
pub struct Fetching {
    pub fetcher: Fetcher,
    pub robots: Option<Arc<RobotsCache>>,
    /// The headless browser, if this worker renders (`render.enabled` and
    /// a browser installed).
    pub renderer: Option<Arc<Renderer>>,
    /// Every fetch written as WARC records (`warc.dir`), when on.
    pub archive: Option<Arc<Archive>>,
}

/// What the crawl loop keeps while it runs.
struct LoopState {
    wake: Notify,
    /// A lease ended here while no worker was mid-request: its site may
    /// take another fetch. Wakes a worker the frontier told to wait (a site
    /// at its in-flight cap or throttled). A worker mid-request pops as soon
    /// as it is done, and takes the slot then: waking another as well only
    /// sends it to find nothing (a round trip for nothing, in cluster mode).
    freed: Notify,
    /// Workers between a lease and handing its outcome on.
    busy: std::sync::atomic::AtomicUsize,
    done: AtomicBool,
    /// Stop taking work (a signal, or `run` finished).
    stop: Shutdown,
    /// The stop's grace is running out: give back what is still in flight.
    cancel: Shutdown,
    /// Leases this process holds, renewed while it works on them.
    held: Mutex<HashSet<u64>>,
    /// Plugins already warned about writing reserved result fields.
    warned: Mutex<HashSet<String>>,
    /// KiB of bodies the pages being settled may hold ([`SETTLING_KIB`]).
    settling_budget: Arc<tokio::sync::Semaphore>,
}

impl Engine {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        frontier: Arc<dyn Frontier>,
        dedup: Arc<dyn DedupStore>,
        sink: Arc<dyn ResultSink>,
        fetcher: Fetcher,
        throttle: Arc<dyn ThrottleStore>,
        registry: Arc<Registry>,
        settings: Arc<Settings>,
        stats: Arc<Stats>,
        archive: Option<Arc<Archive>>,
    ) -> Arc<Engine> {
        let robots = settings.crawl.obey_robots.then(|| {
            Arc::new(RobotsCache::new(
                fetcher.clone(),
                &settings.crawl.user_agent,
                Duration::from_secs(settings.crawl.robots_ttl),
                settings.crawl.robots_timeout,
                settings.crawl.robots_cache,
            ))
        });
        let renderer = Renderer::new(&settings, fetcher.clone(), stats.clone(), archive.clone());
        Arc::new(Engine {
            frontier,
            dedup,
            sink,
            throttle,
            fetching: Fetching {
                fetcher,
                robots,
                renderer,
                archive,
            },
            registry,
            settings,
            stats,
            pauses: Default::default(),
            state: LoopState {
                wake: Notify::new(),
                freed: Notify::new(),
                busy: std::sync::atomic::AtomicUsize::new(0),
                done: AtomicBool::new(false),
                stop: Shutdown::new(),
                cancel: Shutdown::new(),
                held: Mutex::new(HashSet::new()),
                warned: Mutex::new(HashSet::new()),
                settling_budget: Arc::new(tokio::sync::Semaphore::new(SETTLING_KIB)),
            },
        })
    }

    /// Queue a crawl's seed (see [`submit`]).
    pub async fn submit(&self, request: CrawlRequest) -> Result<bool, StoreError> {
        let cap = self.settings.crawl.global_page_per_domain_limit;
        let queued = submit(&*self.frontier, &*self.dedup, request, cap).await?;
        self.wake_for(1);
        Ok(queued)
    }

    /// `n` requests were queued: wake as many waiting workers (not all of
    /// them: each wakes to a pop, a round trip in cluster mode, and when
    /// sites are at their in-flight cap most would find nothing).
    pub(crate) fn wake_for(&self, n: usize) {
        for _ in 0..n.min(self.settings.crawl.concurrency) {
            self.state.wake.notify_one();
        }
    }

    /// Queue children (with their parsed URLs) after robots, dedup and
    /// caps. `origin` is the registered domain of the page they are from.
    async fn enqueue_children(
        &self,
        mut children: Vec<(Job, url::Url)>,
        origin: &str,
    ) -> Result<usize, StoreError> {
        self.drop_robots_denied(&mut children).await;
        let Some((first, _)) = children.first() else {
            return Ok(0);
        };
        let key = first.crawl.key();
        let cap = first.crawl.domain_max_pages;
        let global = self.settings.crawl.global_page_per_domain_limit;
        let global_cap = (global > 0).then_some(global);
        let mut n = 0;
        // Chunks, so no one store call (a Redis script blocks every client
        // while it runs) grows with the page. Each chunk is atomic; a worker
        // dying between chunks has not acked the page, which is crawled
        // again and its links admitted again (dedup skips those queued).
        while !children.is_empty() {
            let rest = children.split_off(children.len().min(ADMIT_CHUNK));
            let chunk = std::mem::replace(&mut children, rest);
            let (cands, chunk): (Vec<Candidate>, Vec<Job>) = chunk
                .into_iter()
                .map(|(j, url)| {
                    let cand = Candidate {
                        fingerprint: j.fingerprint(),
                        domain: domain::of_parsed(&url),
                        domain_cap: cap,
                        global_cap,
                        force: j.dont_filter,
                    };
                    (cand, j)
                })
                .unzip();
            match self
                .dedup
                .admit_and_push(&*self.frontier, &key, &cands, chunk, origin)
                .await
            {
                Ok(k) => n += k,
                // The crawl's state ended and a pair with the same key took
                // it: this crawl's links must not join another's.
                Err(StoreError::Collision) => {
                    tracing::warn!(appid = %key.appid, crawlid = %key.crawlid, "another crawl holds this crawl's key; its links are not queued");
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        self.wake_for(n);
        Ok(n)
    }

    /// Links robots.txt already forbids are not queued: they would only
    /// spend a throttle slot to be refused at fetch time. Matching many
    /// links against a large robots.txt takes a while, so past
    /// [`INLINE_ROBOTS_RULES`] rule checks it runs on the blocking pool; if
    /// that fails, every link is kept (and checked at fetch time).
    async fn drop_robots_denied(&self, children: &mut Vec<(Job, url::Url)>) {
        let Some(cache) = &self.fetching.robots else {
            return;
        };
        // Each child's URL with its origin's rules, when known.
        let known: Vec<Option<(url::Url, Arc<Robots>)>> = children
            .iter()
            .map(|(_, url)| Some((url.clone(), cache.rules(url)?)))
            .collect();
        let denied = |known: &[Option<(url::Url, Arc<Robots>)>]| -> Vec<bool> {
            known
                .iter()
                .map(|k| k.as_ref().is_some_and(|(u, r)| !r.allowed(u)))
                .collect()
        };
        let work: usize = known.iter().flatten().map(|(_, r)| r.rule_count()).sum();
        let denied = if work <= INLINE_ROBOTS_RULES {
            denied(&known)
        } else {
            match tokio::task::spawn_blocking(move || denied(&known)).await {
                Ok(denied) => denied,
                Err(e) => {
                    // Nothing lost: every link is kept and checked at fetch time.
                    tracing::error!(error = %e, "checking links against robots.txt failed; keeping them all");
                    return;
                }
            }
        };
        if denied.len() != children.len() {
            return;
        }
        let mut flags = denied.into_iter();
        let before = children.len();
        children.retain(|_| !flags.next().unwrap_or(false));
        let dropped = (before - children.len()) as u64;
        self.stats.emit(Event::RobotsDenied { requests: dropped });
    }

    /// Run `concurrency` workers. With `until_done`, return once nothing is
    /// queued or in flight; otherwise run until `stop`. On `stop`, workers
    /// take no new request; those in flight have most of
    /// `process.shutdown_grace` to finish, then their leases go back to
    /// the queue at once. Results are flushed before this returns.
    pub async fn run(self: &Arc<Self>, until_done: bool, stop: Shutdown) {
        // Announce this worker (heartbeat) and reclaim before working.
        if let Err(e) = self.frontier.maintain().await {
            tracing::warn!(error = %e, "store upkeep failed; retrying");
        }
        let upkeep = tokio::spawn(self.clone().upkeep(until_done));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..self.settings.crawl.concurrency {
            let me = self.clone();
            tasks.spawn(async move { me.worker(until_done).await });
        }
        let all_done = async { while tasks.join_next().await.is_some() {} };
        tokio::pin!(all_done);
        tokio::select! {
            _ = &mut all_done => {}
            _ = stop.wait() => {
                self.state.stop.trigger();
                self.finish();
                // Keep a margin of the grace to release, flush and exit.
                let grace = self.settings.process.shutdown_grace;
                let finish = grace.saturating_sub(STOP_MARGIN.min(grace / 2));
                if tokio::time::timeout(finish, &mut all_done).await.is_err() {
                    tracing::info!(in_flight = self.state.held.lock().len(), "grace running out: giving requests in flight back to the queue");
                    self.state.cancel.trigger();
                    all_done.await;
                }
            }
        }
        // Renewals stop only now: a request still being settled above is
        // never left with a lapsing lease.
        upkeep.abort();
        if let Err(e) = self.sink.flush().await {
            tracing::error!(error = %e, "flushing results failed");
        }
        // Stats only: a tally Redis cannot take now is logged and dropped.
        if let Err(e) = self.frontier.flush().await {
            tracing::warn!(error = %e, "the stats of the last second were not written");
        }
        if let Some(r) = &self.fetching.renderer {
            r.shutdown().await;
        }
        // Every lease settled has its records synced: sealing makes the
        // files whole and indexed for readers.
        if let Some(a) = &self.fetching.archive {
            if let Err(e) = a.close() {
                tracing::error!(error = %e, "WARC files not sealed; the next start seals them");
            }
            let left = a.uploaded(self.settings.process.shutdown_grace).await;
            if left > 0 {
                tracing::warn!(
                    files = left,
                    "sealed WARC files not uploaded yet; the next start uploads them"
                );
            }
        }
    }

    /// Store upkeep (heartbeat, lease reclaim; the store paces it) every
    /// second, lease renewal every third of `lease_ttl`, and the wake-up of
    /// idle workers when another process queued work: on the store's
    /// signal if it has one (then the queue is looked at only every
    /// `IDLE_UPKEEP`, in case a signal was lost), else by polling it. A
    /// finite run polls regardless, to see when it is done.
    async fn upkeep(self: Arc<Self>, until_done: bool) {
        let renew_every = self.settings.crawl.lease_ttl / 3;
        let mut renewed = tokio::time::Instant::now();
        let upkeep_every = (UPKEEP.as_millis() / IDLE_POLL.as_millis()).max(1) as u32;
        let signal = self.frontier.work_signal();
        let lifted = self.frontier.limit_signal();
        let mut counted = tokio::time::Instant::now();
        let mut tick = 0u32;
        let mut next = tokio::time::Instant::now() + IDLE_POLL;
        loop {
            // The tick keeps its own deadline, so wake-ups cannot starve it.
            tokio::select! {
                _ = tokio::time::sleep_until(next) => next += IDLE_POLL,
                _ = async { match &signal {
                    Some(s) => s.notified().await,
                    None => std::future::pending().await,
                } } => {
                    self.state.wake.notify_waiters();
                    continue;
                }
                _ = async { match &lifted {
                    Some(s) => s.notified().await,
                    None => std::future::pending().await,
                } } => {
                    // A domain's limit lifted: workers waiting on a site
                    // look again too.
                    self.state.wake.notify_waiters();
                    self.state.freed.notify_waiters();
                    continue;
                }
            }
            tick += 1;
            if renewed.elapsed() >= renew_every {
                renewed = tokio::time::Instant::now();
                let ids: Vec<u64> = self.state.held.lock().iter().copied().collect();
                if let Err(e) = self.frontier.renew(&ids).await {
                    tracing::warn!(error = %e, leases = ids.len(), "could not renew leases; retrying");
                }
            }
            if tick.is_multiple_of(upkeep_every) {
                if let Err(e) = self.frontier.maintain().await {
                    tracing::warn!(error = %e, "store upkeep failed; retrying");
                }
            }
            if !until_done && signal.is_some() && counted.elapsed() < IDLE_UPKEEP {
                continue;
            }
            counted = tokio::time::Instant::now();
            match self.frontier.counts().await {
                Ok(c) if c.queued > 0 => self.state.wake.notify_waiters(),
                Ok(c) if until_done && c.in_flight == 0 => self.finish(),
                _ => {}
            }
        }
    }

    /// One of `concurrency` workers: pop, process, and hand the outcome to
    /// a settling task (delivery, then ack) while it pops the next. Up to
    /// `SETTLING_PER_WORKER` pages per worker settle at once, so a sink
    /// that batches (Kafka's linger, the broker's ack) costs latency, not
    /// throughput.
    async fn worker(self: Arc<Self>, until_done: bool) {
        let mut settling = tokio::task::JoinSet::new();
        self.clone().work(until_done, &mut settling).await;
        while let Some(r) = settling.join_next().await {
            if let Err(e) = r {
                tracing::error!(error = %e, "settling a page failed");
            }
        }
    }

    async fn work(self: Arc<Self>, until_done: bool, settling: &mut tokio::task::JoinSet<()>) {
        let mut backoff = Backoff::standard();
        // With a wake-up signal, an idle worker waits for it (the upkeep
        // loop relays it) rather than popping again on a timer.
        let idle_wait = if self.frontier.work_signal().is_some() {
            IDLE_UPKEEP * 120
        } else {
            IDLE_WAIT
        };
        loop {
            let (queued, freed) = (self.state.wake.notified(), self.state.freed.notified());
            tokio::pin!(queued, freed);
            queued.as_mut().enable();
            freed.as_mut().enable();
            if self.state.done.load(Ordering::SeqCst) {
                return;
            }
            let (wait, idle) = match self.frontier.pop().await {
                Ok(Pop::Leased(lease)) => {
                    backoff.reset();
                    if let Some(outcome) = self.process_leased(&lease).await {
                        while settling.len() >= SETTLING_PER_WORKER {
                            if let Some(Err(e)) = settling.join_next().await {
                                tracing::error!(error = %e, "settling a page failed");
                            }
                        }
                        let kib = (outcome.body_bytes() / 1024 + 1).min(SETTLING_KIB) as u32;
                        let budget = self.state.settling_budget.clone();
                        let Ok(permit) = budget.acquire_many_owned(kib).await else {
                            return; // never closed
                        };
                        let me = self.clone();
                        settling.spawn(async move {
                            me.settle_leased(lease, outcome).await;
                            drop(permit);
                        });
                    }
                    continue;
                }
                Ok(Pop::Wait(d)) => {
                    self.stats.emit(Event::EmptyPop);
                    (d, false)
                }
                Ok(Pop::Idle) => {
                    if until_done && self.is_drained().await {
                        self.finish();
                        return;
                    }
                    (idle_wait, true)
                }
                Err(e) => {
                    let wait = backoff.next_delay();
                    tracing::warn!(error = %e, retry_in = ?wait, "frontier unavailable, retrying");
                    (wait, false)
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = &mut queued, if idle => {}
                _ = &mut freed => {}
                _ = self.state.stop.wait() => {}
            }
        }
    }

    /// A leased request's stages, its lease renewed all along. `None`
    /// when it was given back (a store error, or the stop's grace ran out).
    async fn process_leased(&self, lease: &Lease) -> Option<page::Outcome> {
        self.state.held.lock().insert(lease.id);
        self.state.busy.fetch_add(1, Ordering::SeqCst);
        let r = tokio::select! {
            r = self.process(&lease.job) => r.map_err(Some),
            _ = self.state.cancel.wait() => Err(None),
        };
        self.state.busy.fetch_sub(1, Ordering::SeqCst);
        // Delivery is not a fetch: the site may take another meanwhile;
        // unless it asked us to slow down, which the settling records.
        if !matches!(r, Ok(page::Outcome::SlowDown { .. })) {
            self.frontier.fetched(lease.id).await;
        }
        match r {
            Ok(outcome) => Some(outcome),
            Err(given_back) => {
                self.give_back(lease.id, given_back).await;
                None
            }
        }
    }

    /// Deliver and ack (or retry, or drop) a processed request; given back
    /// to the queue if the store fails or the stop's grace runs out first.
    async fn settle_leased(&self, lease: Lease, outcome: page::Outcome) {
        let id = lease.id;
        let given_back = tokio::select! {
            r = self.settle(lease, outcome) => match r {
                Ok(()) => {
                    self.state.held.lock().remove(&id);
                    self.slot_freed();
                    return;
                }
                Err(e) => Some(e),
            },
            _ = self.state.cancel.wait() => None,
        };
        self.give_back(id, given_back).await;
    }

    /// Put a lease back in the queue at once.
    async fn give_back(&self, id: u64, error: Option<StoreError>) {
        if let Some(e) = error {
            tracing::warn!(error = %e, "store error while handling a request; giving it back");
        }
        self.stats.emit(Event::Released);
        if let Err(e) = self.frontier.release(id).await {
            // Not renewed from here on, the lease runs out and another
            // worker crawls the request: late, but not lost.
            tracing::warn!(error = %e, "could not give a lease back; it will expire after crawl.lease_ttl");
        }
        self.state.held.lock().remove(&id);
        self.slot_freed();
    }

    /// A lease ended: see `freed`.
    fn slot_freed(&self) {
        if self.state.busy.load(Ordering::SeqCst) == 0 {
            self.state.freed.notify_one();
        }
    }

    /// The run is over: every worker stops waiting.
    fn finish(&self) {
        self.state.done.store(true, Ordering::SeqCst);
        self.state.wake.notify_waiters();
        self.state.freed.notify_waiters();
    }

    async fn is_drained(&self) -> bool {
        matches!(self.frontier.counts().await, Ok(c) if c.queued == 0 && c.in_flight == 0)
    }

    pub fn is_done(&self) -> bool {
        self.state.done.load(Ordering::SeqCst)
    }
}
