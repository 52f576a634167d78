//! Where a cluster's notifiers keep deliveries until they are done, so a
//! retry schedule survives a restart: each delivery is kept with the time
//! after which another notifier may take it over (its next try plus
//! [`HOLD`], pushed on every few seconds while its notifier lives); one
//! whose notifier died is claimed by the next that looks, and goes out
//! with the same `webhook-id` (receivers drop a duplicate).
//! The Redis outbox is `monitor/store/outbox.rs`; embedded, deliveries
//! live as long as the process.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The outbox did not answer: what was to be kept stays in memory.
#[derive(Debug, thiserror::Error)]
#[error("webhook outbox unavailable: {0}")]
pub struct OutboxError(pub String);

/// How long past its next try a kept delivery stays its notifier's.
pub const HOLD: Duration = Duration::from_secs(15);

/// One event for one endpoint, as kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Kept {
    pub url: String,
    pub id: String,
    pub appid: String,
    pub crawlid: String,
    pub event: String,
    /// The signed body (JSON).
    pub body: String,
    /// Tries made so far.
    pub attempts: usize,
}

impl Kept {
    /// Its name in the outbox: one per (endpoint, event).
    pub fn key(&self) -> String {
        format!("{}\n{}", self.url, self.id)
    }
}

#[async_trait]
pub trait Outbox: Send + Sync {
    /// Keep (or update) a delivery; another notifier may take it over
    /// after `until` (unix ms).
    async fn keep(&self, kept: &Kept, until: i64) -> Result<(), OutboxError>;
    /// The notifier holding these (by [`Kept::key`]) is alive: none is
    /// taken over before `until` (a later time already set stays).
    async fn hold(&self, keys: &[String], until: i64) -> Result<(), OutboxError>;
    /// It was delivered or dead-lettered.
    async fn done(&self, kept: &Kept) -> Result<(), OutboxError>;
    /// Deliveries no notifier holds at `now` (unix ms), at most `n`, each
    /// now held by the caller until `now + HOLD`.
    async fn claim(&self, now: i64, n: usize) -> Result<Vec<Kept>, OutboxError>;
}
