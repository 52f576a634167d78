//! Recurring crawls (issue 31): a request's `schedule` field, validated,
//! and when its runs fall due. This module is the clock's side only, pure
//! and tested on its own: `spec` turns the field into a [`Schedule`] (or
//! an error a client can act on), `times` gives its fire times (cron in a
//! time zone, across daylight saving changes, or a fixed interval; with a
//! jitter of its own per crawl), and `decide` decides, from what the store
//! says of the schedule, whether a run fires now, is skipped (overlap,
//! misfire), replaces the current one, or waits.
//!
//! Firing a run exactly once across the fleet (a compare-and-set on the
//! schedule's last fire time in the store), the actions on the incoming
//! topic and REST, and `info` build on this.

mod decide;
mod spec;
mod times;

pub use decide::{decide, jittered, next_at, Decision, Skipped, State};
pub use spec::{Misfire, Overlap, Schedule, ScheduleError};
pub use times::Trigger;
