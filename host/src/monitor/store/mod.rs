//! The monitors' store: what the ingest monitor, the control plane, the
//! REST gateway, `/metrics` and the CLI act on in Redis. Ingest of a
//! partition's batch (`intake.rs`), the control stream (`stream.rs`),
//! crawl info, stop, expiry and domain settings (`crawls.rs`), the stats
//! windows and status (`windows.rs`), who is up (`members.rs`) and the
//! gateway's stored replies (`replies.rs`). It shares the process's
//! connection and shards ([`crate::store::Redis`]) with the worker's
//! frontier, and never leases.

use crate::config::Settings;
use crate::scheduler::Counts;
use crate::store::{script, Con, Redis, StoreError};
use async_trait::async_trait;
use redis::Script;
use std::sync::Arc;
use std::time::Duration;

mod crawls;
mod intake;
mod lives;
mod members;
mod outbox;
mod replies;
mod schedules;
mod stream;
mod timeline;
mod windows;
pub use crawls::{AppCrawlInfo, CrawlInfo, DomainAction, DomainQueue, Expired, HeldBack};
pub use intake::{IngestEntry, IngestOutcome, Ingested};
pub use members::LiveWorker;
pub use windows::{
    CrawlStatus, QueueDepth, SitePaces, Status, Windows, WorkerStatus, SITES_LISTED, WINDOWS,
};

struct Scripts {
    stop: Script,
    expire: Script,
    info: Script,
    ingest: Script,
    domain: Script,
    schedules: Script,
    outbox: Script,
}

/// The monitors' side of the store (see the module's doc). Cheap to
/// clone: the roles of one process share it.
#[derive(Clone)]
pub struct MonitorStore {
    redis: Arc<Redis>,
    scripts: Arc<Scripts>,
    /// For blocking reads (the control stream), apart from the shared
    /// connection.
    blocking: Arc<tokio::sync::Mutex<Option<Con>>>,
    /// `crawl.global_page_per_domain_limit` (0 = off), for seeds ingested.
    global_cap: u32,
    /// A monitor role's process without a heartbeat this long is gone.
    heartbeat_ttl: Duration,
    /// This process (`host:pid`), in heartbeats and claims.
    machine: Arc<str>,
}

impl MonitorStore {
    pub fn new(redis: Arc<Redis>, settings: &Settings) -> MonitorStore {
        MonitorStore {
            redis,
            scripts: Arc::new(Scripts {
                stop: script(include_str!("stop.lua")),
                expire: script(include_str!("expire.lua")),
                info: script(include_str!("info.lua")),
                ingest: script(include_str!("ingest.lua")),
                domain: script(include_str!("domain.lua")),
                schedules: script(include_str!("schedules.lua")),
                outbox: script(include_str!("outbox.lua")),
            }),
            blocking: Arc::default(),
            global_cap: settings.crawl.global_page_per_domain_limit,
            heartbeat_ttl: Duration::from_secs(settings.stats.heartbeat_ttl),
            machine: crate::store::this_machine().1.into(),
        }
    }

    /// The process's id in the cluster (`host:pid`).
    pub fn machine(&self) -> &str {
        &self.machine
    }

    /// Requests queued and in flight, cluster-wide (for `/metrics`).
    pub async fn counts(&self) -> Result<Counts, StoreError> {
        let mut total = Counts::default();
        for (queued, in_flight) in self.redis.counts().await? {
            total.queued += queued;
            total.in_flight += in_flight;
        }
        Ok(total)
    }

    /// A crawl's spec, by its `crawl_ref`.
    pub async fn spec(
        &self,
        cref: &str,
    ) -> Result<Option<Arc<crate::request::CrawlSpec>>, StoreError> {
        self.redis.spec(cref).await
    }
}

/// The cluster's chores a worker runs when its upkeep falls due: expired
/// crawls stopped (their `expired` replies go out through the control
/// stream) and, by one process a while, old stats trimmed.
#[async_trait]
impl crate::scheduler::redis::Chores for MonitorStore {
    async fn run(&self) -> Result<(), StoreError> {
        for e in self.expire_due().await? {
            tracing::info!(appid = %e.appid, crawlid = %e.crawlid, purged = e.purged, "crawl expired");
        }
        self.trim_stats_if_mine().await
    }
}
