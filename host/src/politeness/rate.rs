//! The rate a site allows, learned from its answers (AIMD, as TCP does
//! with its window). A site that never asks us to slow down has no learned
//! rate: the throttle alone paces it. Its first 429 or 503 starts a slow
//! start at [`START`] fetches/s (or below the throttle, if that is
//! slower), doubling each second of successes; every later slow-down cuts
//! the rate to [`DECREASE`] of itself, and successes climb back to the old
//! rate over [`RAMP`] (additive increase). A site's fetches are spaced by
//! `1 / rate`, so after a cut or a pause the site gets one request, then
//! the next a spacing later: never a burst of `max_in_flight` requests
//! into a limiter that just said no.
//!
//! Only a slow-down answering a fetch started after the last cut cuts
//! again: the fetches already in flight when a site says no would say the
//! same, and say nothing new (TCP cuts once per window for the same
//! reason). The embedded frontier keeps a [`Rate`] in its `Site`; the
//! Redis frontier keeps `rt`, `ss` and `st` in `ds:<domain>`, computed by
//! `site.lua` with the numbers of [`Learning::args`].

use std::time::Duration;

/// A cut keeps this share of the rate.
pub const DECREASE: f64 = 0.7;
/// The first learned rate (fetches/s), unless the throttle is slower.
pub const START: f64 = 1.0;
/// Successes climb back to the rate before a cut in this long.
pub const RAMP: Duration = Duration::from_secs(10);

/// A site's learned rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Fetches per second.
    pub per_sec: f64,
    /// Doubling each second of successes (until the first cut after it).
    pub slow_start: bool,
    /// The additive increase: fetches/s gained per second of successes.
    pub step: f64,
}

impl Rate {
    /// The least time between two fetches' starts at this rate.
    pub fn spacing(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.per_sec)
    }
}

/// The bounds a rate is learned within.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Learning {
    /// The slowest rate: one fetch per `crawl.max_crawl_delay`.
    pub floor: f64,
    /// The throttle's rate (`throttle.hits / window`): a rate that climbs
    /// to it is forgotten, the throttle alone paces the site again.
    pub ceiling: f64,
}

impl Learning {
    /// The site asked to slow down (a fetch started after the last cut).
    pub fn cut(&self, rate: Option<Rate>) -> Rate {
        match rate {
            None => Rate {
                per_sec: START.min(self.ceiling * DECREASE).max(self.floor),
                slow_start: true,
                step: 0.0,
            },
            Some(r) => {
                let per_sec = (r.per_sec * DECREASE).max(self.floor);
                Rate {
                    per_sec,
                    slow_start: false,
                    step: (r.per_sec - per_sec) / RAMP.as_secs_f64(),
                }
            }
        }
    }

    /// One success: `None` once the rate reaches the throttle's.
    pub fn grow(&self, r: Rate) -> Option<Rate> {
        let per_sec = if r.slow_start {
            // `per_sec` successes a second, each adding one: doubled per second.
            r.per_sec + 1.0
        } else {
            r.per_sec + r.step / r.per_sec
        };
        (per_sec < self.ceiling).then_some(Rate { per_sec, ..r })
    }

    /// The numbers `site.lua` learns by: "decrease,start,ramp_ms,floor,ceiling".
    pub fn args(&self) -> String {
        format!(
            "{DECREASE},{START},{},{},{}",
            RAMP.as_millis(),
            self.floor,
            self.ceiling
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn learning() -> Learning {
        Learning {
            floor: 1.0 / 30.0,
            ceiling: 1000.0,
        }
    }

    #[test]
    fn a_first_slow_down_starts_slowly_and_doubles_each_second() {
        let l = learning();
        let mut r = l.cut(None);
        assert_eq!((r.per_sec, r.slow_start), (START, true));
        for _ in 0..3 {
            r = l.grow(r).expect("below the ceiling");
        }
        assert_eq!(r.per_sec, 4.0, "1 success at 1/s, then 2 at 2/s: 4/s");
    }

    #[test]
    fn a_cut_keeps_seven_tenths_and_successes_climb_back_over_the_ramp() {
        let l = learning();
        let mut r = l.cut(Some(Rate {
            per_sec: 20.0,
            slow_start: true,
            step: 0.0,
        }));
        assert!((r.per_sec - 14.0).abs() < 1e-9 && !r.slow_start);
        // RAMP seconds of successes at about the rate reached.
        let mut seconds = 0.0;
        while r.per_sec < 20.0 {
            seconds += 1.0 / r.per_sec;
            r = l.grow(r).expect("below the ceiling");
        }
        assert!((9.0..11.0).contains(&seconds), "{seconds}");
    }

    #[test]
    fn the_rate_stays_between_the_floor_and_the_throttle() {
        let l = Learning {
            floor: 0.5,
            ceiling: 1.0,
        };
        let first = l.cut(None);
        assert!((first.per_sec - 0.7).abs() < 1e-9, "below the throttle");
        let mut r = first;
        for _ in 0..20 {
            r = l.cut(Some(r));
        }
        assert_eq!(r.per_sec, 0.5);
        assert_eq!(l.grow(first), None, "at the throttle: forgotten");
    }
}
