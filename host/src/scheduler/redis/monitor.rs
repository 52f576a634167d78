//! The monitor side of the Redis store: the handle the ingest monitor,
//! control plane, gateway, `/metrics` and CLI hold. Its operations live
//! with their kind (`ingest.rs`, `control.rs`, `stats.rs`, `replies.rs`);
//! here are the handle and what it passes through to the worker side.

use super::{Counts, Expired, LiveWorker, RedisStore, StoreError};
use crate::request::CrawlSpec;
use crate::scheduler::Frontier;
use std::sync::Arc;

/// The monitor side of the store (see the module's doc): what the ingest
/// monitor, the control plane, the gateway and the CLI act on. Workers
/// hold the [`RedisStore`] and never these operations.
#[derive(Clone)]
pub struct Monitor {
    pub(super) store: Arc<RedisStore>,
}

impl Monitor {
    pub fn new(store: Arc<RedisStore>) -> Monitor {
        Monitor { store }
    }

    /// The process's id in the cluster (`host:pid`).
    pub fn machine(&self) -> &str {
        &self.store.machine
    }

    /// Requests queued and in flight, cluster-wide (for `/metrics`).
    pub async fn counts(&self) -> Result<Counts, StoreError> {
        self.store.counts().await
    }

    /// A crawl's spec, by its `crawl_ref`.
    pub async fn spec(&self, cref: &str) -> Result<Option<Arc<CrawlSpec>>, StoreError> {
        self.store.spec(cref).await
    }

    /// Stop the crawls whose expiry has passed (shared with the workers'
    /// upkeep: whoever claims one first).
    pub async fn expire_due(&self) -> Result<Vec<Expired>, StoreError> {
        self.store.expire_due().await
    }

    pub async fn live_workers(&self) -> Result<Vec<LiveWorker>, StoreError> {
        self.store.live_workers().await
    }

    /// Put a request on the control stream, for the control plane.
    pub async fn control_push(&self, json: &str) -> Result<(), StoreError> {
        self.store.control_push(json).await
    }
}
