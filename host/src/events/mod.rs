//! A crawl's life pushed out (issue 31, first part): lifecycle events and
//! the webhooks that carry them. `event` is an event as it goes out (sorted
//! JSON, CloudEvents headers, an id the same for a duplicate); `sign`
//! signs a webhook delivery as Standard Webhooks 1.0 says. The events
//! topic, completion detection and the notifier build on them.

pub mod event;
pub mod sign;
