//! Webhooks (issue 31): a crawl's `webhook` field (`webhook.rs`) and the
//! notifier that POSTs its events there, signed, retried and bounded
//! (`notifier.rs`). The events themselves are `crate::events`; which are
//! sent when is `crate::runs`.

mod notifier;
mod webhook;

pub use notifier::{DeadLetters, Notifier, Undelivered};
pub use webhook::{Webhook, MAX_METADATA, MAX_URL};
