//! A pop's steps under the frontier's lock: queues whose time has come
//! promoted, the next ready queue's fetch reserved against its site's pace
//! and its domain's caps, then (once the throttle let it go) its request
//! leased; or, when nothing was, how long until something may be.

use super::{EmbeddedFrontier, Held, QueueKey, State};
use crate::politeness::Hold;
use crate::scheduler::{Lease, Pop};
use std::cmp::Reverse;
use std::time::Duration;
use tokio::time::Instant;

/// What the next ready queue has for a pop.
pub(super) enum Reserved {
    /// A fetch, reserved.
    Slot(Slot),
    /// Nothing now: the queue waits (delayed, or parked at its domain's
    /// cap); look at the next.
    Held,
    /// No queue is ready.
    NoneReady,
}

/// A queue's fetch reserved: its site's start taken, its domain's fetch
/// open; undone (`State::unopen`) if it does not go ahead.
pub(super) struct Slot {
    pub key: QueueKey,
    /// The site's start before this one, to put back.
    pub before: Option<Instant>,
    /// The site's pace is its own (`Job::spaced`).
    spaced: bool,
    /// The site's epoch, for the lease (`Site::epoch`).
    epoch: u32,
}

impl EmbeddedFrontier {
    /// The site's pace first: the next ready queue's fetch is reserved (in
    /// flight, last start) before the throttle is asked, so no other pop
    /// slips past the cap meanwhile.
    pub(super) fn reserve(&self) -> Reserved {
        let mut st = self.state.lock();
        let now = Instant::now();
        Self::promote(&mut st, now);
        let Some(key) = st.ready.pop_front() else {
            return Reserved::NoneReady;
        };
        let cap = self.politeness.max_in_flight;
        let open = st.open.get(&key.1).map_or(0, |o| o.all);
        let apps_full = {
            let may = self.app_may(&st.open, &key.1);
            st.queues.get(&key).is_some_and(|q| !q.can_pop(may))
        };
        let site = st.sites.entry(key.2.clone()).or_default();
        let hold = match site.wait(now) {
            None if (cap > 0 && open >= cap) || apps_full => Some(Hold::Full),
            hold => hold,
        };
        match hold {
            Some(Hold::For(wait)) => {
                st.delayed.push(Reverse((now + wait, key)));
                return Reserved::Held;
            }
            Some(Hold::Full) => {
                st.parked.entry(key.1.clone()).or_default().push(key);
                return Reserved::Held;
            }
            None => {}
        }
        let (spaced, epoch) = (site.is_spaced(), site.epoch());
        let before = site.start(now);
        st.open.entry(key.1.clone()).or_default().all += 1;
        Reserved::Slot(Slot {
            key,
            before,
            spaced,
            epoch,
        })
    }

    /// The throttle let the reserved fetch go: lease the queue's next
    /// request. `None`, the reservation undone, when its apps filled up
    /// meanwhile or the queue is gone.
    pub(super) fn lease(&self, st: &mut State, slot: Slot) -> Option<Lease> {
        let Slot {
            key,
            before,
            spaced,
            epoch,
        } = slot;
        let (domain, origin) = (key.1.clone(), key.2.clone());
        let weights = &self.weights;
        let weight = |app: &str| weights.get(app).copied().unwrap_or(1);
        let may = self.app_may(&st.open, &domain);
        let popped = st.queues.get_mut(&key).map(|q| q.pop(weight, may));
        let item = match popped {
            Some(Some(item)) => item,
            // Its apps filled up while the throttle was asked.
            Some(None) => {
                st.unopen(&key, before);
                st.parked.entry(domain).or_default().push(key);
                return None;
            }
            None => {
                st.indexed.remove(&key);
                st.unopen(&key, before);
                return None;
            }
        };
        let app = (self.politeness.max_in_flight_per_app > 0).then(|| item.job.crawl.appid.clone());
        if let (Some(a), Some(open)) = (&app, st.open.get_mut(&domain)) {
            *open.by_app.entry(a.clone()).or_default() += 1;
        }
        if st.queues.get(&key).is_none_or(|q| q.is_empty()) {
            st.queues.remove(&key);
            st.indexed.remove(&key);
        } else {
            st.ready.push_back(key);
        }
        st.queued -= 1;
        st.seq += 1;
        let id = st.seq;
        let mut job = item.job;
        job.spaced = spaced;
        st.runs.popped(&mut job);
        let held = Held {
            job: job.clone(),
            domain,
            origin,
            fetched: false,
            epoch,
            app,
        };
        st.leases.insert(id, held);
        Some(Lease { id, job })
    }

    /// What a pop that leased nothing answers: idle when nothing is
    /// queued, else how long until a queue may be ready.
    pub(super) fn nothing_ready(st: &State) -> Pop {
        if st.queued == 0 {
            return Pop::Idle;
        }
        let now = Instant::now();
        // A parked queue is ready when one of its site's fetches ends;
        // the wait is bounded as the Redis frontier bounds it.
        let parked = (!st.parked.is_empty()).then(|| now + crate::politeness::FULL_RECHECK);
        let next = [
            st.delayed.peek().map(|Reverse((at, _))| *at),
            st.retries.next_due(),
            parked,
        ];
        let wait = next
            .into_iter()
            .flatten()
            .min()
            .map(|at| at.saturating_duration_since(now))
            .unwrap_or(Duration::from_millis(1));
        Pop::Wait(wait.max(Duration::from_millis(1)))
    }

    /// Move delayed queues whose time has come back to `ready`, and
    /// retries whose backoff is over into their queues.
    fn promote(st: &mut State, now: Instant) {
        while let Some(Reverse((at, _))) = st.delayed.peek() {
            if *at > now {
                break;
            }
            if let Some(Reverse((_, key))) = st.delayed.pop() {
                st.ready.push_back(key);
            }
        }
        while let Some(job) = st.retries.pop_due(now) {
            st.queued -= 1;
            Self::enqueue(st, job);
        }
    }
}
