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
use crate::notify::{Notifier, Webhook};
use crate::request::{CrawlKey, CrawlRequest};
use crate::schedule::{decide, Decision, Skipped};
use crate::scheduler::{Row, RunNews, ScheduleBook, StoreError};
use crate::shutdown::Shutdown;

mod lives;
use jiff::Timestamp;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// How often schedules and the store's news are looked at: an interval
/// schedule fires within this of its time.
const TICK: Duration = Duration::from_millis(100);
/// A run whose firer stopped before queuing its seeds counts as over
/// this long after it fired (seeds are queued within a second).
const FIRING: Duration = Duration::from_secs(30);
/// How often a shared store's crawls in progress are looked at: a crawl
/// that is not scheduled is told over within this of its end.
const LIVES: Duration = Duration::from_secs(1);
/// With no schedule live (none kept, or all ended), the book is read this
/// seldom: an idle worker on Redis then costs it a command per 10 s.
const IDLE: Duration = Duration::from_secs(10);

pub struct Runs {
    engine: Arc<Engine>,
    events: Arc<dyn EventSink>,
    /// POSTs events to the crawls' webhooks.
    notifier: Option<Arc<Notifier>>,
    book: Arc<dyn ScheduleBook>,
    /// Requests accepted here that are not scheduled (for their webhook).
    accepted: Mutex<HashMap<CrawlKey, CrawlRequest>>,
    /// Crawls of a shared store's lives told accepted here, by when they
    /// were noted, with their webhooks (`lives.rs`).
    told: Mutex<HashMap<CrawlKey, (i64, Option<Webhook>)>>,
    /// Schedules' requests as read from the book (JSON), parsed once.
    requests: Mutex<HashMap<CrawlKey, (String, Arc<CrawlRequest>)>>,
}

impl Runs {
    pub fn new(
        engine: Arc<Engine>,
        events: Arc<dyn EventSink>,
        notifier: Option<Arc<Notifier>>,
        book: Arc<dyn ScheduleBook>,
    ) -> Runs {
        Runs {
            engine,
            events,
            notifier,
            book,
            accepted: Mutex::new(HashMap::new()),
            told: Mutex::default(),
            requests: Mutex::new(HashMap::new()),
        }
    }

    /// Take a validated request: a scheduled one is kept in the book and
    /// fires when due (its first run at once for an interval); any other
    /// is queued now. Returns whether it was queued or scheduled.
    pub async fn accept(&self, request: CrawlRequest) -> Result<bool, StoreError> {
        let key = CrawlKey {
            appid: request.appid.clone(),
            crawlid: request.crawlid.clone(),
        };
        let run = u32::from(request.schedule.is_some() || request.revisit.is_some());
        if request.schedule.is_some() {
            let json = serde_json::to_string(&request).expect("plain struct serialises");
            self.requests
                .lock()
                .insert(key.clone(), (json.clone(), Arc::new(request)));
            self.book.keep(&key, &json, Timestamp::now()).await?;
            self.emit(event(Kind::Accepted, &key, run)).await;
            self.fire_due(None).await?;
            return Ok(true);
        }
        self.accepted.lock().insert(key.clone(), request.clone());
        let webhook = request.webhook.clone();
        let queued = self.engine.submit(request).await?;
        // A shared store notes the crawl: whichever process drives runs
        // tells its acceptance and its end (`lives.rs`).
        if !(queued && self.book.alive(&key, webhook.as_ref()).await?) {
            self.emit(event(Kind::Accepted, &key, run)).await;
        }
        Ok(queued)
    }

    /// Look at schedules, the store's news and its crawls in progress
    /// until `stop`; with
    /// `finished`, trigger it once every schedule has ended and no run is
    /// open.
    pub async fn drive(&self, stop: Shutdown, finished: Option<Shutdown>) {
        let mut live = true;
        let mut looked = tokio::time::Instant::now();
        let mut lives_looked = tokio::time::Instant::now();
        let mut lives_seen = true;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = stop.wait() => return,
            }
            // Each second while crawls are in progress; as seldom as the
            // book while none is (an idle worker's cost stays flat).
            let every = if lives_seen { LIVES } else { IDLE };
            if lives_looked.elapsed() >= every {
                lives_looked = tokio::time::Instant::now();
                match self.look_lives().await {
                    Ok(n) => lives_seen = n > 0,
                    // Noted in the store: the next look tells them.
                    Err(e) => {
                        tracing::warn!(error = %e, "store unavailable for the crawls in progress; retrying")
                    }
                }
            }
            match self.engine.frontier.run_news().await {
                Ok(all) => {
                    for news in all {
                        if let Err(e) = self.news(news).await {
                            tracing::warn!(error = %e, "store unavailable while telling a run's end");
                        }
                    }
                }
                // News not read stays in the store: the next tick reads it.
                Err(e) => {
                    tracing::warn!(error = %e, "store unavailable for the runs' news; retrying")
                }
            }
            self.tell_pauses().await;
            // A schedule accepted here reads the book at once (`accept`);
            // one kept by another process is seen within IDLE.
            if !live && looked.elapsed() < IDLE {
                continue;
            }
            looked = tokio::time::Instant::now();
            match self.look().await {
                Ok(l) => live = l,
                Err(e) => {
                    // The next look asks again: the book is in the store.
                    tracing::warn!(error = %e, "store unavailable for the schedules; retrying");
                    continue;
                }
            }
            if let Some(f) = &finished {
                if !live {
                    f.trigger();
                }
            }
        }
    }

    /// Read the store's news, notice runs over, and fire what is due.
    pub async fn tick(&self) -> Result<(), StoreError> {
        for news in self.engine.frontier.run_news().await? {
            self.news(news).await?;
        }
        self.tell_pauses().await;
        self.look().await.map(|_| ())
    }

    /// Tell the site pauses the crawl loop met (`domain.paused`).
    async fn tell_pauses(&self) {
        for p in self.engine.pauses.take() {
            self.emit(p.event()).await;
        }
    }

    /// Notice runs over and fire what is due; whether any schedule is
    /// still live (not ended, or its run still going).
    async fn look(&self) -> Result<bool, StoreError> {
        let rows = self.book.rows().await?;
        let live = rows.iter().any(|r| !r.ended || r.state.running);
        if live {
            self.notice_ends(&rows).await?;
            self.fire_due(Some(rows)).await?;
        }
        Ok(live)
    }

    /// The request of a schedule's row, parsed once.
    fn request(&self, row: &Row) -> Option<Arc<CrawlRequest>> {
        let mut requests = self.requests.lock();
        // A crawl scheduled again after its schedule ended may have
        // another request.
        if let Some((_, r)) = requests.get(&row.key).filter(|(j, _)| *j == row.request) {
            return Some(r.clone());
        }
        // Validated when it was accepted; one that no longer reads (an
        // older version's) is left alone, and said so.
        match serde_json::from_str::<CrawlRequest>(&row.request) {
            Ok(r) => {
                let r = Arc::new(r);
                requests.insert(row.key.clone(), (row.request.clone(), r.clone()));
                Some(r)
            }
            Err(e) => {
                tracing::error!(appid = %row.key.appid, crawlid = %row.key.crawlid, error = %e, "a scheduled request no longer reads; its schedule is not run");
                None
            }
        }
    }

    async fn news(&self, news: RunNews) -> Result<(), StoreError> {
        match news {
            RunNews::Started { crawl, run } => self.emit(event(Kind::Started, &crawl, run)).await,
            RunNews::Completed { crawl, run, stats } => {
                let row = self.book.rows().await?.into_iter().find(|r| r.key == crawl);
                match row {
                    // A scheduled crawl's run: ended once, by whoever sets
                    // it not running.
                    Some(row) => self.ended(row, run, stats).await?,
                    None => self.completed(&crawl, run, stats, None).await?,
                }
            }
        }
        Ok(())
    }

    /// Stores that tell no news of runs (Redis): a running schedule whose
    /// crawl has nothing open is over.
    async fn notice_ends(&self, rows: &[Row]) -> Result<(), StoreError> {
        for row in rows.iter().cloned() {
            if !row.state.running {
                continue;
            }
            let firing = row
                .firing
                .is_some_and(|f| Timestamp::now().duration_since(f).unsigned_abs() < FIRING);
            if firing {
                continue;
            }
            if self.engine.frontier.open(&row.key).await? == Some(0) {
                let run = row.state.runs;
                // Read before the run is marked over: the next run, free
                // to fire from then on, starts the figures again.
                let stats = self.engine.frontier.figures(&row.key).await?;
                self.ended(row, run, stats.unwrap_or_default()).await?;
            }
        }
        Ok(())
    }

    /// Run `run` of a scheduled crawl is over: marked so in the book (one
    /// process wins), then told.
    async fn ended(&self, row: Row, run: u32, stats: Stats) -> Result<(), StoreError> {
        let mut next = row.clone();
        next.state.running = false;
        next.firing = None;
        if !self.book.swap(&row, &next).await? {
            return Ok(());
        }
        let request = self.request(&row);
        self.completed(&row.key, run, stats, request.as_deref())
            .await?;
        if row.ended {
            self.engine.frontier.forget_pages(&row.key).await?;
        }
        Ok(())
    }

    /// Tell a run's end: pages no fetch of it reached swept first.
    async fn completed(
        &self,
        crawl: &CrawlKey,
        run: u32,
        mut stats: Stats,
        request: Option<&CrawlRequest>,
    ) -> Result<(), StoreError> {
        if let Some(r) = request {
            self.sweep(r, run, &mut stats).await?;
        }
        let (kind, reason) = ending(&stats);
        let mut e = event(kind, crawl, run);
        e.reason = Some(reason.into());
        e.stats = Some(stats);
        self.emit(e).await;
        Ok(())
    }

    /// After a later run of a revisited crawl: its pages the run did not
    /// reach are reported `removed`, and counted.
    async fn sweep(
        &self,
        request: &CrawlRequest,
        run: u32,
        stats: &mut Stats,
    ) -> Result<(), StoreError> {
        if run < 2 || request.revisit.is_none() {
            return Ok(());
        }
        let key = CrawlKey {
            appid: request.appid.clone(),
            crawlid: request.crawlid.clone(),
        };
        let gone = self.engine.frontier.sweep(&key, run).await?;
        if gone.is_empty() {
            return Ok(());
        }
        let seed = request.clone().into_run(run);
        self.engine.deliver_removed(&seed, &gone).await;
        *stats.change.entry("removed".into()).or_default() += gone.len() as u64;
        Ok(())
    }

    /// Carry out each schedule's decision for now; each change is a
    /// compare-and-set in the book, so one process acts on it.
    async fn fire_due(&self, rows: Option<Vec<Row>>) -> Result<(), StoreError> {
        let now = Timestamp::now();
        let rows = match rows {
            Some(r) => r,
            None => self.book.rows().await?,
        };
        for row in rows {
            if row.ended {
                continue;
            }
            let Some(request) = self.request(&row) else {
                continue;
            };
            let Some(schedule) = request.schedule() else {
                continue;
            };
            let name = row.name();
            let mut next = row.clone();
            let s = &mut next.state;
            // Only a decision to fire fires: the row may carry another
            // process's firing.
            let mut fires = false;
            let told = match decide(&schedule, &row.state, now, &name) {
                Decision::Wait(_) => continue,
                Decision::Ended => {
                    next.ended = true;
                    None
                }
                Decision::Skip { due, why } => {
                    s.last = Some(due);
                    let mut e = event(Kind::Skipped, &row.key, s.runs + 1);
                    e.about = Some(due.as_second().to_string());
                    e.reason = Some(
                        match why {
                            Skipped::Overlap => "overlap",
                            Skipped::Misfire => "misfire",
                        }
                        .into(),
                    );
                    Some(e)
                }
                // The store cannot cut a run short yet: a run that would
                // replace the current one waits for its end instead, as
                // with `overlap: queue`.
                Decision::Queue { due } | Decision::Fire { due, replace: true } => {
                    s.last = Some(due);
                    s.pending = Some(due);
                    None
                }
                Decision::Fire { due, .. } => {
                    s.runs += 1;
                    s.last = Some(due);
                    s.pending = None;
                    s.running = true;
                    next.firing = Some(now);
                    fires = true;
                    let mut e = event(Kind::Fired, &row.key, s.runs);
                    e.about = Some(due.as_second().to_string());
                    Some(e)
                }
            };
            if !self.book.swap(&row, &next).await? {
                continue; // another process acted first
            }
            if next.ended {
                tracing::info!(appid = %row.key.appid, crawlid = %row.key.crawlid, "schedule ended");
            }
            if let Some(e) = told {
                self.emit(e).await;
            }
            if fires {
                let was = Row {
                    version: next.version + 1,
                    ..next
                };
                self.fire(was, &request).await?;
            }
        }
        Ok(())
    }

    /// Queue run `row.state.runs` of a schedule: its crawl's seen set
    /// emptied, then its seed and the pages the last run knew. `row` is as
    /// the book has it now (firing).
    async fn fire(&self, row: Row, request: &CrawlRequest) -> Result<(), StoreError> {
        let (key, run) = (&row.key, row.state.runs);
        let known = match request.revisit {
            Some(_) => self.engine.frontier.known_pages(key).await?,
            None => Vec::new(),
        };
        if run > 1 {
            self.engine.dedup.new_run(key).await?;
        }
        let seed = request.clone().into_run(run);
        // With `adaptive`, pages whose interval has not passed rest this
        // run (the seed is read every run).
        let (due, resting): (Vec<_>, Vec<_>) = known
            .into_iter()
            .partition(|p| p.due(run) || p.url == seed.url);
        let queued = self.engine.submit_run(seed, &due, &resting).await?;
        tracing::info!(appid = %key.appid, crawlid = %key.crawlid, run, queued, resting = resting.len(), "run fired");
        // A store that tells no news of runs (Redis) has it started here,
        // its seeds queued.
        if queued > 0 && self.engine.frontier.open(key).await?.is_some() {
            self.emit(event(Kind::Started, key, run)).await;
        }
        if queued == 0 {
            // Nothing could be queued (the global page cap): the run is
            // over as soon as it began.
            let mut e = event(Kind::Failed, key, run);
            e.reason = Some("every seed refused".into());
            self.emit(e).await;
        }
        // No longer firing. An action may have changed the row meanwhile
        // (a pause): read again and retry while it is still this firing;
        // otherwise the run was taken as over (after FIRING) or stopped.
        let mut row = row;
        loop {
            let mut next = row.clone();
            next.firing = None;
            next.state.running &= queued > 0;
            if self.book.swap(&row, &next).await? {
                return Ok(());
            }
            // (A shared book keeps times to the millisecond.)
            let ms = |r: &Row| r.firing.map(|t| t.as_millisecond());
            match self.book.row(&row.key).await? {
                Some(now) if now.state.runs == run && ms(&now) == ms(&row) => row = now,
                _ => return Ok(()),
            }
        }
    }

    async fn emit(&self, e: Event) {
        let key = CrawlKey {
            appid: e.appid.clone(),
            crawlid: e.crawlid.clone(),
        };
        let webhook = match self.accepted.lock().get(&key) {
            Some(r) => r.webhook(),
            None => self
                .requests
                .lock()
                .get(&key)
                .and_then(|(_, r)| r.webhook())
                .or_else(|| self.told.lock().get(&key).and_then(|(_, w)| w.clone())),
        };
        self.emit_to(e, webhook.as_ref()).await
    }

    /// Tell `e` to the event sink and to `webhook`.
    async fn emit_to(&self, e: Event, webhook: Option<&Webhook>) {
        if let Err(err) = self.events.send(&e).await {
            // Events tell; they hold no work: the crawl goes on.
            tracing::error!(event = e.event.name(), crawlid = %e.crawlid, error = %err, "event not written");
        }
        if let (Some(n), Some(w)) = (&self.notifier, webhook) {
            n.notify(&e, w).await;
        }
    }
}

/// How a run ended, from its figures: completed if a page answered 2xx
/// or 3xx, else failed.
fn ending(stats: &Stats) -> (Kind, &'static str) {
    let ok = stats
        .by_status
        .iter()
        .any(|(class, n)| *n > 0 && (class == "2xx" || class == "3xx"));
    match ok {
        true => (Kind::Completed, "done"),
        false => (Kind::Failed, "no page succeeded"),
    }
}

fn event(kind: Kind, crawl: &CrawlKey, run: u32) -> Event {
    Event::of(kind, (&crawl.appid, &crawl.crawlid), run)
}
