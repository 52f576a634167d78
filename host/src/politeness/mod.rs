//! Politeness: how fast a site may be fetched, in one room. The throttle
//! (`throttle.rs`: so many fetches per window per key), and beyond it a
//! site's pace for every worker at once: paused after a 429 or 503
//! (`Retry-After` or a growing pause), spaced by its robots.txt
//! `Crawl-delay` (capped) or the adaptive throttle, capped in fetches
//! open at once. The rules and their numbers live here; the stores keep
//! the state: the embedded frontier in [`Site`] (`site.rs`), the Redis
//! frontier in hash `ds:<domain>` on the pop script's shard, by the Lua
//! beside it (`site.lua`), which gets every number from here as an
//! argument. `scheduler/twins.rs` runs the same scenarios on both.

pub mod rate;
mod site;
pub mod throttle;

pub use rate::{Learning, Rate};
pub use site::{Site, SiteView};

use crate::config::{Crawl, Throttle};
use std::time::Duration;

/// When a request put back in its lease's place may be fetched again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requeue {
    /// At once (a redirect hop; robots.txt took its throttle slot).
    Now,
    /// After a backoff of its own (a retry); other requests go on
    /// meanwhile. The failed fetch's [`Sample`], for the adaptive throttle.
    After(Duration, Option<Sample>),
    /// Its site asked us to slow down (429, 503): its learned rate is cut
    /// ([`rate`]) and, for every worker, the domain pauses for the site's
    /// `Retry-After` (capped by `crawl.max_pause`) or, without one and
    /// from the second slow-down in a row, for its growing pause.
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
    /// Of them, one app's at most; 0 = no cap.
    pub max_in_flight_per_app: u32,
    pub pause_first: Duration,
    pub max_pause: Duration,
    /// Also the longest spacing the adaptive throttle sets.
    pub max_crawl_delay: Duration,
    pub learning: Learning,
}

impl Politeness {
    pub fn of(c: &Crawl, t: &Throttle) -> Politeness {
        Politeness {
            max_in_flight: c.max_in_flight,
            max_in_flight_per_app: c.max_in_flight_per_app,
            pause_first: c.pause_first,
            max_pause: c.max_pause,
            max_crawl_delay: c.max_crawl_delay,
            learning: Learning {
                floor: 1.0 / c.max_crawl_delay.as_secs_f64().max(0.001),
                ceiling: f64::from(t.hits) / t.window.as_secs_f64(),
            },
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
    /// being the slow-downs in a row so far, this one included: the
    /// site's `Retry-After`, else nothing for the first (the cut rate
    /// spaces the next fetch), then the growing pause from the second.
    pub fn pause_for(&self, asked: Option<Duration>, strikes: u32) -> Duration {
        match asked {
            Some(d) => d.min(self.max_pause),
            None if strikes <= 1 => Duration::ZERO,
            None => self.pause(strikes - 1),
        }
    }

    /// [`Politeness::pause_for`] without `Retry-After` for 1, 2, ...
    /// strikes up to the first at `max_pause` (the last entry holds for
    /// every strike after): what `site.lua` indexes by its strike count,
    /// so the rule is written once, here. At most 32 entries.
    pub fn pause_schedule(&self) -> Vec<Duration> {
        let mut out = Vec::new();
        for k in 1..=32 {
            let d = self.pause_for(None, k);
            out.push(d);
            if d >= self.max_pause {
                break;
            }
        }
        out
    }

    /// A robots.txt `Crawl-delay` as the site's spacing: at most
    /// `crawl.max_crawl_delay` (a hostile robots.txt cannot stall a
    /// crawl), `None` if none or zero.
    pub fn crawl_delay(&self, asked: Option<Duration>) -> Option<Duration> {
        asked
            .map(|d| d.min(self.max_crawl_delay))
            .filter(|d| !d.is_zero())
    }
}

impl Default for Politeness {
    fn default() -> Self {
        Politeness::of(&Crawl::default(), &Throttle::default())
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

/// How long a pop that found a site at its in-flight cap tells its worker
/// to wait, if no fetch of the site ends first (a worker that ends one
/// pops again at once).
pub const FULL_RECHECK: Duration = Duration::from_secs(1);

/// Why a site's queue cannot be popped now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Paused or spaced: look again after this.
    For(Duration),
    /// `max_in_flight` fetches are open: look again when one ends.
    Full,
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
        let schedule: Vec<u64> = p.pause_schedule().iter().map(Duration::as_secs).collect();
        assert_eq!(schedule, [0, 5, 10, 20, 40, 80, 160, 320, 600]);
        let never = Politeness {
            pause_first: Duration::from_millis(1),
            max_pause: Duration::from_secs(86_400 * 365),
            ..Politeness::default()
        };
        assert_eq!(never.pause_schedule().len(), 32);
    }

    #[test]
    fn a_crawl_delay_is_capped_and_a_zero_one_ignored() {
        let p = Politeness::default();
        let day = Some(Duration::from_secs(86_400));
        assert_eq!(p.crawl_delay(day), Some(p.max_crawl_delay));
        assert_eq!(p.crawl_delay(Some(Duration::ZERO)), None);
        assert_eq!(p.crawl_delay(None), None);
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
}
