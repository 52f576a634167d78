//! The composition root: from settings validated once (in [`super::main`])
//! to the process's parts, each built here and only here: the stores
//! (embedded, or Redis with its two roles), the Kafka bus, the `/metrics`
//! endpoint and the crawl engine. Commands pick the parts they need.

use super::plugins::{publish_plugins, spider_names};
use crate::archive::{ledger::Ledger, packager::Packager, Archive};
use crate::bus::kafka::KafkaBus;
use crate::bus::ResultSink;
use crate::config::Settings;
use crate::crawl::Engine;
use crate::fetch::Fetcher;
use crate::monitor::store::MonitorStore;
use crate::plugins::Registry;
use crate::politeness::throttle::{EmbeddedThrottle, ThrottleStore};
use crate::politeness::Politeness;
use crate::scheduler::{
    DedupStore, EmbeddedBook, EmbeddedDedup, EmbeddedFrontier, Frontier, RedisFrontier,
    ScheduleBook, WorkerCard,
};
use crate::store::Redis;
use crate::telemetry::Stats;
use anyhow::{bail, Context, Result};
use std::sync::Arc;
use std::time::Duration;

/// What the crawl loop works on: the frontier, the dedup store, and the
/// throttle the frontier consults (also handed to the fetcher).
pub(crate) struct Stores {
    pub frontier: Arc<dyn Frontier>,
    pub dedup: Arc<dyn DedupStore>,
    pub throttle: Arc<dyn ThrottleStore>,
    /// The cluster they are on, if any.
    pub cluster: Option<Cluster>,
    /// Where scheduled crawls are kept (the monitors' store on a cluster).
    pub book: Arc<dyn ScheduleBook>,
}

/// A cluster process's store: the shared connection and the monitors'
/// side on it (a worker's frontier is built on the same connection).
#[derive(Clone)]
pub(crate) struct Cluster {
    pub redis: Arc<Redis>,
    pub monitors: MonitorStore,
}

/// Connect to the cluster's Redis (`redis.url` must be set).
pub(crate) async fn cluster(settings: &Settings, stats: Arc<Stats>) -> Result<Cluster> {
    if settings.redis.url.is_empty() {
        bail!("this command works on a cluster: give --redis URL (or set redis.url)");
    }
    let redis = Redis::connect(settings, stats).await?;
    tracing::info!(url = %crate::config::redact(&settings.redis.url), namespace = %redis.namespace(), "cluster mode: Redis");
    Ok(Cluster {
        monitors: MonitorStore::new(redis.clone(), settings),
        redis,
    })
}

/// Redis and Kafka, for the cluster's roles.
pub(crate) async fn connect(
    settings: &Settings,
    stats: Arc<Stats>,
) -> Result<(Cluster, Arc<KafkaBus>)> {
    let cluster = cluster(settings, stats).await?;
    let bus = KafkaBus::connect(&settings.kafka)?;
    bus.ensure_topics(&bus.standard_topics()).await?;
    tracing::info!(kafka = %settings.kafka.brokers, "connected");
    Ok((cluster, bus))
}

/// The stores of a crawl in this process alone.
pub(crate) fn embedded(settings: &Settings) -> Stores {
    let throttle = Arc::new(EmbeddedThrottle::new(settings.throttle.clone()));
    Stores {
        frontier: Arc::new(
            EmbeddedFrontier::new(
                throttle.clone(),
                Politeness::of(&settings.crawl, &settings.throttle),
            )
            .weighted(settings.throttle.weights.clone()),
        ),
        dedup: Arc::new(EmbeddedDedup::new(Duration::from_secs(
            settings.crawl.dupe_idle_ttl,
        ))),
        throttle,
        cluster: None,
        book: Arc::new(EmbeddedBook::default()),
    }
}

/// A worker's stores on the cluster: its frontier (which also dedups and
/// throttles), with this worker's card kept current from `registry`, and
/// the cluster's chores run by its upkeep.
pub(crate) fn worker(
    cluster: &Cluster,
    settings: &Settings,
    stats: &Arc<Stats>,
    registry: Option<&Arc<Registry>>,
) -> Stores {
    let card = Arc::new(WorkerCard::new(
        crate::render::available(&settings.render),
        stats.clone(),
    ));
    if let Some(registry) = registry {
        card.set_spiders(spider_names(registry));
        publish_plugins(&card, registry);
    }
    let frontier = Arc::new(RedisFrontier::new(
        cluster.redis.clone(),
        settings,
        card,
        Some(Arc::new(cluster.monitors.clone())),
    ));
    Stores {
        frontier: frontier.clone(),
        dedup: frontier.clone(),
        throttle: frontier,
        cluster: Some(cluster.clone()),
        book: Arc::new(cluster.monitors.clone()),
    }
}

/// The stores `run` and `submit` use: Redis when `redis.url` is set, else
/// in process; with the `/metrics` endpoint when a registry is given (a
/// crawling process).
pub(crate) async fn stores(
    settings: &Settings,
    registry: Option<&Arc<Registry>>,
    stats: &Arc<Stats>,
) -> Result<Stores> {
    if settings.redis.url.is_empty() {
        if registry.is_some() {
            metrics(settings, stats, None);
        }
        return Ok(embedded(settings));
    }
    let cluster = cluster(settings, stats.clone()).await?;
    if registry.is_some() {
        metrics(settings, stats, Some(&cluster));
    }
    Ok(worker(&cluster, settings, stats, registry))
}

/// The crawl engine over `stores`, delivering to `sink`.
pub(crate) fn engine(
    settings: &Arc<Settings>,
    stats: &Arc<Stats>,
    registry: &Arc<Registry>,
    stores: Stores,
    sink: Arc<dyn ResultSink>,
) -> Result<Arc<Engine>> {
    let fetcher = Fetcher::new(&settings.crawl).context("building the HTTP client")?;
    let archive = match settings.warc.dir.as_str() {
        "" => None,
        dir => Some(
            archive(settings, stores.cluster.as_ref())
                .with_context(|| format!("opening the WARC archive in {dir} (warc.dir)"))?,
        ),
    };
    Ok(Engine::new(
        stores.frontier,
        stores.dedup,
        sink,
        fetcher,
        stores.throttle,
        registry.clone(),
        settings.clone(),
        stats.clone(),
        archive,
    ))
}

/// The WARC archive; in a cluster with `warc.wacz` and an object store,
/// its files listed in the ledger and the crawls packaged as they end (no
/// ledger otherwise: nothing would ever clear it).
fn archive(settings: &Settings, cluster: Option<&Cluster>) -> Result<Arc<Archive>> {
    let objects = crate::objects::Objects::connect(settings)?;
    let mut ledger = None;
    if let (Some(c), Some(objects), true) = (cluster, &objects, settings.warc.wacz) {
        let l = Arc::new(Ledger::new(c.redis.clone()));
        tokio::spawn(
            Packager {
                ledger: l.clone(),
                monitors: c.monitors.clone(),
                objects: objects.clone(),
                dir: settings.warc.dir.clone().into(),
            }
            .run(),
        );
        ledger = Some(l);
    }
    Ok(Archive::open(&settings.warc, objects, ledger)?)
}

/// `/metrics` on `stats.metrics_port`, when set; with the cluster's
/// figures when on Redis.
pub(crate) fn metrics(settings: &Settings, stats: &Arc<Stats>, cluster: Option<&Cluster>) {
    let port = settings.stats.metrics_port;
    if port > 0 {
        let (stats, store) = (stats.clone(), cluster.map(|c| c.monitors.clone()));
        tokio::spawn(async move {
            if let Err(e) = crate::metrics::serve(port, stats, store).await {
                tracing::error!(error = %format!("{e:#}"), "metrics endpoint failed");
            }
        });
    }
}
