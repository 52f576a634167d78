//! A crawl's runs as they happen: requests accepted, scheduled runs fired
//! when due (by the pure policy of `crate::schedule`), each run's start
//! and end read from the store, pages no run reached reported `removed`,
//! and all of it told as events (`crate::events`).
//!
//! Embedded, schedules live in this process for its life. In a cluster
//! the same decisions are made by the control plane, with each fire a
//! compare-and-set in the store.

use crate::crawl::Engine;
use crate::events::{Event, EventSink, Kind, Stats};
use crate::notify::Notifier;
use crate::request::{CrawlKey, CrawlRequest};
use crate::result::now_unix;
use crate::schedule::{decide, Decision, Schedule, Skipped, State};
use crate::scheduler::{RunNews, StoreError};
use crate::shutdown::Shutdown;
use jiff::Timestamp;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// How often schedules and the store's news are looked at: an interval
/// schedule fires within this of its time.
const TICK: Duration = Duration::from_millis(100);

/// One scheduled crawl.
struct Scheduled {
    /// The request as accepted: each run's seed is made from it.
    request: CrawlRequest,
    schedule: Schedule,
    state: State,
    /// No run will fire again.
    ended: bool,
}

pub struct Runs {
    engine: Arc<Engine>,
    events: Arc<dyn EventSink>,
    /// POSTs events to the crawls' webhooks.
    notifier: Option<Arc<Notifier>>,
    schedules: Mutex<HashMap<CrawlKey, Scheduled>>,
    /// Every crawl's request as accepted (for the seed a removed page's
    /// result is made from, and whether its results carry `run`).
    accepted: Mutex<HashMap<CrawlKey, CrawlRequest>>,
}

impl Runs {
    pub fn new(
        engine: Arc<Engine>,
        events: Arc<dyn EventSink>,
        notifier: Option<Arc<Notifier>>,
    ) -> Runs {
        Runs {
            engine,
            events,
            notifier,
            schedules: Mutex::new(HashMap::new()),
            accepted: Mutex::new(HashMap::new()),
        }
    }

    /// Take a validated request: a scheduled one fires when due (its first
    /// run at once for an interval); any other is queued now. Returns
    /// whether it was queued or scheduled.
    pub async fn accept(&self, request: CrawlRequest) -> Result<bool, StoreError> {
        let key = CrawlKey {
            appid: request.appid.clone(),
            crawlid: request.crawlid.clone(),
        };
        let run = u32::from(request.schedule.is_some() || request.revisit.is_some());
        self.accepted.lock().insert(key.clone(), request.clone());
        self.emit(event(Kind::Accepted, &key, run)).await;
        if let Some(schedule) = request.schedule() {
            let state = State {
                anchor: Timestamp::now(),
                last: None,
                runs: 0,
                running: false,
                pending: None,
                paused: false,
            };
            self.schedules.lock().insert(
                key,
                Scheduled {
                    request,
                    schedule,
                    state,
                    ended: false,
                },
            );
            self.fire_due().await?;
            return Ok(true);
        }
        self.engine.submit(request).await
    }

    /// Look at schedules and the store's news until `stop`; with
    /// `finished`, trigger it once every schedule has ended and no run is
    /// open.
    pub async fn drive(&self, stop: Shutdown, finished: Option<Shutdown>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = stop.wait() => return,
            }
            if let Err(e) = self.tick().await {
                // The next tick asks again: news stay in the store until read.
                tracing::warn!(error = %e, "store unavailable for the runs' news; retrying");
                continue;
            }
            if let Some(f) = &finished {
                if self.all_ended() {
                    f.trigger();
                }
            }
        }
    }

    /// Read the store's news and fire what is due.
    pub async fn tick(&self) -> Result<(), StoreError> {
        for news in self.engine.frontier.run_news().await? {
            self.news(news).await?;
        }
        self.fire_due().await
    }

    /// Every schedule has ended and none of their runs is open.
    pub fn all_ended(&self) -> bool {
        self.schedules
            .lock()
            .values()
            .all(|s| s.ended && !s.state.running)
    }

    async fn news(&self, news: RunNews) -> Result<(), StoreError> {
        match news {
            RunNews::Started { crawl, run } => self.emit(event(Kind::Started, &crawl, run)).await,
            RunNews::Completed {
                crawl,
                run,
                mut stats,
            } => {
                self.sweep(&crawl, run, &mut stats).await?;
                let ok = stats
                    .by_status
                    .iter()
                    .any(|(class, n)| *n > 0 && (class == "2xx" || class == "3xx"));
                let (kind, reason) = if ok {
                    (Kind::Completed, "done")
                } else {
                    (Kind::Failed, "no page succeeded")
                };
                let mut e = event(kind, &crawl, run);
                e.reason = Some(reason.into());
                e.stats = Some(stats);
                self.emit(e).await;
                let ended = {
                    let mut schedules = self.schedules.lock();
                    schedules.get_mut(&crawl).map(|s| {
                        s.state.running = false;
                        s.ended
                    })
                };
                if ended == Some(true) {
                    self.engine.frontier.forget_pages(&crawl).await?;
                }
            }
        }
        Ok(())
    }

    /// After a later run of a revisited crawl: its pages the run did not
    /// reach are reported `removed`, and counted.
    async fn sweep(&self, crawl: &CrawlKey, run: u32, stats: &mut Stats) -> Result<(), StoreError> {
        if run < 2 {
            return Ok(());
        }
        let Some(request) = self.accepted.lock().get(crawl).cloned() else {
            return Ok(());
        };
        if request.revisit.is_none() {
            return Ok(());
        }
        let gone = self.engine.frontier.sweep(crawl, run).await?;
        if gone.is_empty() {
            return Ok(());
        }
        let seed = request.into_run(run);
        self.engine.deliver_removed(&seed, &gone).await;
        *stats.change.entry("removed".into()).or_default() += gone.len() as u64;
        Ok(())
    }

    /// Carry out each schedule's decision for now.
    async fn fire_due(&self) -> Result<(), StoreError> {
        let now = Timestamp::now();
        let keys: Vec<CrawlKey> = self.schedules.lock().keys().cloned().collect();
        for key in keys {
            let decision = {
                let schedules = self.schedules.lock();
                let Some(s) = schedules.get(&key).filter(|s| !s.ended) else {
                    continue;
                };
                let name = format!("{}/{}", key.appid, key.crawlid);
                decide(&s.schedule, &s.state, now, &name)
            };
            match decision {
                Decision::Wait(_) => {}
                Decision::Ended => {
                    if let Some(s) = self.schedules.lock().get_mut(&key) {
                        s.ended = true;
                    }
                    tracing::info!(appid = %key.appid, crawlid = %key.crawlid, "schedule ended");
                }
                Decision::Skip { due, why } => {
                    let runs = {
                        let mut schedules = self.schedules.lock();
                        let Some(s) = schedules.get_mut(&key) else {
                            continue;
                        };
                        s.state.last = Some(due);
                        s.state.runs
                    };
                    let mut e = event(Kind::Skipped, &key, runs + 1);
                    e.about = Some(due.as_second().to_string());
                    e.reason = Some(
                        match why {
                            Skipped::Overlap => "overlap",
                            Skipped::Misfire => "misfire",
                        }
                        .into(),
                    );
                    self.emit(e).await;
                }
                Decision::Queue { due } => {
                    if let Some(s) = self.schedules.lock().get_mut(&key) {
                        s.state.last = Some(due);
                        s.state.pending = Some(due);
                    }
                }
                // The embedded frontier cannot cut a run short: a run
                // that would replace the current one waits for its end
                // instead, as with `overlap: queue`.
                Decision::Fire { due, replace: true } => {
                    if let Some(s) = self.schedules.lock().get_mut(&key) {
                        s.state.last = Some(due);
                        s.state.pending = Some(due);
                    }
                }
                Decision::Fire { due, .. } => self.fire(&key, due).await?,
            }
        }
        Ok(())
    }

    /// Fire the next run of `key`'s schedule, for fire time `due`.
    async fn fire(&self, key: &CrawlKey, due: Timestamp) -> Result<(), StoreError> {
        let (request, run) = {
            let mut schedules = self.schedules.lock();
            let Some(s) = schedules.get_mut(key) else {
                return Ok(());
            };
            s.state.runs += 1;
            s.state.last = Some(due);
            s.state.pending = None;
            s.state.running = true;
            (s.request.clone(), s.state.runs)
        };
        let mut e = event(Kind::Fired, key, run);
        e.about = Some(due.as_second().to_string());
        self.emit(e).await;
        let known = match request.revisit {
            Some(_) => self.engine.frontier.known_pages(key).await?,
            None => Vec::new(),
        };
        if run > 1 {
            self.engine.dedup.new_run(key).await?;
        }
        let seed = request.into_run(run);
        let queued = self.engine.submit_run(seed, &known).await?;
        tracing::info!(appid = %key.appid, crawlid = %key.crawlid, run, queued, "run fired");
        if queued == 0 {
            // Nothing could be queued (the global page cap): the run is
            // over as soon as it began.
            let mut e = event(Kind::Failed, key, run);
            e.reason = Some("every seed refused".into());
            self.emit(e).await;
            if let Some(s) = self.schedules.lock().get_mut(key) {
                s.state.running = false;
            }
        }
        Ok(())
    }

    async fn emit(&self, e: Event) {
        if let Err(err) = self.events.send(&e).await {
            // Events tell; they hold no work: the crawl goes on.
            tracing::error!(event = e.event.name(), crawlid = %e.crawlid, error = %err, "event not written");
        }
        let key = CrawlKey {
            appid: e.appid.clone(),
            crawlid: e.crawlid.clone(),
        };
        let webhook = self.accepted.lock().get(&key).and_then(|r| r.webhook());
        if let (Some(n), Some(w)) = (&self.notifier, webhook) {
            n.notify(&e, &w);
        }
    }
}

fn event(kind: Kind, crawl: &CrawlKey, run: u32) -> Event {
    Event {
        event: kind,
        appid: crawl.appid.clone(),
        crawlid: crawl.crawlid.clone(),
        run: run.max(1),
        server_time: now_unix(),
        reason: None,
        stats: None,
        about: None,
    }
}
