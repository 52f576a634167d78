//! One origin's pace in the embedded frontier: the state the Redis
//! frontier keeps in `ds:<origin>` (`site.lua`), by the same rules. The
//! in-flight cap is the registered domain's, kept by the frontier.

use super::{adapt, Hold, Politeness, Rate, Sample};
use std::time::Duration;
use tokio::time::Instant;

/// One origin's pace in the embedded frontier.
#[derive(Debug, Default)]
pub struct Site {
    paused_until: Option<Instant>,
    strikes: u32,
    crawl_delay: Option<Duration>,
    /// The adaptive throttle's spacing.
    adaptive: Option<Duration>,
    last: Option<Instant>,
    /// The rate learned from its slow-downs (`rate.rs`).
    rate: Option<Rate>,
    /// Cuts of the rate so far: a lease remembers the epoch its fetch
    /// started in, and only a slow-down of the current epoch counts.
    epoch: u32,
}

impl Site {
    /// How long this origin must wait (a pause or its spacing), or `None`
    /// if it may be fetched now.
    pub fn wait(&self, now: Instant) -> Option<Hold> {
        if let Some(until) = self.paused_until.filter(|u| *u > now) {
            return Some(Hold::For(until - now));
        }
        let next = self.last? + self.spacing()?;
        (next > now).then(|| Hold::For(next - now))
    }

    /// Its fetches are spaced (a Crawl-delay or adaptive spacing is known).
    pub fn is_spaced(&self) -> bool {
        self.spacing().is_some()
    }

    /// The least time between two fetches' starts, beyond the throttle:
    /// the slowest of Crawl-delay, the adaptive spacing and the learned
    /// rate's.
    fn spacing(&self) -> Option<Duration> {
        self.crawl_delay
            .max(self.adaptive)
            .max(self.rate.map(|r| r.spacing()))
    }

    /// The epoch a fetch starting now starts in.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// A fetch starts; returns what [`Site::unstart`] needs to undo it.
    pub fn start(&mut self, now: Instant) -> Option<Instant> {
        let before = self.last;
        if self.spacing().is_some() {
            self.last = Some(now);
        }
        before
    }

    /// The fetch [`Site::start`]ed did not start after all.
    pub fn unstart(&mut self, before: Option<Instant>) {
        self.last = before;
    }

    /// A lease whose fetch started in `epoch` ended (acked, retried, given
    /// back, or expired); its fetch is already over. `ok` when the site
    /// answered without asking to slow down: the learned rate grows, and a
    /// fetch started since the last cut ends the run of slow-downs.
    pub fn finish(&mut self, p: &Politeness, ok: bool, epoch: u32) {
        if !ok {
            return;
        }
        if epoch == self.epoch {
            self.strikes = 0;
        }
        self.rate = self.rate.and_then(|r| p.learning.grow(r));
    }

    /// The site asked a fetch started in `epoch` to slow down. If the
    /// fetch started after the last cut, the rate is cut and the site
    /// paused (`Retry-After`, or its growing pause from the second in a
    /// row); an older fetch's slow-down only honours its `Retry-After`.
    pub fn slow_down(&mut self, p: &Politeness, asked: Option<Duration>, epoch: u32, now: Instant) {
        let pause = if epoch == self.epoch {
            self.strikes += 1;
            self.epoch += 1;
            self.rate = Some(p.learning.cut(self.rate));
            // The next fetch waits a spacing at the new rate from now.
            self.last = Some(now);
            p.pause_for(asked, self.strikes)
        } else {
            asked.map_or(Duration::ZERO, |d| d.min(p.max_pause))
        };
        if !pause.is_zero() {
            let until = now + pause;
            self.paused_until = Some(self.paused_until.map_or(until, |u| u.max(until)));
        }
    }

    /// A fetch's outcome, when the adaptive throttle is on.
    pub fn observe(&mut self, s: Sample, max: Duration) {
        self.adaptive = Some(adapt(self.adaptive, s, max));
    }

    pub fn set_crawl_delay(&mut self, delay: Option<Duration>) {
        self.crawl_delay = delay.filter(|d| !d.is_zero());
    }

    /// Nothing left to remember: the entry can go.
    pub fn is_idle(&self, now: Instant) -> bool {
        self.strikes == 0
            && self.crawl_delay.is_none()
            && self.adaptive.is_none()
            && self.rate.is_none()
            && self.paused_until.is_none_or(|u| u <= now)
    }
}

/// An origin's pace as reported.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct SiteView {
    pub paused_for: Option<Duration>,
    pub crawl_delay: Option<Duration>,
    pub adaptive: Option<Duration>,
    /// The learned rate, fetches per second.
    pub rate: Option<f64>,
    /// 429s and 503s that cut its rate (answers to fetches started since
    /// the last cut).
    pub slow_downs: u64,
}

impl SiteView {
    /// The fetches per second its pace allows, when it has one: the
    /// slowest of its learned rate, Crawl-delay and adaptive spacing (the
    /// largest spacing wins, as when a fetch waits).
    pub fn per_sec(&self) -> Option<f64> {
        let spaced = |d: Option<Duration>| d.map(|d| 1.0 / d.as_secs_f64().max(0.001));
        [self.rate, spaced(self.crawl_delay), spaced(self.adaptive)]
            .into_iter()
            .flatten()
            .reduce(f64::min)
    }

    /// Whether anything holds the origin back: a pause or a pace.
    pub fn holds_back(&self) -> bool {
        self.paused_for.is_some() || self.per_sec().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::politeness::Politeness;

    #[test]
    fn a_view_allows_the_slowest_of_its_paces() {
        let mut v = SiteView::default();
        assert_eq!((v.per_sec(), v.holds_back()), (None, false));
        v.rate = Some(4.0);
        v.crawl_delay = Some(Duration::from_millis(500));
        assert_eq!(v.per_sec(), Some(2.0), "a Crawl-delay of 0.5 s: 2/s");
        v.adaptive = Some(Duration::from_secs(1));
        assert_eq!(v.per_sec(), Some(1.0));
        let paused = SiteView {
            paused_for: Some(Duration::from_secs(2)),
            ..SiteView::default()
        };
        assert!(paused.holds_back());
    }

    #[tokio::test(start_paused = true)]
    async fn a_site_waits_for_its_pause_and_its_delay() {
        let p = Politeness::default();
        let mut s = Site::default();
        let now = Instant::now();
        assert_eq!(s.wait(now), None);
        s.set_crawl_delay(Some(Duration::from_secs(1)));
        s.start(now);
        assert_eq!(s.wait(now), Some(Hold::For(Duration::from_secs(1))));
        s.slow_down(&p, Some(Duration::from_secs(3)), s.epoch(), now);
        assert_eq!(s.wait(now), Some(Hold::For(Duration::from_secs(3))));
        assert!(!s.is_idle(now));
    }
}
