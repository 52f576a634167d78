//! The Kafka-facing commands: the roles (`kafka-monitor`, `redis-monitor`,
//! `worker`, and `up` for all of them in one process) and the tools
//! (`feed`, `dump`).

use super::args::{DumpArgs, FeedArgs};
use super::plugins::{require_chain, spider_names, start_registry, watch};
use super::wiring::{self, connect, metrics, Cluster};
use crate::bus::kafka::{client_config, KafkaBus, KafkaSink};
use crate::config::Settings;
use crate::crawl::Engine;
use crate::monitor::control::ControlPlane;
use crate::monitor::extra_kinds::MonitorPlugins;
use crate::monitor::ingest::IngestMonitor;
use crate::plugins::Registry;
use crate::shutdown::Shutdown;
use crate::telemetry::Stats;
use crate::timeouts;
use anyhow::{bail, Context, Result};
use base64::Engine as _;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use serde_json::Value;
use std::io::Write;
use std::sync::Arc;

/// `spinneret rest`: the REST gateway.
pub async fn rest(settings: Settings) -> Result<i32> {
    let stats = Arc::new(Stats::default());
    let (cluster, bus) = connect(&settings, stats.clone()).await?;
    let settings = Arc::new(settings);
    let gateway =
        crate::rest::Gateway::start(settings.clone(), bus, cluster.monitors, stats).await?;
    crate::rest::serve(gateway, settings.rest.port, stop_on_signal(&settings)).await?;
    Ok(0)
}

/// A stop on SIGTERM or Ctrl-C, the same for every role.
fn stop_on_signal(settings: &Settings) -> Shutdown {
    Shutdown::on_signal(settings.process.shutdown_grace)
}

/// `spinneret kafka-monitor`: the ingest role alone.
pub async fn kafka_monitor(settings: Settings) -> Result<i32> {
    let settings = Arc::new(settings);
    let stats = Arc::new(Stats::default());
    let (cluster, bus) = connect(&settings, stats.clone()).await?;
    let registry = start_registry(&settings, stats.clone())?;
    let _watcher = watch(&settings, &registry)?;
    settled(registry.clone()).await;
    let plugins = MonitorPlugins::new(registry, settings.crawl.maxdepth_limit);
    let stop = stop_on_signal(&settings);
    metrics(&settings, &stats, Some(&cluster));
    IngestMonitor::new(cluster.monitors, bus.clone(), settings, plugins, stats)
        .run(stop)
        .await?;
    bus.flush();
    Ok(0)
}

/// Wait for the plugins found at start to load (from the cache, a few
/// milliseconds). Monitor plugins add request kinds, so ingest starts after
/// them: a message of a plugin's kind is never dead-lettered for arriving
/// while the plugin compiles.
async fn settled(registry: Arc<Registry>) {
    if registry.pending_any() {
        tracing::info!("loading plugins (a first compile takes seconds; then it is cached)");
        let _ =
            tokio::task::spawn_blocking(move || registry.settle(crate::plugins::FIRST_LOAD_WAIT))
                .await;
    }
}

/// `spinneret redis-monitor`: the control plane alone.
pub async fn redis_monitor(settings: Settings) -> Result<i32> {
    let stats = Arc::new(Stats::default());
    let (cluster, bus) = connect(&settings, stats.clone()).await?;
    metrics(&settings, &stats, Some(&cluster));
    let stop = stop_on_signal(&settings);
    ControlPlane::new(cluster.monitors, bus.clone())
        .run(stop)
        .await;
    bus.flush();
    Ok(0)
}

/// Workers of one process: crawl whatever the cluster has queued, results
/// to Kafka.
async fn engine(
    settings: &Arc<Settings>,
    stats: &Arc<Stats>,
    registry: &Arc<Registry>,
    cluster: &Cluster,
    bus: &Arc<KafkaBus>,
) -> Result<Arc<Engine>> {
    require_chain(registry, settings)?;
    // The worker starts once the plugins found at start are loaded (from
    // the cache, milliseconds), so its first heartbeat names its spiders.
    // Files added later compile in the background while it crawls.
    settled(registry.clone()).await;
    let spiders = spider_names(registry);
    if spiders.is_empty() {
        bail!(
            "no spiders in {}: build them with `just guests`",
            settings.plugins.dir.display()
        );
    }
    let stores = wiring::worker(cluster, settings, stats, Some(registry));
    let objects = crate::objects::Objects::connect(settings)?;
    if objects.is_none() {
        tracing::info!("no object store (output.objects.url): a result too large for kafka.max_message_bytes goes out without its body");
    }
    let sink = Arc::new(KafkaSink::new(
        bus.clone(),
        settings.kafka.base64_body,
        objects,
    ));
    tracing::info!(spiders = %spiders.join(","), concurrency = settings.crawl.concurrency, "worker ready");
    wiring::engine(settings, stats, registry, stores, sink)
}

/// `spinneret worker`: crawl for the cluster; with `--control-plane` also
/// answer control requests.
pub async fn worker(settings: Settings, control_plane: bool) -> Result<i32> {
    roles(settings, false, true, control_plane).await
}

/// `spinneret up`: ingest, control plane and workers in one process.
pub async fn up(settings: Settings) -> Result<i32> {
    roles(settings, true, true, true).await
}

async fn roles(settings: Settings, ingest: bool, crawl: bool, control: bool) -> Result<i32> {
    let settings = Arc::new(settings);
    let stats = Arc::new(Stats::default());
    let (cluster, bus) = connect(&settings, stats.clone()).await?;
    let registry = start_registry(&settings, stats.clone())?;
    let _watcher = watch(&settings, &registry)?;
    let stop = stop_on_signal(&settings);
    metrics(&settings, &stats, Some(&cluster));
    let mut tasks = tokio::task::JoinSet::new();
    // The crawl role first: its heartbeat then names its spiders from the
    // first one on, whoever writes it (the control plane writes it too).
    if crawl {
        let engine = engine(&settings, &stats, &registry, &cluster, &bus).await?;
        if control {
            drive_runs(&mut tasks, &settings, &engine, &cluster, &bus, &stop)?;
        }
        let stop = stop.clone();
        tasks.spawn(async move {
            engine.run(false, stop).await;
            Ok(())
        });
    }
    if ingest {
        let plugins = MonitorPlugins::new(registry.clone(), settings.crawl.maxdepth_limit);
        let m = IngestMonitor::new(
            cluster.monitors.clone(),
            bus.clone(),
            settings.clone(),
            plugins,
            stats.clone(),
        );
        let stop = stop.clone();
        let registry = registry.clone();
        tasks.spawn(async move {
            settled(registry).await;
            m.run(stop).await
        });
    }
    if control {
        let cp = ControlPlane::new(cluster.monitors.clone(), bus.clone());
        let stop = stop.clone();
        tasks.spawn(async move {
            cp.run(stop).await;
            Ok(())
        });
    }
    let mut code = 0;
    while let Some(r) = tasks.join_next().await {
        if let Ok(Err(e)) = r {
            tracing::error!(error = %format!("{e:#}"), "a role stopped");
            code = 1;
            stop.trigger();
        }
    }
    bus.flush();
    Ok(code)
}

/// Scheduled crawls' runs, fired and ended once across every process that
/// drives them; events to `<prefix>.events` and kept in the store.
fn drive_runs(
    tasks: &mut tokio::task::JoinSet<Result<()>>,
    settings: &Settings,
    engine: &Arc<Engine>,
    cluster: &Cluster,
    bus: &Arc<KafkaBus>,
    stop: &Shutdown,
) -> Result<()> {
    let kept: Arc<dyn crate::events::EventSink> = Arc::new(cluster.monitors.clone());
    let notifier = super::run::webhook_notifier(
        settings,
        dead_letters(bus),
        Some(Arc::new(cluster.monitors.clone())),
    )?;
    {
        let (notifier, stop) = (notifier.clone(), stop.clone());
        tasks.spawn(async move {
            notifier.resume(stop).await;
            Ok(())
        });
    }
    let runs = crate::runs::Runs::new(
        engine.clone(),
        Arc::new(crate::events::Tee(vec![bus.clone(), kept])),
        Some(notifier),
        Arc::new(cluster.monitors.clone()),
    );
    let stop = stop.clone();
    tasks.spawn(async move {
        runs.drive(stop, None).await;
        Ok(())
    });
    Ok(())
}

/// Undelivered webhook events to `<prefix>.errors`.
fn dead_letters(bus: &Arc<KafkaBus>) -> crate::notify::DeadLetters {
    let bus = bus.clone();
    Arc::new(move |u: crate::notify::Undelivered| {
        tracing::error!(webhook = %u.webhook, id = %u.id, reason = %u.reason, "webhook event not delivered");
        let bus = bus.clone();
        tokio::spawn(async move {
            let letter = serde_json::json!({"undelivered_event": u, "server_time": crate::result::now_unix()});
            if let Err(e) = bus.dead_letter(&letter).await {
                tracing::error!(error = %e, "dead letter not delivered either");
            }
        });
    })
}

/// `spinneret feed`: produce requests to the incoming topic and wait for
/// the broker's acknowledgement of each.
pub async fn feed(settings: Settings, args: FeedArgs) -> Result<i32> {
    let bus = KafkaBus::connect_once(&settings.kafka)?;
    bus.ensure_topics(std::slice::from_ref(&settings.kafka.incoming_topic))
        .await?;
    let mut texts = Vec::new();
    for a in args.json {
        if a == "-" {
            for line in std::io::stdin().lines() {
                let line = line?;
                if !line.trim().is_empty() {
                    texts.push(line);
                }
            }
        } else {
            texts.push(a);
        }
    }
    for (i, t) in texts.iter().enumerate() {
        serde_json::from_str::<Value>(t)
            .with_context(|| format!("request #{} is not JSON, nothing was sent", i + 1))?;
    }
    for t in &texts {
        tokio::time::timeout(timeouts::CLI_FEED_ACK, bus.feed(t))
            .await
            .with_context(|| {
                format!(
                    "the broker did not acknowledge within {:?}",
                    timeouts::CLI_FEED_ACK
                )
            })??;
    }
    tracing::info!(n = texts.len(), topic = %settings.kafka.incoming_topic, "fed");
    Ok(0)
}

/// `spinneret dump`: print a topic's messages, one JSON per line.
pub async fn dump(settings: Settings, args: DumpArgs) -> Result<i32> {
    let group = format!("spinneret-dump-{}", std::process::id());
    let consumer: StreamConsumer = client_config(&settings.kafka)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set(
            "auto.offset.reset",
            if args.from_beginning {
                "earliest"
            } else {
                "latest"
            },
        )
        .set("fetch.wait.max.ms", "100")
        .create()?;
    consumer.subscribe(&[args.topic.as_str()])?;
    let stop = stop_on_signal(&settings);
    let mut seen = 0u64;
    let mut out = std::io::stdout().lock();
    while args.count.is_none_or(|n| seen < n) {
        let m = tokio::select! {
            m = consumer.recv() => m,
            _ = stop.wait() => break,
        };
        let m = match m {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "Kafka consumer error, retrying");
                tokio::time::sleep(timeouts::CONSUMER_RETRY).await;
                continue;
            }
        };
        seen += 1;
        // A message without a payload (a tombstone) prints as an empty line.
        let text = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
        let Ok(mut v) = serde_json::from_str::<Value>(&text) else {
            writeln!(out, "{text}")?;
            continue;
        };
        if let Some(obj) = v.as_object_mut() {
            if args.no_body {
                obj.remove("body");
            } else if args.decode_base64 {
                if let Some(Value::String(b)) = obj.get("body") {
                    if let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b) {
                        obj.insert("body".into(), String::from_utf8_lossy(&raw).into());
                    }
                }
            }
        }
        let line = if args.pretty {
            serde_json::to_string_pretty(&v)?
        } else {
            serde_json::to_string(&v)?
        };
        writeln!(out, "{line}")?;
        out.flush()?;
    }
    Ok(0)
}
