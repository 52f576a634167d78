//! How fast a site (registered domain) may be fetched beyond the throttle,
//! for every worker at once: paused after a 429 or 503, spaced by its
//! robots.txt `Crawl-delay`, and capped in fetches open at once. The Redis
//! frontier keeps this state in the pop script's shard (`ds:<domain>`);
//! the embedded one in [`Site`].

use crate::config::Crawl;
use std::time::Duration;
use tokio::time::Instant;

/// When a request put back in its lease's place may be fetched again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requeue {
    /// At once (a redirect hop; robots.txt took its throttle slot).
    Now,
    /// After a backoff of its own (a retry); other requests go on
    /// meanwhile. The failed fetch's [`Sample`], for the adaptive throttle.
    After(Duration, Option<Sample>),
    /// Its site asked us to slow down (429, 503): the whole domain pauses
    /// for every worker, for the site's `Retry-After` (capped by
    /// `crawl.max_pause`) or, without one, for the domain's growing pause.
    PauseSite(Option<Duration>),
}

/// How one fetch of a site went, for the adaptive throttle
/// (`crawl.adaptive_throttle`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub latency: Duration,
    /// A network error, a timeout or a 5xx.
    pub failed: bool,
}

/// The adaptive throttle's next spacing for a site after `s`: halfway
/// from the last spacing to the latency on a success (so a site is asked
/// about once per response time: one fetch open at a time); doubled (at
/// least the latency) on a failure; at most `max`.
pub fn adapt(last: Option<Duration>, s: Sample, max: Duration) -> Duration {
    let next = match last {
        None => s.latency,
        Some(last) if s.failed => (last * 2).max(s.latency),
        Some(last) => (last + s.latency) / 2,
    };
    next.min(max)
}

/// The settings a frontier paces sites by.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Politeness {
    /// Fetches of one domain open at once; 0 = no cap.
    pub max_in_flight: u32,
    pub pause_first: Duration,
    pub max_pause: Duration,
    /// Also the longest spacing the adaptive throttle sets.
    pub max_crawl_delay: Duration,
}

impl Politeness {
    pub fn of(c: &Crawl) -> Politeness {
        Politeness {
            max_in_flight: c.max_in_flight,
            pause_first: Duration::from_secs_f64(c.pause_first),
            max_pause: Duration::from_secs_f64(c.max_pause),
            max_crawl_delay: Duration::from_secs_f64(c.max_crawl_delay),
        }
    }

    /// The pause after the `strikes`-th slow-down in a row (1 = the first):
    /// `pause_first`, doubling, at most `max_pause`.
    pub fn pause(&self, strikes: u32) -> Duration {
        let doublings = strikes.saturating_sub(1).min(30);
        self.pause_first
            .saturating_mul(1 << doublings)
            .min(self.max_pause)
    }

    /// How long a [`Requeue::PauseSite`] pauses its domain, `strikes`
    /// being the slow-downs in a row so far, this one included.
    pub fn pause_for(&self, asked: Option<Duration>, strikes: u32) -> Duration {
        match asked {
            Some(d) => d.min(self.max_pause),
            None => self.pause(strikes),
        }
    }
}

impl Default for Politeness {
    fn default() -> Self {
        Politeness::of(&Crawl::default())
    }
}

/// A status by which a site asks us to slow down: the domain pauses.
pub fn slows_down(status: u16) -> bool {
    status == 429 || status == 503
}

/// A `Retry-After` value: seconds, or an HTTP date (a date past is 0).
pub fn retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or_default())
}

/// Why a site's queue cannot be popped now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Paused or spaced: look again after this.
    For(Duration),
    /// `max_in_flight` fetches are open: look again when one ends.
    Full,
}

/// One domain's pace in the embedded frontier.
#[derive(Debug, Default)]
pub struct Site {
    paused_until: Option<Instant>,
    strikes: u32,
    crawl_delay: Option<Duration>,
    /// The adaptive throttle's spacing.
    adaptive: Option<Duration>,
    in_flight: u32,
    last: Option<Instant>,
}

impl Site {
    /// What holds this site back, or `None` if it may be fetched now.
    pub fn wait(&self, p: &Politeness, now: Instant) -> Option<Hold> {
        if let Some(until) = self.paused_until.filter(|u| *u > now) {
            return Some(Hold::For(until - now));
        }
        if p.max_in_flight > 0 && self.in_flight >= p.max_in_flight {
            return Some(Hold::Full);
        }
        let next = self.last? + self.spacing()?;
        (next > now).then(|| Hold::For(next - now))
    }

    /// Its fetches are spaced (a Crawl-delay or adaptive spacing is known).
    pub fn is_spaced(&self) -> bool {
        self.spacing().is_some()
    }

    /// The least time between two fetches' starts, beyond the throttle.
    fn spacing(&self) -> Option<Duration> {
        self.crawl_delay.max(self.adaptive)
    }

    /// A fetch starts; returns what [`Site::unstart`] needs to undo it.
    pub fn start(&mut self, now: Instant) -> Option<Instant> {
        self.in_flight += 1;
        let before = self.last;
        if self.spacing().is_some() {
            self.last = Some(now);
        }
        before
    }

    /// The fetch [`Site::start`]ed did not start after all.
    pub fn unstart(&mut self, before: Option<Instant>) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.last = before;
    }

    /// A fetch is over (its lease may still be settling).
    pub fn fetch_over(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// A lease ended (acked, retried, given back, or expired); its fetch
    /// is already over. `ok` when the site answered without asking to
    /// slow down.
    pub fn finish(&mut self, ok: bool) {
        if ok {
            self.strikes = 0;
        }
    }

    /// The site asked to slow down: paused until `asked` from now or its
    /// growing pause.
    pub fn slow_down(&mut self, p: &Politeness, asked: Option<Duration>, now: Instant) {
        self.strikes += 1;
        let until = now + p.pause_for(asked, self.strikes);
        self.paused_until = Some(self.paused_until.map_or(until, |u| u.max(until)));
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
        self.in_flight == 0
            && self.strikes == 0
            && self.crawl_delay.is_none()
            && self.adaptive.is_none()
            && self.paused_until.is_none_or(|u| u <= now)
    }

    /// What `info` and `/metrics` show of it.
    pub fn view(&self, now: Instant) -> SiteView {
        SiteView {
            paused_for: self.paused_until.filter(|u| *u > now).map(|u| u - now),
            crawl_delay: self.crawl_delay,
            adaptive: self.adaptive,
            in_flight: self.in_flight,
        }
    }
}

/// A domain's pace as reported.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SiteView {
    pub paused_for: Option<Duration>,
    pub crawl_delay: Option<Duration>,
    pub adaptive: Option<Duration>,
    pub in_flight: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_the_cap() {
        let p = Politeness {
            pause_first: Duration::from_secs(5),
            max_pause: Duration::from_secs(600),
            ..Politeness::default()
        };
        let secs: Vec<u64> = (1..=9).map(|k| p.pause(k).as_secs()).collect();
        assert_eq!(secs, [5, 10, 20, 40, 80, 160, 320, 600, 600]);
        assert_eq!(
            p.pause_for(Some(Duration::from_secs(3600)), 1),
            Duration::from_secs(600)
        );
        assert_eq!(p.pause(u32::MAX), Duration::from_secs(600));
    }

    #[test]
    fn the_adaptive_spacing_follows_latency_and_backs_off_on_failures() {
        let ms = Duration::from_millis;
        let max = Duration::from_secs(30);
        let ok = |l| Sample {
            latency: ms(l),
            failed: false,
        };
        let mut d = adapt(None, ok(10), max);
        assert_eq!(d, ms(10));
        for _ in 0..8 {
            d = adapt(Some(d), ok(500), max);
        }
        assert!(d > ms(480) && d <= ms(500), "{d:?}");
        let failed = Sample {
            latency: ms(100),
            failed: true,
        };
        assert_eq!(adapt(Some(d), failed, max), d * 2);
        assert_eq!(adapt(Some(ms(20_000)), failed, max), max);
        for _ in 0..10 {
            d = adapt(Some(d), ok(10), max);
        }
        assert!(d < ms(11), "recovers: {d:?}");
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(retry_after(" 3 ", now), Some(Duration::from_secs(3)));
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("soon", now), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_site_waits_for_its_pause_its_cap_and_its_delay() {
        let p = Politeness {
            max_in_flight: 2,
            ..Politeness::default()
        };
        let mut s = Site::default();
        let now = Instant::now();
        assert_eq!(s.wait(&p, now), None);
        s.start(now);
        s.start(now);
        assert_eq!(s.wait(&p, now), Some(Hold::Full));
        s.fetch_over();
        assert_eq!(s.wait(&p, now), None);
        s.set_crawl_delay(Some(Duration::from_secs(1)));
        s.start(now);
        s.fetch_over();
        assert_eq!(s.wait(&p, now), Some(Hold::For(Duration::from_secs(1))));
        s.slow_down(&p, Some(Duration::from_secs(3)), now);
        assert_eq!(s.wait(&p, now), Some(Hold::For(Duration::from_secs(3))));
        assert!(!s.is_idle(now));
    }
}
