//! Whether a schedule's run fires now: from what the store says of it
//! (its last fire time dealt with, runs so far, a run still going, a run
//! waiting, paused) and the time, a [`Decision`] the firer carries out
//! with a compare-and-set on the last fire time, so that one process of
//! the fleet acts on it.

use super::{Misfire, Overlap, Schedule};
use jiff::Timestamp;
use std::time::Duration;

/// A run that starts this much after its time (jitter aside) still counts
/// as on time; later, or with a later time also past, it was missed (the
/// fleet was down) and `misfire` decides.
pub const LATE: Duration = Duration::from_secs(60);

/// A schedule as the store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    /// When it was accepted: intervals count from here.
    pub anchor: Timestamp,
    /// The last fire time dealt with (fired, skipped or queued); none
    /// before the first.
    pub last: Option<Timestamp>,
    /// Runs fired so far.
    pub runs: u32,
    /// A run is still going: something of it queued, in flight or waiting
    /// to retry.
    pub running: bool,
    /// A run waits for the current one to end (`overlap: queue`), for
    /// this fire time.
    pub pending: Option<Timestamp>,
    pub paused: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Fire run `runs + 1` for fire time `due`, stopping the current run
    /// first when `replace`.
    Fire { due: Timestamp, replace: bool },
    /// Fire times up to `due` pass without a run (`schedule.skipped`).
    Skip { due: Timestamp, why: Skipped },
    /// A run for `due` waits for the current one to end.
    Queue { due: Timestamp },
    /// Nothing to do before `Some(at)`; `None`: until something changes
    /// (a resume, the current run's end).
    Wait(Option<Timestamp>),
    /// No run will fire again (`max_runs` reached, `until` passed).
    Ended,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skipped {
    /// Due while a run was going, with `overlap: skip`.
    Overlap,
    /// Missed while nothing was up to fire it, with `misfire: skip`.
    Misfire,
}

/// What to do at `now` for `schedule`, of crawl `key`, in state `s`.
pub fn decide(schedule: &Schedule, s: &State, now: Timestamp, key: &str) -> Decision {
    if schedule.max_runs.is_some_and(|m| s.runs >= m) {
        return Decision::Ended;
    }
    if let (Some(due), false) = (s.pending, s.running) {
        // Queued behind a run that has now ended: it fires, however late.
        return Decision::Fire {
            due,
            replace: false,
        };
    }
    let next = match s.last {
        None => schedule.trigger.first(s.anchor),
        Some(last) => schedule.trigger.next_after(s.anchor, last),
    };
    let Some(due) = next.filter(|d| schedule.until.is_none_or(|u| *d <= u)) else {
        return Decision::Ended;
    };
    if s.paused || s.pending.is_some() {
        return Decision::Wait(None);
    }
    let starts = jittered(schedule, due, key);
    if now < starts {
        return Decision::Wait(Some(starts));
    }
    // One run for every fire time past: the latest is the one it is for.
    let latest = schedule
        .trigger
        .latest(s.anchor, now)
        .filter(|l| *l > due && schedule.until.is_none_or(|u| *l <= u))
        .unwrap_or(due);
    let late = latest > due || now.duration_since(starts).unsigned_abs() > LATE;
    if s.running {
        return match schedule.overlap {
            Overlap::Skip => Decision::Skip {
                due: latest,
                why: Skipped::Overlap,
            },
            Overlap::Queue => Decision::Queue { due: latest },
            Overlap::Replace => Decision::Fire {
                due: latest,
                replace: true,
            },
        };
    }
    if late && schedule.misfire == Misfire::Skip {
        return Decision::Skip {
            due: latest,
            why: Skipped::Misfire,
        };
    }
    Decision::Fire {
        due: latest,
        replace: false,
    }
}

/// When the schedule's next run starts, as `info` tells it: a run asked
/// for or queued fires when the current one ends (or now); `None` once no
/// run will fire. A paused schedule tells when it would run.
pub fn next_at(schedule: &Schedule, s: &State, key: &str) -> Option<Timestamp> {
    if schedule.max_runs.is_some_and(|m| s.runs >= m) {
        return None;
    }
    if let Some(p) = s.pending {
        return Some(p);
    }
    let next = match s.last {
        None => schedule.trigger.first(s.anchor),
        Some(last) => schedule.trigger.next_after(s.anchor, last),
    }?;
    if schedule.until.is_some_and(|u| next > u) {
        return None;
    }
    Some(jittered(schedule, next, key))
}

/// When the run for fire time `due` starts: up to `jitter` later, by an
/// offset of its own to `key` (the crawl) and `due`, the same whoever
/// computes it.
pub fn jittered(schedule: &Schedule, due: Timestamp, key: &str) -> Timestamp {
    let span = schedule.jitter.as_millis() as u64;
    if span == 0 {
        return due;
    }
    let seed = xxhash_rust::xxh3::xxh3_64_with_seed(key.as_bytes(), due.as_second() as u64);
    let offset = jiff::SignedDuration::from_millis((seed % span) as i64);
    due.checked_add(offset).unwrap_or(due)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(s: &str) -> Timestamp {
        s.parse().expect("a time")
    }

    fn schedule(field: serde_json::Value) -> Schedule {
        Schedule::parse(&field, at("2026-12-07T00:00:00Z")).expect("valid")
    }

    fn state(last: Option<&str>) -> State {
        State {
            anchor: at("2026-12-07T00:00:00Z"),
            last: last.map(at),
            runs: u32::from(last.is_some()),
            running: false,
            pending: None,
            paused: false,
        }
    }

    fn fire(due: &str) -> Decision {
        Decision::Fire {
            due: at(due),
            replace: false,
        }
    }

    #[test]
    fn an_interval_fires_at_acceptance_then_on_time() {
        let s = schedule(json!({"every": 60}));
        assert_eq!(
            decide(&s, &state(None), at("2026-12-07T00:00:00Z"), "c"),
            fire("2026-12-07T00:00:00Z")
        );
        let done = state(Some("2026-12-07T00:00:00Z"));
        assert_eq!(
            decide(&s, &done, at("2026-12-07T00:00:30Z"), "c"),
            Decision::Wait(Some(at("2026-12-07T00:01:00Z")))
        );
        // A few seconds late is on time, whatever misfire says.
        let s = schedule(json!({"every": 60, "misfire": "skip"}));
        assert_eq!(
            decide(&s, &done, at("2026-12-07T00:01:05Z"), "c"),
            fire("2026-12-07T00:01:00Z")
        );
    }

    #[test]
    fn runs_missed_while_down_fire_once_or_are_skipped() {
        let last = state(Some("2026-12-07T00:00:00Z"));
        let now = at("2026-12-07T00:10:05Z"); // ten fire times past
        let once = schedule(json!({"every": 60}));
        assert_eq!(decide(&once, &last, now, "c"), fire("2026-12-07T00:10:00Z"));
        let skip = schedule(json!({"every": 60, "misfire": "skip"}));
        assert_eq!(
            decide(&skip, &last, now, "c"),
            Decision::Skip {
                due: at("2026-12-07T00:10:00Z"),
                why: Skipped::Misfire
            }
        );
        // Then the next fires on time.
        let after = state(Some("2026-12-07T00:10:00Z"));
        assert_eq!(
            decide(&skip, &after, now, "c"),
            Decision::Wait(Some(at("2026-12-07T00:11:00Z")))
        );
        // One time, but long past: missed too.
        let daily = schedule(json!({"cron": "0 6 * * *", "misfire": "skip"}));
        let st = state(None);
        assert!(matches!(
            decide(&daily, &st, at("2026-12-07T06:05:00Z"), "c"),
            Decision::Skip {
                why: Skipped::Misfire,
                ..
            }
        ));
        assert_eq!(
            decide(&daily, &st, at("2026-12-07T06:00:30Z"), "c"),
            fire("2026-12-07T06:00:00Z")
        );
    }

    #[test]
    fn a_run_due_while_one_is_going_follows_overlap() {
        let mut st = state(Some("2026-12-07T00:00:00Z"));
        st.running = true;
        let now = at("2026-12-07T00:01:00Z");
        let due = at("2026-12-07T00:01:00Z");
        let with = |overlap: &str| schedule(json!({"every": 60, "overlap": overlap}));
        assert_eq!(
            decide(&with("skip"), &st, now, "c"),
            Decision::Skip {
                due,
                why: Skipped::Overlap
            }
        );
        assert_eq!(
            decide(&with("replace"), &st, now, "c"),
            Decision::Fire { due, replace: true }
        );
        assert_eq!(
            decide(&with("queue"), &st, now, "c"),
            Decision::Queue { due }
        );
        // Queued: it waits while the run goes on, then fires however late.
        st.pending = Some(due);
        st.last = Some(due);
        assert_eq!(
            decide(&with("queue"), &st, at("2026-12-07T00:30:00Z"), "c"),
            Decision::Wait(None)
        );
        st.running = false;
        assert_eq!(
            decide(&with("queue"), &st, at("2026-12-07T00:30:00Z"), "c"),
            Decision::Fire {
                due,
                replace: false
            }
        );
    }

    #[test]
    fn a_schedule_ends_and_pauses() {
        let capped = schedule(json!({"every": 60, "max_runs": 1}));
        let st = state(Some("2026-12-07T00:00:00Z"));
        assert_eq!(
            decide(&capped, &st, at("2026-12-07T00:05:00Z"), "c"),
            Decision::Ended
        );
        // until: 00:01:30 admits the 00:01 run, not the 00:02 one.
        let until = schedule(json!({"every": 60, "until": at("2026-12-07T00:01:30Z").as_second()}));
        assert_eq!(
            decide(&until, &st, at("2026-12-07T00:01:00Z"), "c"),
            fire("2026-12-07T00:01:00Z")
        );
        let st = state(Some("2026-12-07T00:01:00Z"));
        assert_eq!(
            decide(&until, &st, at("2026-12-07T00:02:00Z"), "c"),
            Decision::Ended
        );
        let mut paused = state(Some("2026-12-07T00:00:00Z"));
        paused.paused = true;
        let s = schedule(json!({"every": 60}));
        assert_eq!(
            decide(&s, &paused, at("2026-12-07T00:05:00Z"), "c"),
            Decision::Wait(None)
        );
    }

    #[test]
    fn jitter_is_bounded_and_the_same_whoever_computes_it() {
        let s = schedule(json!({"every": 3600, "jitter": 600}));
        let due = at("2026-12-07T01:00:00Z");
        let offsets: Vec<i64> = (0..50)
            .map(|i| {
                jittered(&s, due, &format!("crawl-{i}"))
                    .duration_since(due)
                    .as_millis() as i64
            })
            .collect();
        assert!(
            offsets.iter().all(|o| (0..600_000).contains(o)),
            "{offsets:?}"
        );
        assert!(
            offsets.iter().any(|o| *o != offsets[0]),
            "spread across crawls"
        );
        assert_eq!(jittered(&s, due, "crawl-7"), jittered(&s, due, "crawl-7"));
        // A run waits for its own offset.
        let st = state(Some("2026-12-07T00:00:00Z"));
        let starts = jittered(&s, due, "c");
        assert_eq!(
            decide(&s, &st, due, "c"),
            if starts > due {
                Decision::Wait(Some(starts))
            } else {
                fire("2026-12-07T01:00:00Z")
            }
        );
    }

    #[test]
    fn next_at_tells_the_next_run_or_none_once_over() {
        let s = schedule(json!({"every": 60, "max_runs": 2}));
        assert_eq!(
            next_at(&s, &state(None), "c"),
            Some(at("2026-12-07T00:00:00Z"))
        );
        let one = state(Some("2026-12-07T00:00:00Z"));
        assert_eq!(next_at(&s, &one, "c"), Some(at("2026-12-07T00:01:00Z")));
        // A run asked for (run-now) comes first.
        let mut asked = one.clone();
        asked.pending = Some(at("2026-12-07T00:00:30Z"));
        assert_eq!(next_at(&s, &asked, "c"), Some(at("2026-12-07T00:00:30Z")));
        let mut two = one;
        two.runs = 2;
        assert_eq!(next_at(&s, &two, "c"), None, "max_runs reached");
    }

    #[test]
    fn run_now_fires_a_paused_schedule_once_without_unpausing_it() {
        let s = schedule(json!({"every": 3600}));
        let mut st = state(Some("2026-12-07T00:00:00Z"));
        st.paused = true;
        st.pending = Some(at("2026-12-07T00:10:00Z"));
        assert_eq!(
            decide(&s, &st, at("2026-12-07T00:10:00Z"), "c"),
            fire("2026-12-07T00:10:00Z")
        );
        st.pending = None;
        st.last = Some(at("2026-12-07T00:10:00Z"));
        assert_eq!(
            decide(&s, &st, at("2026-12-07T02:00:00Z"), "c"),
            Decision::Wait(None),
            "still paused"
        );
    }
}
