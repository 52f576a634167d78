//! In-process frontier and dedup store: the default, needing nothing else.
//! A pop's steps are in `pop.rs`, the book of runs in `runs.rs`.

mod pop;
mod runs;

use super::queue::{FairQueue, Queued};
use super::{Acked, Counts, Frontier, Pop, StoreError};
use crate::links::domain::{self, origin_of};
use crate::politeness::throttle::{Admission, ThrottleStore};
use crate::politeness::{Politeness, Requeue, Sample, Site};
use crate::request::Job;
use async_trait::async_trait;
use parking_lot::Mutex;
use pop::Reserved;
use runs::RunBook;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// A queue: (spider, registered domain, origin). Sites set the pace per
/// origin; the throttle and the in-flight cap are the domain's.
type QueueKey = (String, String, String);

/// A leased request.
struct Held {
    job: Job,
    /// Its registered domain and origin.
    domain: String,
    origin: String,
    /// Its fetch is over (then it no longer counts against the site's cap).
    fetched: bool,
    /// The site's epoch when its fetch started (`Site::epoch`).
    epoch: u32,
    /// Its app, when apps' fetches are capped (`max_in_flight_per_app`).
    app: Option<String>,
}

/// Fetches open on one registered domain, in all and per app (the latter
/// only when apps are capped).
#[derive(Default)]
struct Open {
    all: u32,
    by_app: HashMap<String, u32>,
}

#[derive(Default)]
struct State {
    queues: HashMap<QueueKey, FairQueue>,
    /// Non-empty queues not known to be throttled, round-robin.
    ready: VecDeque<QueueKey>,
    /// Throttled queues and when to look at them again.
    delayed: BinaryHeap<Reverse<(Instant, QueueKey)>>,
    /// Queues present in `ready` or `delayed` (never both).
    indexed: HashSet<QueueKey>,
    leases: HashMap<u64, Held>,
    retries: Retries,
    /// Origins with a pace to keep (see `site.rs`).
    sites: HashMap<String, Site>,
    /// Fetches open per registered domain (`crawl.max_in_flight`).
    open: HashMap<String, Open>,
    /// Queues of domains at their in-flight cap, ready again when one of
    /// the domain's fetches ends (not on a timer: that would idle them).
    parked: HashMap<String, Vec<QueueKey>>,
    seq: u64,
    queued: u64,
    /// Each run's open requests and figures, revisited pages' states.
    runs: RunBook,
}

/// Retries waiting out their backoff (counted as queued), by due time.
#[derive(Default)]
struct Retries {
    due: BinaryHeap<Reverse<(Instant, u64)>>,
    jobs: HashMap<u64, Job>,
}

impl Retries {
    fn push(&mut self, id: u64, job: Job, at: Instant) {
        self.jobs.insert(id, job);
        self.due.push(Reverse((at, id)));
    }

    fn next_due(&self) -> Option<Instant> {
        self.due.peek().map(|Reverse((at, _))| *at)
    }

    /// A retry whose backoff is over by `now`, if any.
    fn pop_due(&mut self, now: Instant) -> Option<Job> {
        while let Some(Reverse((at, id))) = self.due.peek().copied() {
            if at > now {
                return None;
            }
            self.due.pop();
            if let Some(job) = self.jobs.remove(&id) {
                return Some(job);
            }
        }
        None
    }
}

impl State {
    /// The lease is over: its domain has one fetch fewer open.
    fn end_lease(
        &mut self,
        p: &Politeness,
        lease_id: u64,
        ok: bool,
        sample: Option<(Sample, Duration)>,
    ) -> Option<Held> {
        let held = self.leases.remove(&lease_id)?;
        if !held.fetched {
            self.fetch_over(&held.domain, held.app.as_deref());
        }
        let origin = &held.origin;
        if let Some(site) = self.sites.get_mut(origin) {
            site.finish(p, ok, held.epoch);
            if let Some((s, max)) = sample {
                site.observe(s, max);
            }
            if site.is_idle(Instant::now()) {
                self.sites.remove(origin);
            }
        }
        Some(held)
    }
}

impl State {
    /// One fetch of `domain` (of `app`, if counted) fewer open: its
    /// parked queues are ready.
    fn fetch_over(&mut self, domain: &str, app: Option<&str>) {
        if let Some(keys) = self.parked.remove(domain) {
            self.ready.extend(keys);
        }
        if let Some(open) = self.open.get_mut(domain) {
            open.all = open.all.saturating_sub(1);
            if let Some(n) = app.and_then(|a| open.by_app.get_mut(a)) {
                *n = n.saturating_sub(1);
            }
            open.by_app.retain(|_, n| *n > 0);
            if open.all == 0 {
                self.open.remove(domain);
            }
        }
    }

    /// A fetch of `domain` that did not start after all.
    fn unopen(&mut self, key: &QueueKey, before: Option<Instant>) {
        if let Some(open) = self.open.get_mut(&key.1) {
            open.all = open.all.saturating_sub(1);
        }
        if let Some(site) = self.sites.get_mut(&key.2) {
            site.unstart(before);
        }
    }
}

pub struct EmbeddedFrontier {
    state: Mutex<State>,
    throttle: Arc<dyn ThrottleStore>,
    politeness: Politeness,
    /// `throttle.weights`: apps' weights in the fair shares of a queue.
    weights: BTreeMap<String, u32>,
}

impl EmbeddedFrontier {
    pub fn new(throttle: Arc<dyn ThrottleStore>, politeness: Politeness) -> Self {
        EmbeddedFrontier {
            state: Mutex::new(State::default()),
            throttle,
            politeness,
            weights: BTreeMap::new(),
        }
    }

    /// May an app have another fetch of `domain` open
    /// (`crawl.max_in_flight_per_app`)?
    fn app_may<'a>(
        &self,
        open: &'a HashMap<String, Open>,
        domain: &str,
    ) -> impl Fn(&str) -> bool + 'a {
        let cap = self.politeness.max_in_flight_per_app;
        let open = open.get(domain);
        move |app: &str| {
            cap == 0
                || open
                    .and_then(|o| o.by_app.get(app))
                    .is_none_or(|n| *n < cap)
        }
    }

    /// Crawls of the apps in `weights` get that many shares of a queue
    /// (`throttle.weights`); others one.
    pub fn weighted(mut self, weights: BTreeMap<String, u32>) -> Self {
        self.weights = weights;
        self
    }

    fn enqueue(st: &mut State, job: Job) {
        let key = (
            job.spiderid.clone(),
            domain::of_url(&job.url),
            origin_of(&job.url),
        );
        st.seq += 1;
        st.queued += 1;
        let q = Queued {
            priority: job.priority,
            seq: st.seq,
            job,
        };
        st.queues.entry(key.clone()).or_default().push(q);
        if st.indexed.insert(key.clone()) {
            st.ready.push_back(key);
        }
    }
}

#[async_trait]
impl Frontier for EmbeddedFrontier {
    async fn push(&self, jobs: Vec<Job>) -> Result<(), StoreError> {
        let mut st = self.state.lock();
        for job in jobs {
            st.runs.pushed(&job);
            Self::enqueue(&mut st, job);
        }
        Ok(())
    }

    async fn pop(&self) -> Result<Pop, StoreError> {
        // Each ready queue is looked at once per pop at most.
        let budget = self.state.lock().ready.len() + 1;
        for _ in 0..budget {
            let slot = match self.reserve() {
                Reserved::Slot(slot) => slot,
                Reserved::Held => continue,
                Reserved::NoneReady => break,
            };
            let admission = self.throttle.acquire(&slot.key.0, &slot.key.1).await;
            let mut st = self.state.lock();
            let admission = match admission {
                Ok(Admission::Go) => Admission::Go,
                other => {
                    st.unopen(&slot.key, slot.before);
                    other?
                }
            };
            match admission {
                Admission::Wait(d) => {
                    st.delayed.push(Reverse((Instant::now() + d, slot.key)));
                }
                Admission::Go => {
                    if let Some(lease) = self.lease(&mut st, slot) {
                        return Ok(Pop::Leased(lease));
                    }
                }
            }
        }
        Ok(Self::nothing_ready(&self.state.lock()))
    }

    async fn ack(&self, lease_id: u64, acked: Acked) -> Result<(), StoreError> {
        let ok = acked
            .status
            .is_some_and(|s| !crate::politeness::slows_down(s));
        let sample = acked.sample.map(|s| (s, self.politeness.max_crawl_delay));
        let mut st = self.state.lock();
        if let Some(held) = st.end_lease(&self.politeness, lease_id, ok, sample) {
            st.runs.acked(&held.job, acked);
        }
        Ok(())
    }

    async fn retry(&self, lease_id: u64, retry: Job, when: Requeue) -> Result<(), StoreError> {
        let mut st = self.state.lock();
        let now = Instant::now();
        let sample = match when {
            Requeue::After(_, Some(s)) => Some((s, self.politeness.max_crawl_delay)),
            _ => None,
        };
        let Some(held) = st.end_lease(&self.politeness, lease_id, false, sample) else {
            return Ok(());
        };
        match when {
            Requeue::Now => Self::enqueue(&mut st, retry),
            Requeue::After(d, _) => {
                st.seq += 1;
                st.queued += 1;
                let id = st.seq;
                st.retries.push(id, retry, now + d);
            }
            Requeue::PauseSite(asked) => {
                let p = self.politeness;
                st.sites
                    .entry(held.origin)
                    .or_default()
                    .slow_down(&p, asked, held.epoch, now);
                Self::enqueue(&mut st, retry);
            }
        }
        Ok(())
    }

    async fn fetched(&self, lease_id: u64) {
        let mut st = self.state.lock();
        let Some(held) = st.leases.get_mut(&lease_id) else {
            return;
        };
        if !std::mem::replace(&mut held.fetched, true) {
            let (domain, app) = (held.domain.clone(), held.app.clone());
            st.fetch_over(&domain, app.as_deref());
        }
    }

    async fn release(&self, lease_id: u64) -> Result<(), StoreError> {
        let mut st = self.state.lock();
        if let Some(held) = st.end_lease(&self.politeness, lease_id, false, None) {
            Self::enqueue(&mut st, held.job);
        }
        Ok(())
    }

    async fn crawl_delay(&self, origin: &str, delay: Option<Duration>) -> Result<(), StoreError> {
        let mut st = self.state.lock();
        let site = st.sites.entry(origin.to_string()).or_default();
        site.set_crawl_delay(delay);
        if site.is_idle(Instant::now()) {
            st.sites.remove(origin);
        }
        Ok(())
    }

    async fn counts(&self) -> Result<Counts, StoreError> {
        let st = self.state.lock();
        Ok(Counts {
            queued: st.queued,
            in_flight: st.leases.len() as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::politeness::throttle::EmbeddedThrottle;
    use crate::request::CrawlKey;
    use crate::request::CrawlRequest;
    use crate::scheduler::{Candidate, DedupStore, EmbeddedDedup};

    fn job(url: &str, priority: i64) -> Job {
        let json =
            format!(r#"{{"url":"{url}","appid":"app","crawlid":"c","priority":{priority}}}"#);
        CrawlRequest::parse(&json, 3).expect("valid").into_seed()
    }

    fn frontier(hits: u32, window: f64) -> EmbeddedFrontier {
        let settings = crate::config::Throttle {
            hits,
            window: Duration::from_secs_f64(window),
            moderated: false,
            ..Default::default()
        };
        EmbeddedFrontier::new(
            Arc::new(EmbeddedThrottle::new(settings)),
            Politeness::default(),
        )
    }

    async fn pop_url(f: &EmbeddedFrontier) -> String {
        match f.pop().await.expect("pop") {
            Pop::Leased(l) => l.job.url,
            other => panic!("expected a lease, got {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn priority_then_arrival_order() {
        let f = frontier(100, 1.0);
        f.push(vec![
            job("a.com/1", 5),
            job("a.com/2", 9),
            job("a.com/3", 5),
        ])
        .await
        .expect("push");
        assert_eq!(pop_url(&f).await, "http://a.com/2");
        assert_eq!(pop_url(&f).await, "http://a.com/1");
        assert_eq!(pop_url(&f).await, "http://a.com/3");
        assert!(matches!(f.pop().await.expect("pop"), Pop::Idle));
    }

    #[tokio::test(start_paused = true)]
    async fn throttled_domains_wait_while_others_go() {
        let f = frontier(1, 10.0);
        f.push(vec![
            job("a.com/1", 1),
            job("a.com/2", 1),
            job("b.com/1", 1),
        ])
        .await
        .expect("push");
        let first = pop_url(&f).await;
        let second = pop_url(&f).await;
        assert_ne!(domain::of_url(&first), domain::of_url(&second));
        match f.pop().await.expect("pop") {
            Pop::Wait(d) => assert!(d <= Duration::from_secs(10) && d > Duration::from_secs(9)),
            other => panic!("expected wait, got {other:?}"),
        }
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(pop_url(&f).await, "http://a.com/2");
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_site_is_popped_again_as_soon_as_one_of_its_fetches_ends() {
        let f = EmbeddedFrontier::new(
            Arc::new(EmbeddedThrottle::new(crate::config::Throttle {
                hits: 100,
                window: Duration::from_secs(1),
                moderated: false,
                ..Default::default()
            })),
            Politeness {
                max_in_flight: 1,
                ..Politeness::default()
            },
        );
        f.push(vec![job("a.com/1", 1), job("a.com/2", 1)])
            .await
            .expect("push");
        let Pop::Leased(first) = f.pop().await.expect("pop") else {
            panic!("no lease")
        };
        assert!(!matches!(f.pop().await.expect("pop"), Pop::Leased(_)));
        f.ack(
            first.id,
            Acked {
                status: Some(200),
                ..Default::default()
            },
        )
        .await
        .expect("ack");
        assert_eq!(pop_url(&f).await, "http://a.com/2", "no timer in between");
    }

    #[tokio::test(start_paused = true)]
    async fn leases_count_until_acked() {
        let f = frontier(100, 1.0);
        f.push(vec![job("a.com/1", 1)]).await.expect("push");
        let Pop::Leased(lease) = f.pop().await.expect("pop") else {
            panic!("no lease")
        };
        assert_eq!(
            f.counts().await.expect("counts"),
            Counts {
                queued: 0,
                in_flight: 1
            }
        );
        f.retry(lease.id, lease.job.clone(), Requeue::Now)
            .await
            .expect("retry");
        assert_eq!(
            f.counts().await.expect("counts"),
            Counts {
                queued: 1,
                in_flight: 0
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn dedup_and_domain_caps() {
        let d = EmbeddedDedup::new(Duration::from_secs(600));
        let key = CrawlKey {
            appid: "app".into(),
            crawlid: "c".into(),
        };
        let c = |fp: u128| Candidate {
            fingerprint: fp,
            domain: "a.com".into(),
            domain_cap: Some(2),
            global_cap: None,
            force: false,
        };
        assert_eq!(
            d.admit(&key, &[c(1), c(1), c(2), c(3)])
                .await
                .expect("admit"),
            [true, false, true, false]
        );
        let other = CrawlKey {
            appid: "app2".into(),
            crawlid: "c".into(),
        };
        assert_eq!(d.admit(&other, &[c(1)]).await.expect("admit"), [true]);
    }
}
