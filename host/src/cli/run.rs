//! `spinneret run`: a crawl in this process, from its requests to its
//! summary and exit code.

use super::args::RunArgs;
use super::plugins::{require_chain, spider_name, start_registry, watch};
use super::{check_seeds, collect_requests, wacz, wiring};
use crate::bus::{JsonlSink, ResultSink};
use crate::config::Settings;
use crate::events::EventSink;
use crate::fetch::Fetcher;
use crate::monitor::store::MonitorStore;
use crate::notify::{Notifier, Outbox};
use crate::request::CrawlRequest;
use crate::runs::Runs;
use crate::scheduler::{Counts, Frontier};
use crate::shutdown::Shutdown;
use crate::telemetry::{process_usage, Stats};
use anyhow::{bail, Context, Result};
use std::collections::BTreeSet;
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::Duration;

/// The exit code of a `run` stopped by a signal before its crawl was done.
pub const INTERRUPTED: i32 = 130;

pub(super) async fn run(settings: Settings, args: RunArgs) -> Result<i32> {
    let stats = Arc::new(Stats::default());
    let registry = start_registry(&settings, stats.clone())?;
    let spider = spider_name(&registry, &settings, &args.spider)?;
    require_chain(&registry, &settings)?;
    let _watcher = watch(&settings, &registry)?;

    let requests = collect_requests(&settings, &args.requests, &spider)?;
    if requests.is_empty() && !args.serve {
        bail!("nothing to crawl: give --seed URL, --request JSON or --requests FILE (or --serve)");
    }
    check_seeds(&Fetcher::new(&settings.crawl)?, &requests).await?;

    let sink = result_sink(&args, settings.kafka.base64_body)?;
    let settings = Arc::new(settings);
    let stores = wiring::stores(&settings, Some(&registry), &stats).await?;
    let (frontier, book) = (stores.frontier.clone(), stores.book.clone());
    let monitors = stores.cluster.as_ref().map(|c| c.monitors.clone());
    let events = event_sink(&args, monitors.clone())?;
    // On a cluster, webhook deliveries are kept until they are done.
    let outbox = monitors.map(|m| Arc::new(m) as Arc<dyn Outbox>);
    let engine = wiring::engine(&settings, &stats, &registry, stores, sink)?;
    let crawls: BTreeSet<(String, String)> = requests
        .iter()
        .map(|r| (r.appid.clone(), r.crawlid.clone()))
        .collect();
    let scheduled = requests.iter().any(|r| r.schedule.is_some());
    let notifier = notifier(&settings, &requests, outbox)?;
    let runs = Arc::new(Runs::new(engine.clone(), events, notifier.clone(), book));
    accept(&runs, requests).await?;

    let stop = Shutdown::on_signal(settings.process.shutdown_grace);
    let progress = std::io::stderr().is_terminal().then(|| {
        let (stats, frontier) = (stats.clone(), frontier.clone());
        tokio::spawn(async move { progress_line(stats, frontier).await })
    });
    let engine_stop = engine_stop(&stop, scheduled && !args.serve);
    let (driver, halt) = drive(&runs, notifier.clone(), engine_stop.finished.clone());
    engine
        .run(!args.serve && !scheduled, engine_stop.engine)
        .await;
    halt.trigger();
    let _ = driver.await;
    // The last run's end (and its event) was noted by its last ack.
    if let Err(e) = runs.tick().await {
        tracing::warn!(error = %e, "the last runs' events were not written");
    }
    if let Some(n) = &notifier {
        n.close(settings.process.shutdown_grace).await;
    }
    if let Some(p) = progress {
        p.abort();
        eprint!("\r\x1b[K");
    }
    let left = frontier.counts().await.unwrap_or_else(|e| {
        // Only a cluster's store can fail here; its work stays queued.
        tracing::warn!(error = %e, "could not count what is left");
        Default::default()
    });
    summary(&stats, left);
    if !stop.is_triggered() {
        package(&settings, &crawls).await?;
    }
    Ok(exit_code(&settings, &stats, &stop, left))
}

/// Where results go: `--output FILE`, or stdout.
fn result_sink(args: &RunArgs, base64: bool) -> Result<Arc<dyn ResultSink>> {
    Ok(match &args.output {
        Some(path) => Arc::new(JsonlSink::new(
            Box::new(
                std::fs::File::create(path)
                    .with_context(|| format!("cannot create {}", path.display()))?,
            ),
            base64,
        )),
        None => Arc::new(JsonlSink::stdout(base64)),
    })
}

/// Where events go: `--events`, and on a cluster also each crawl's latest
/// events kept for the status page and REST.
fn event_sink(args: &RunArgs, monitors: Option<MonitorStore>) -> Result<Arc<dyn EventSink>> {
    let out = events_out(args)?;
    Ok(match monitors {
        Some(m) => Arc::new(crate::events::Tee(vec![out, Arc::new(m)])),
        None => out,
    })
}

/// Hand every request to the runs: queued now, or kept for its schedule.
async fn accept(runs: &Runs, requests: Vec<CrawlRequest>) -> Result<()> {
    for r in requests {
        let (url, crawlid) = (r.url.clone(), r.crawlid.clone());
        if r.schedule.is_some() {
            runs.accept(r).await?;
            tracing::info!(url = %crate::config::redact(&url), %crawlid, "crawl scheduled");
        } else if runs.accept(r).await? {
            tracing::info!(url = %crate::config::redact(&url), %crawlid, "crawl submitted");
        } else {
            tracing::warn!(url = %crate::config::redact(&url), %crawlid, "not queued: its domain has reached crawl.global_page_per_domain_limit");
        }
    }
    Ok(())
}

/// The engine's stop, and with schedules when they have all ended.
struct EngineStop {
    engine: Shutdown,
    finished: Option<Shutdown>,
}

/// With schedules, the crawl is over when every schedule has ended (not
/// when the queue is first empty, between runs), or on `stop`.
fn engine_stop(stop: &Shutdown, scheduled: bool) -> EngineStop {
    if !scheduled {
        return EngineStop {
            engine: stop.clone(),
            finished: None,
        };
    }
    let (engine, finished) = (Shutdown::new(), Shutdown::new());
    {
        let (stop, f, engine) = (stop.clone(), finished.clone(), engine.clone());
        tokio::spawn(async move {
            tokio::select! { _ = stop.wait() => {}, _ = f.wait() => {} }
            engine.trigger();
        });
    }
    EngineStop {
        engine,
        finished: Some(finished),
    }
}

/// The runs driven (and webhook deliveries resumed) until the returned
/// stop is triggered.
fn drive(
    runs: &Arc<Runs>,
    notifier: Option<Arc<Notifier>>,
    finished: Option<Shutdown>,
) -> (tokio::task::JoinHandle<()>, Shutdown) {
    let halt = Shutdown::new();
    if let Some(n) = notifier {
        let halt = halt.clone();
        tokio::spawn(async move { n.resume(halt).await });
    }
    let (runs, h) = (runs.clone(), halt.clone());
    (
        tokio::spawn(async move { runs.drive(h, finished).await }),
        halt,
    )
}

/// A run's crawls are complete when it ends (not when stopped early), and
/// packaged as WACZ with `warc.wacz`. On a cluster with a store, from
/// every worker's uploaded files (the packagers of the workers still up
/// make it again, whole, if some of it was in their open files); else
/// from this process's own.
async fn package(settings: &Settings, crawls: &BTreeSet<(String, String)>) -> Result<()> {
    if !settings.warc.wacz {
        return Ok(());
    }
    let from_store = !settings.redis.url.is_empty() && !settings.output.objects.url.is_empty();
    for (appid, crawlid) in crawls {
        wacz(settings, appid, crawlid, from_store).await?;
    }
    Ok(())
}

fn exit_code(settings: &Settings, stats: &Stats, stop: &Shutdown, left: Counts) -> i32 {
    // A result that was not delivered is a failed run, whatever else went
    // well: a script must not take a partial output for a whole one.
    let undelivered = stats.crawl.undelivered.get();
    if undelivered > 0 {
        return 1;
    }
    // An embedded crawl stopped by a signal with work left: the output is
    // partial, and a script must be able to tell (130, as a shell reports
    // an interrupt). (The summary said what was left.) A cluster
    // worker's requests went back to the shared queue for the others.
    let embedded = settings.redis.url.is_empty();
    if embedded && stop.is_triggered() && left.queued + left.in_flight > 0 {
        return INTERRUPTED;
    }
    0
}

/// The notifier of the requests' webhooks (none if no request has one).
/// A webhook of an app without a signing secret is refused here: nothing
/// is ever sent unsigned.
fn notifier(
    settings: &Settings,
    requests: &[CrawlRequest],
    outbox: Option<Arc<dyn Outbox>>,
) -> Result<Option<Arc<Notifier>>> {
    let apps: std::collections::BTreeSet<&str> = requests
        .iter()
        .filter(|r| r.webhook.is_some())
        .map(|r| r.appid.as_str())
        .collect();
    // On a cluster, any crawl's webhook may come to this process (other
    // processes' schedules, deliveries taken over): a notifier whenever
    // there are secrets to sign with.
    let cluster = outbox.is_some() && !settings.webhooks.secrets.is_empty();
    if apps.is_empty() && !cluster {
        return Ok(None);
    }
    if let Some(app) = apps
        .iter()
        .find(|a| !settings.webhooks.secrets.contains_key(**a))
    {
        bail!("a request of app {app} has a webhook, but webhooks.secrets has no secret for {app}");
    }
    let dead: crate::notify::DeadLetters = Arc::new(|u: crate::notify::Undelivered| {
        tracing::error!(webhook = %u.webhook, id = %u.id, reason = %u.reason, "webhook event not delivered");
        let line = serde_json::json!({"undelivered_event": u});
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    });
    Ok(Some(webhook_notifier(settings, dead, outbox)?))
}

/// The notifier of `webhooks.*`, its undelivered events to `dead`.
pub(super) fn webhook_notifier(
    settings: &Settings,
    dead: crate::notify::DeadLetters,
    outbox: Option<Arc<dyn Outbox>>,
) -> Result<Arc<Notifier>> {
    let secrets = settings
        .webhooks
        .secrets
        .iter()
        .filter_map(|(app, s)| Some((app.clone(), crate::events::sign::Secret::parse(s).ok()?)))
        .collect();
    Ok(Notifier::new(
        Fetcher::new(&settings.crawl)?,
        secrets,
        (
            settings.webhooks.timeout,
            settings.webhooks.retry.clone(),
            settings.webhooks.queue,
        ),
        dead,
        outbox,
    ))
}

/// Where `run` writes its crawls' events: `--events FILE` (`-`: stderr),
/// or nowhere.
fn events_out(args: &RunArgs) -> Result<Arc<dyn EventSink>> {
    let out: Box<dyn Write + Send> = match &args.events {
        None => Box::new(std::io::sink()),
        Some(p) if p.as_os_str() == "-" => Box::new(std::io::stderr()),
        Some(p) => Box::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        ),
    };
    Ok(Arc::new(crate::events::JsonlEvents::new(out)))
}

async fn progress_line(stats: Arc<Stats>, frontier: Arc<dyn Frontier>) {
    let mut last = 0u64;
    loop {
        tokio::time::sleep(crate::timeouts::PROGRESS_EVERY).await;
        let pages = stats.crawl.pages.get();
        // The store not answering now: the next tick tries again.
        let Ok(c) = frontier.counts().await else {
            last = pages;
            continue;
        };
        eprint!(
            "\r\x1b[K{pages} pages  {}/s  queued {}  in flight {}  errors {}",
            pages - last,
            c.queued,
            c.in_flight,
            stats.crawl.errors.get()
        );
        last = pages;
    }
}

fn summary(stats: &Stats, left: Counts) {
    let secs = stats.elapsed().as_secs_f64();
    let pages = stats.crawl.pages.get();
    let usage = process_usage();
    let statuses: Vec<String> = stats
        .by_status()
        .iter()
        .map(|(s, n)| format!("{s}: {n}"))
        .collect();
    let plugins = stats.plugin_calls();
    let plugin_calls: u64 = plugins.values().map(|p| p.calls).sum();
    let plugin_instances: u64 = plugins.values().map(|p| p.instances).sum();
    let plugin_time: Duration = plugins.values().map(|p| p.total).sum();
    tracing::info!(
        pages,
        seconds = format!("{secs:.2}"),
        pages_per_sec = format!("{:.0}", pages as f64 / secs.max(1e-9)),
        cpu_ms_per_page = format!(
            "{:.3}",
            usage.cpu.as_secs_f64() * 1000.0 / pages.max(1) as f64
        ),
        peak_rss_mb = usage.peak_rss_bytes / (1 << 20),
        statuses = statuses.join(", "),
        records = stats.crawl.records.get(),
        errors = stats.crawl.errors.get(),
        retries = stats.crawl.retries.get(),
        paused = stats.crawl.paused.get(),
        answered_429 = stats.crawl.rate_limited.get(),
        robots_denied = stats.crawl.robots_denied.get(),
        plugin_calls,
        plugin_us_per_call = format!(
            "{:.1}",
            plugin_time.as_secs_f64() * 1e6 / plugin_calls.max(1) as f64
        ),
        plugin_instances,
        store_round_trips = stats.store.round_trips.get(),
        empty_pops = stats.store.empty_pops.get(),
        undelivered = stats.crawl.undelivered.get(),
        released = stats.crawl.released.get(),
        "crawl done"
    );
    let r = &stats.render;
    let renders = r.rendered.get() + r.failed.get();
    if renders + r.auto_plain.get() > 0 {
        tracing::info!(
            rendered = r.rendered.get(),
            render_failed = r.failed.get(),
            auto_rendered = r.auto_rendered.get(),
            auto_plain = r.auto_plain.get(),
            browser_restarts = r.restarts.get(),
            render_refused = r.refused.get(),
            render_ms_mean = format!("{:.0}", r.latency.mean_seconds() * 1000.0),
            browser_cpu_ms_per_render = format!(
                "{:.1}",
                r.browser_cpu_ms.get() as f64 / renders.max(1) as f64
            ),
            browser_peak_rss_mb = r.browser_peak_rss_mb.get(),
            "renders"
        );
    }
    let undelivered = stats.crawl.undelivered.get();
    if undelivered > 0 {
        tracing::error!(
            undelivered,
            "{undelivered} result(s) could not be delivered; each is on stderr with its reason"
        );
    }
    if left.queued + left.in_flight > 0 {
        tracing::warn!(
            queued = left.queued,
            in_flight = left.in_flight,
            "stopped before the crawl was done: these requests were not crawled"
        );
    }
}
