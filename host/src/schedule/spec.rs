//! The request's `schedule` field, validated: `{"every": SECONDS}` or
//! `{"cron": EXPR, "tz": ZONE}`, with `jitter`, `overlap`, `misfire`,
//! `until` (unix seconds) and `max_runs`. A field a client got wrong is
//! an error that says what to change; the request then goes to the
//! dead-letter topic like any invalid one.

use super::times::Trigger;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::Deserialize;
use std::str::FromStr;
use std::time::Duration;
use thiserror::Error;

/// The shortest interval: a run a second is already more than a site
/// should see from one crawl.
pub const MIN_EVERY: Duration = Duration::from_secs(1);
/// The longest interval, and the furthest a cron expression may next fire:
/// one that matches nothing within a year (`0 0 30 2 *`) is refused.
pub const MAX_EVERY: Duration = Duration::from_secs(366 * 24 * 3600);
/// At most this much jitter (an hour, as the research's design says).
pub const MAX_JITTER: Duration = Duration::from_secs(3600);
/// A cron expression longer than this is refused before it is parsed.
pub const MAX_CRON_LEN: usize = 256;

/// What happens when a run falls due while the last is still running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Overlap {
    /// The due run is skipped (`schedule.skipped`); the next one is due
    /// as usual.
    #[default]
    Skip,
    /// The due run fires when the current one ends (at most one waits).
    Queue,
    /// The current run is stopped and the due one fires.
    Replace,
}

/// What happens to runs that fell due while nothing was up to fire them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Misfire {
    /// One run fires at once for all that were missed.
    #[default]
    Once,
    /// The missed runs are skipped; the next fires when it is due.
    Skip,
}

/// A validated schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub trigger: Trigger,
    /// Each run fires up to this much after its time (the same offset for
    /// a crawl's run every time it is computed).
    pub jitter: Duration,
    pub overlap: Overlap,
    pub misfire: Misfire,
    /// No run fires after this.
    pub until: Option<Timestamp>,
    /// The schedule ends after this many runs.
    pub max_runs: Option<u32>,
}

#[derive(Debug, Error, PartialEq)]
pub enum ScheduleError {
    #[error("schedule: {0}")]
    Invalid(String),
}

fn invalid(what: impl Into<String>) -> ScheduleError {
    ScheduleError::Invalid(what.into())
}

/// The field as sent, before it is checked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    every: Option<f64>,
    cron: Option<String>,
    tz: Option<String>,
    #[serde(default)]
    jitter: f64,
    #[serde(default)]
    overlap: Overlap,
    #[serde(default)]
    misfire: Misfire,
    until: Option<i64>,
    max_runs: Option<u32>,
}

impl Schedule {
    /// The `schedule` field of a request, checked; `now` is when it was
    /// accepted (an `until` already past is refused).
    pub fn parse(field: &serde_json::Value, now: Timestamp) -> Result<Schedule, ScheduleError> {
        let w = Wire::deserialize(field).map_err(|e| invalid(e.to_string()))?;
        let trigger = match (w.every, w.cron) {
            (Some(_), Some(_)) => return Err(invalid("give either every or cron, not both")),
            (None, None) => {
                return Err(invalid(
                    "give every (seconds between runs) or cron (an expression)",
                ))
            }
            (Some(every), None) => {
                if w.tz.is_some() {
                    return Err(invalid("tz applies to cron only"));
                }
                Trigger::Every(seconds("every", every, MIN_EVERY, MAX_EVERY)?)
            }
            (None, Some(expr)) => cron(&expr, w.tz.as_deref(), now)?,
        };
        let jitter = seconds("jitter", w.jitter, Duration::ZERO, MAX_JITTER)?;
        if let Trigger::Every(every) = trigger {
            if jitter >= every {
                return Err(invalid(format!(
                    "jitter ({} s) must be shorter than every ({} s)",
                    jitter.as_secs_f64(),
                    every.as_secs_f64()
                )));
            }
        }
        let until = match w.until {
            None => None,
            Some(s) => {
                let t = Timestamp::from_second(s)
                    .map_err(|_| invalid(format!("until {s} is not a unix time in seconds")))?;
                if t <= now {
                    return Err(invalid(format!("until {s} is already past")));
                }
                Some(t)
            }
        };
        if w.max_runs == Some(0) {
            return Err(invalid("max_runs must be at least 1"));
        }
        Ok(Schedule {
            trigger,
            jitter,
            overlap: w.overlap,
            misfire: w.misfire,
            until,
            max_runs: w.max_runs,
        })
    }
}

/// `value` seconds as a duration within `[min, max]`.
fn seconds(
    name: &str,
    value: f64,
    min: Duration,
    max: Duration,
) -> Result<Duration, ScheduleError> {
    if !value.is_finite() || value < min.as_secs_f64() || value > max.as_secs_f64() {
        return Err(invalid(format!(
            "{name} must be between {} and {} seconds, not {value}",
            min.as_secs(),
            max.as_secs()
        )));
    }
    Ok(Duration::from_secs_f64(value))
}

fn cron(expr: &str, tz: Option<&str>, now: Timestamp) -> Result<Trigger, ScheduleError> {
    if expr.len() > MAX_CRON_LEN {
        return Err(invalid(format!(
            "cron is {} characters; at most {MAX_CRON_LEN}",
            expr.len()
        )));
    }
    let parsed = croner::Cron::from_str(expr)
        .map_err(|e| invalid(format!("cron {expr:?} is not an expression: {e}")))?;
    let tz = match tz {
        None => TimeZone::UTC,
        Some(name) => TimeZone::get(name).map_err(|_| {
            invalid(format!(
                "tz {name:?} is not a time zone (an IANA name such as Europe/Berlin)"
            ))
        })?,
    };
    let trigger = Trigger::Cron {
        expr: Box::new(parsed),
        tz,
    };
    // An expression that never fires would hold its crawl forever.
    match trigger.next_after(now, now) {
        Some(t) if t.duration_since(now).unsigned_abs() <= MAX_EVERY => Ok(trigger),
        _ => Err(invalid(format!(
            "cron {expr:?} does not fire within a year"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> Timestamp {
        Timestamp::from_second(1_796_000_000).expect("time")
    }

    fn err(v: serde_json::Value) -> String {
        match Schedule::parse(&v, now()) {
            Err(ScheduleError::Invalid(e)) => e,
            Ok(s) => panic!("{v} was accepted: {s:?}"),
        }
    }

    #[test]
    fn a_field_is_accepted_with_its_defaults() {
        let s = Schedule::parse(&json!({"every": 3600}), now()).expect("valid");
        assert!(matches!(s.trigger, Trigger::Every(d) if d == Duration::from_secs(3600)));
        assert_eq!((s.overlap, s.misfire), (Overlap::Skip, Misfire::Once));
        assert_eq!(
            (s.jitter, s.until, s.max_runs),
            (Duration::ZERO, None, None)
        );
        let s = Schedule::parse(
            &json!({"cron": "0 */6 * * *", "tz": "Europe/Berlin", "jitter": 60,
                    "overlap": "queue", "misfire": "skip", "until": 1_797_000_000, "max_runs": 3}),
            now(),
        )
        .expect("valid");
        assert!(matches!(s.trigger, Trigger::Cron { .. }));
        assert_eq!((s.overlap, s.misfire), (Overlap::Queue, Misfire::Skip));
        assert_eq!(s.max_runs, Some(3));
    }

    #[test]
    fn what_a_client_got_wrong_is_said() {
        assert!(err(json!({})).contains("every"));
        assert!(err(json!({"every": 60, "cron": "* * * * *"})).contains("not both"));
        assert!(err(json!({"every": 0.5})).contains("every must be between 1"));
        assert!(err(json!({"every": 1e12})).contains("every must be"));
        assert!(err(json!({"every": 60, "jitter": 60})).contains("shorter than every"));
        assert!(err(json!({"every": 60, "tz": "UTC"})).contains("cron only"));
        assert!(err(json!({"cron": "61 * * * *"})).contains("not an expression"));
        assert!(err(json!({"cron": "0 0 * * *", "tz": "Mars/Olympus"})).contains("not a time zone"));
        assert!(err(json!({"cron": "0 0 30 2 *"})).contains("within a year"));
        assert!(err(json!({"cron": "* ".repeat(200)})).contains("at most 256"));
        assert!(err(json!({"every": 60, "until": 1_000})).contains("already past"));
        assert!(err(json!({"every": 60, "max_runs": 0})).contains("at least 1"));
        assert!(err(json!({"every": 60, "overlap": "always"})).contains("unknown variant"));
        assert!(err(json!({"every": 60, "cadence": 1})).contains("unknown field"));
    }
}
