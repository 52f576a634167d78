//! A crawl's life pushed out (issue 31): lifecycle events and the webhooks
//! that carry them. `event` is an event as it goes out (sorted JSON,
//! CloudEvents headers, an id the same for a duplicate); `sign` signs a
//! webhook delivery as Standard Webhooks 1.0 says; `sink` is where events
//! are written (a file or stderr when embedded); `pauses` picks which
//! site pauses are told (`domain.paused`). What happens to a crawl's
//! runs, and so which events are sent, is `crate::runs`.

pub mod event;
pub mod pauses;
pub mod sign;
pub mod sink;

pub use event::{Event, Kind, Stats};
pub use sink::{EventSink, JsonlEvents, Tee};
