//! Webhooks (issue 31): a crawl's `webhook` field (`webhook.rs`) and the
//! notifier that POSTs its events there, signed, retried and bounded
//! (`notifier.rs`), its deliveries kept until done on a cluster
//! (`outbox.rs`). The events themselves are `crate::events`; which are
//! sent when is `crate::runs`.

mod notifier;
mod outbox;
mod webhook;

pub use notifier::{DeadLetters, Notifier, Undelivered};
pub use outbox::{Kept, Outbox, OutboxError, HOLD};
pub use webhook::{Webhook, MAX_METADATA, MAX_URL};
