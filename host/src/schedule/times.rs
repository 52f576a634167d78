//! A schedule's fire times: an interval counted from when the schedule
//! was accepted, or a cron expression on a time zone's wall clock (across
//! daylight saving changes as Vixie cron does: a fixed time that falls in
//! the spring gap fires just after it, once in the autumn's repeated hour;
//! an hourly or finer expression fires through both).

use jiff::tz::TimeZone;
use jiff::Timestamp;
use std::time::Duration;

/// What fires the runs.
#[derive(Debug, Clone)]
pub enum Trigger {
    /// Every so long from the moment the schedule was accepted.
    Every(Duration),
    /// A cron expression (5 fields, or 6 with seconds first) read on the
    /// wall clock of a time zone (UTC unless `tz` says otherwise).
    Cron {
        expr: Box<croner::Cron>,
        tz: TimeZone,
    },
}

impl Trigger {
    /// The first fire time: the moment of acceptance for an interval, the
    /// next match after it for cron.
    pub(super) fn first(&self, anchor: Timestamp) -> Option<Timestamp> {
        match self {
            Trigger::Every(_) => Some(anchor),
            Trigger::Cron { .. } => self.next_after(anchor, anchor),
        }
    }

    /// The first fire time strictly after `after`.
    pub(super) fn next_after(&self, anchor: Timestamp, after: Timestamp) -> Option<Timestamp> {
        match self {
            Trigger::Every(every) => {
                let (every, since) = interval(*every, anchor, after);
                let k = if since < 0 { 0 } else { since / every + 1 };
                Timestamp::from_nanosecond(anchor.as_nanosecond() + k * every).ok()
            }
            Trigger::Cron { expr, tz } => expr
                .find_next_occurrence(&after.to_zoned(tz.clone()), false)
                .ok()
                .map(|z| z.timestamp()),
        }
    }

    /// The last fire time at or before `now` (none before the first).
    pub(super) fn latest(&self, anchor: Timestamp, now: Timestamp) -> Option<Timestamp> {
        match self {
            Trigger::Every(every) => {
                let (every, since) = interval(*every, anchor, now);
                (since >= 0).then(|| anchor.as_nanosecond() + since / every * every)
            }
            .and_then(|n| Timestamp::from_nanosecond(n).ok()),
            Trigger::Cron { expr, tz } => expr
                .find_previous_occurrence(&now.to_zoned(tz.clone()), true)
                .ok()
                .map(|z| z.timestamp())
                .filter(|t| *t > anchor),
        }
    }
}

/// An interval and the time from `anchor` to `t`, in nanoseconds.
fn interval(every: Duration, anchor: Timestamp, t: Timestamp) -> (i128, i128) {
    (
        (every.as_nanos() as i128).max(1),
        t.as_nanosecond() - anchor.as_nanosecond(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::tz::TimeZone;
    use std::str::FromStr;

    fn at(s: &str) -> Timestamp {
        s.parse().expect("a time")
    }

    fn cron(expr: &str, tz: &str) -> Trigger {
        Trigger::Cron {
            expr: Box::new(croner::Cron::from_str(expr).expect("cron")),
            tz: TimeZone::get(tz).expect("tz"),
        }
    }

    /// The fire times after `from`, `n` of them.
    fn fires(t: &Trigger, from: &str, n: usize) -> Vec<String> {
        let anchor = at(from);
        let mut out = Vec::new();
        let mut last = anchor;
        for _ in 0..n {
            last = t.next_after(anchor, last).expect("a next time");
            out.push(last.to_string());
        }
        out
    }

    #[test]
    fn a_fixed_time_in_the_spring_gap_fires_just_after_it_and_once_in_autumn() {
        // Berlin: 2026-03-29 02:00 CET jumps to 03:00 CEST; 2026-10-25
        // 03:00 CEST goes back to 02:00 CET.
        let daily = cron("30 2 * * *", "Europe/Berlin");
        assert_eq!(
            fires(&daily, "2026-03-28T12:00:00Z", 3),
            [
                "2026-03-29T01:00:00Z", // 03:00 CEST, the first minute after the gap
                "2026-03-30T00:30:00Z", // 02:30 CEST
                "2026-03-31T00:30:00Z",
            ]
        );
        assert_eq!(
            fires(&daily, "2026-10-24T12:00:00Z", 2),
            [
                "2026-10-25T00:30:00Z", // 02:30 CEST, the first of the two
                "2026-10-26T01:30:00Z", // 02:30 CET: not again on the 25th
            ]
        );
    }

    #[test]
    fn an_hourly_schedule_fires_every_hour_through_both_changes() {
        let hourly = cron("0 * * * *", "Europe/Berlin");
        for from in ["2026-03-28T22:30:00Z", "2026-10-24T22:30:00Z"] {
            let times: Vec<Timestamp> = fires(&hourly, from, 6).iter().map(|t| at(t)).collect();
            for pair in times.windows(2) {
                assert_eq!(pair[1].duration_since(pair[0]).as_secs(), 3600, "{times:?}");
            }
        }
    }

    #[test]
    fn an_interval_counts_from_acceptance() {
        let every = Trigger::Every(Duration::from_secs(90));
        let anchor = at("2026-12-07T00:00:00Z");
        assert_eq!(every.first(anchor), Some(anchor));
        assert_eq!(
            fires(&every, "2026-12-07T00:00:00Z", 2),
            ["2026-12-07T00:01:30Z", "2026-12-07T00:03:00Z"]
        );
        let now = at("2026-12-07T01:00:10Z");
        assert_eq!(every.latest(anchor, now), Some(at("2026-12-07T01:00:00Z")));
        assert_eq!(every.latest(anchor, at("2026-12-06T23:00:00Z")), None);
        let daily = cron("0 6 * * *", "UTC");
        assert_eq!(
            daily.latest(anchor, at("2026-12-09T07:00:00Z")),
            Some(at("2026-12-09T06:00:00Z"))
        );
        assert_eq!(daily.latest(anchor, at("2026-12-07T05:00:00Z")), None);
    }
}
