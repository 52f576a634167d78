//! The command line. This is the edge, so errors are `anyhow` with
//! context, and stdout carries only data. The Kafka roles and tools live in
//! `cluster.rs`, the arguments in `args.rs`.

mod args;
mod cluster;
mod plugins;
mod wiring;

pub use args::*;

use plugins::{require_chain, spider_name, start_registry, watch};

use crate::bus::{JsonlSink, ResultSink};
use crate::config::Settings;
use crate::fetch::Fetcher;
use crate::monitor::store::DomainAction;
use crate::monitor::store::MonitorStore;
use crate::request::CrawlRequest;
use crate::scheduler::Frontier;
use crate::shutdown::Shutdown;
use crate::telemetry::{process_usage, Stats};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::Duration;

pub async fn main(cli: Cli) -> Result<i32> {
    let mut settings = Settings::load(cli.global.config.as_deref())?;
    cli.global.apply(&mut settings);
    cli.command.apply(&mut settings);
    // Once, for every command: what follows takes the settings as valid.
    settings.validate()?;
    crate::telemetry::init(&settings.log);
    match cli.command {
        Command::Run(args) => run(settings, args).await,
        Command::Plugins(args) => plugins::plugins(settings, args),
        Command::Parse(args) => plugins::parse(settings, args).await,
        Command::Submit(args) => submit(settings, args).await,
        Command::Info(args) => control(settings, |s| async move {
            use crate::monitor::info;
            let now = crate::result::now_unix();
            Ok(match &args.crawlid {
                Some(c) => {
                    let i = s.crawl_info(&args.appid, c, &args.spiderid).await?;
                    info::crawl_reply((&args.appid, &args.spiderid, c), &i, now)
                }
                None => {
                    let crawls = s.app_info(&args.appid, &args.spiderid).await?;
                    info::app_reply(&args.appid, &args.spiderid, &crawls, now)
                }
            })
        })
        .await,
        Command::Stop(args) => control(settings, |s| async move {
            let crawlid = args.crawlid.context("stop needs --crawlid")?;
            let purged = s.stop(&args.appid, &crawlid, None).await?;
            s.stopped(&args.appid, &crawlid).await?;
            Ok(json!({"action": "stop", "appid": args.appid, "spiderid": args.spiderid, "crawlid": crawlid, "total_purged": purged}))
        })
        .await,
        Command::Schedule(args) => control(settings, |s| async move {
            use crate::scheduler::Ask;
            let ask = match args.action.as_str() {
                "pause" => Ask::Pause,
                "resume" => Ask::Resume,
                "run-now" => Ask::RunNow,
                _ => Ask::Unschedule,
            };
            match s.schedule_action(&args.appid, &args.crawlid, ask).await? {
                Ok(row) => Ok(json!({"action": args.action, "appid": args.appid, "crawlid": args.crawlid,
                                     "schedule": crate::monitor::info::schedule_json(&row)})),
                Err(why) => bail!("{why}"),
            }
        })
        .await,
        Command::Domain(args) => control(settings, |s| async move {
            let action = match args.action.as_str() {
                "update" if args.hits == 0 || args.window <= 0.0 => bail!("domain update needs --hits and --window above 0"),
                "update" if !(0.0..=1.0).contains(&args.scale) => bail!("--scale must be within 0.0-1.0"),
                "update" => DomainAction::Update { hits: args.hits, window: args.window, scale: args.scale },
                "remove" => DomainAction::Remove,
                "blacklist" => DomainAction::Blacklist,
                _ => DomainAction::Unblacklist,
            };
            s.domain(&args.domain, &action).await?;
            Ok(json!({"action": args.action, "domain": args.domain}))
        })
        .await,
        Command::Stats(args) => control(settings, |s| async move { Ok(crate::monitor::stats::crawler(&s, &args.kind).await?) }).await,
        Command::KafkaMonitor => cluster::kafka_monitor(settings).await,
        Command::RedisMonitor => cluster::redis_monitor(settings).await,
        Command::Worker(args) => cluster::worker(settings, args.control_plane).await,
        Command::Up(_) => cluster::up(settings).await,
        Command::Feed(args) => cluster::feed(settings, args).await,
        Command::Dump(args) => cluster::dump(settings, args).await,
        Command::Rest(_) => cluster::rest(settings).await,
        Command::Wacz(args) => {
            if settings.warc.dir.is_empty() {
                bail!("wacz needs warc.dir: the directory the crawl's records were written to (with --from-store, where the package is made)");
            }
            let from = if args.from_store { "the object store's sealed files" } else { settings.warc.dir.as_str() };
            match wacz(&settings, &args.appid, &args.crawlid, args.from_store).await? {
                0 => bail!("no records of crawl {}/{} in {from}", args.appid, args.crawlid),
                _ => Ok(0),
            }
        }
    }
}

/// Package a crawl as WACZ (into `<warc.dir>/wacz/`), uploaded when there
/// is an object store; how many records went in. `from_store`: from the
/// sealed files every worker uploaded, not this machine's.
async fn wacz(settings: &Settings, appid: &str, crawlid: &str, from_store: bool) -> Result<usize> {
    let dir = std::path::Path::new(&settings.warc.dir);
    let objects = crate::objects::Objects::connect(settings)?;
    let out = dir.join("wacz");
    let packaged = if from_store {
        let objects = objects
            .as_deref()
            .context("--from-store needs an object store (output.objects.url)")?;
        let staging = dir.join(format!(".gathered-{}", std::process::id()));
        let packaged = async {
            let g = crate::archive::gather::gather(objects, appid, crawlid, &staging).await?;
            tracing::info!(files = g.files, indexes = g.indexes, %crawlid, "the crawl's sealed files fetched from the object store");
            Ok::<_, anyhow::Error>(crate::archive::wacz::package(&staging, &out, appid, crawlid)?)
        }
        .await;
        let _ = std::fs::remove_dir_all(&staging);
        packaged?
    } else {
        crate::archive::wacz::package(dir, &out, appid, crawlid)?
    };
    let Some(p) = packaged else {
        return Ok(0);
    };
    tracing::info!(path = %p.path.display(), records = p.records, pages = p.pages, %crawlid, "crawl packaged as WACZ");
    if let Some(objects) = objects {
        let name = p.path.file_name().unwrap_or_default().to_string_lossy();
        let uri = objects.put_file(&format!("wacz/{name}"), &p.path).await?;
        tracing::info!(%uri, "WACZ uploaded");
    }
    Ok(p.records)
}

async fn run(settings: Settings, args: RunArgs) -> Result<i32> {
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

    let base64 = settings.kafka.base64_body;
    let sink: Arc<dyn ResultSink> = match &args.output {
        Some(path) => Arc::new(JsonlSink::new(
            Box::new(
                std::fs::File::create(path)
                    .with_context(|| format!("cannot create {}", path.display()))?,
            ),
            base64,
        )),
        None => Arc::new(JsonlSink::stdout(base64)),
    };
    let settings = Arc::new(settings);
    let stores = wiring::stores(&settings, Some(&registry), &stats).await?;
    let (frontier, book) = (stores.frontier.clone(), stores.book.clone());
    // On a cluster, each crawl's latest events are kept for the status
    // page and REST too, and webhook deliveries until they are done.
    let (events, outbox): (_, Option<Arc<dyn crate::notify::Outbox>>) = match &stores.cluster {
        Some(c) => (
            Arc::new(crate::events::Tee(vec![
                events_out(&args)?,
                Arc::new(c.monitors.clone()),
            ])) as Arc<dyn crate::events::EventSink>,
            Some(Arc::new(c.monitors.clone())),
        ),
        None => (events_out(&args)?, None),
    };
    let engine = wiring::engine(&settings, &stats, &registry, stores, sink)?;
    let crawls: std::collections::BTreeSet<(String, String)> = requests
        .iter()
        .map(|r| (r.appid.clone(), r.crawlid.clone()))
        .collect();
    let scheduled = requests.iter().any(|r| r.schedule.is_some());
    let notifier = notifier(&settings, &requests, outbox)?;
    let runs = Arc::new(crate::runs::Runs::new(
        engine.clone(),
        events,
        notifier.clone(),
        book,
    ));
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

    let stop = Shutdown::on_signal(settings.process.shutdown_grace);
    let progress = std::io::stderr().is_terminal().then(|| {
        let (stats, frontier) = (stats.clone(), frontier.clone());
        tokio::spawn(async move { progress_line(stats, frontier).await })
    });
    // With schedules, the crawl is over when every schedule has ended (not
    // when the queue is first empty, between runs).
    let (engine_stop, finished) = match scheduled && !args.serve {
        true => (Shutdown::new(), Some(Shutdown::new())),
        false => (stop.clone(), None),
    };
    if let Some(f) = &finished {
        let (stop, f, engine_stop) = (stop.clone(), f.clone(), engine_stop.clone());
        tokio::spawn(async move {
            tokio::select! { _ = stop.wait() => {}, _ = f.wait() => {} }
            engine_stop.trigger();
        });
    }
    let driver = {
        let (runs, halt, finished) = (runs.clone(), Shutdown::new(), finished.clone());
        if let Some(n) = notifier.clone() {
            let halt = halt.clone();
            tokio::spawn(async move { n.resume(halt).await });
        }
        let handle = {
            let halt = halt.clone();
            tokio::spawn(async move { runs.drive(halt, finished).await })
        };
        (handle, halt)
    };
    engine
        .run(!args.serve && !scheduled, engine_stop.clone())
        .await;
    driver.1.trigger();
    let _ = driver.0.await;
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
    // A run's crawls are complete when it ends (not when stopped early).
    // On a cluster with a store, from every worker's uploaded files (the
    // packagers of the workers still up make it again, whole, if some of
    // it was in their open files); else from this process's own.
    if settings.warc.wacz && !stop.is_triggered() {
        let from_store = !settings.redis.url.is_empty() && !settings.output.objects.url.is_empty();
        for (appid, crawlid) in &crawls {
            wacz(&settings, appid, crawlid, from_store).await?;
        }
    }
    // A result that was not delivered is a failed run, whatever else went
    // well: a script must not take a partial output for a whole one.
    let undelivered = stats.crawl.undelivered.get();
    if undelivered > 0 {
        return Ok(1);
    }
    // An embedded crawl stopped by a signal with work left: the output is
    // partial, and a script must be able to tell (130, as a shell reports
    // an interrupt). (The summary above said what was left.) A cluster
    // worker's requests went back to the shared queue for the others.
    let embedded = settings.redis.url.is_empty();
    if embedded && stop.is_triggered() && left.queued + left.in_flight > 0 {
        return Ok(INTERRUPTED);
    }
    Ok(0)
}

/// The notifier of the requests' webhooks (none if no request has one).
/// A webhook of an app without a signing secret is refused here: nothing
/// is ever sent unsigned.
fn notifier(
    settings: &Settings,
    requests: &[CrawlRequest],
    outbox: Option<Arc<dyn crate::notify::Outbox>>,
) -> Result<Option<Arc<crate::notify::Notifier>>> {
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
fn webhook_notifier(
    settings: &Settings,
    dead: crate::notify::DeadLetters,
    outbox: Option<Arc<dyn crate::notify::Outbox>>,
) -> Result<Arc<crate::notify::Notifier>> {
    let secrets = settings
        .webhooks
        .secrets
        .iter()
        .filter_map(|(app, s)| Some((app.clone(), crate::events::sign::Secret::parse(s).ok()?)))
        .collect();
    Ok(crate::notify::Notifier::new(
        Fetcher::new(&settings.crawl)?,
        secrets,
        (
            settings.webhooks.timeout,
            settings.webhooks.retries(),
            settings.webhooks.queue,
        ),
        dead,
        outbox,
    ))
}

/// Where `run` writes its crawls' events: `--events FILE` (`-`: stderr),
/// or nowhere.
fn events_out(args: &RunArgs) -> Result<Arc<dyn crate::events::EventSink>> {
    let out: Box<dyn Write + Send> = match &args.events {
        None => Box::new(std::io::sink()),
        Some(p) if p.as_os_str() == "-" => Box::new(std::io::stderr()),
        Some(p) => Box::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        ),
    };
    Ok(Arc::new(crate::events::JsonlEvents::new(out)))
}

/// The exit code of a `run` stopped by a signal before its crawl was done.
pub const INTERRUPTED: i32 = 130;

/// Refuse seeds the address policy refuses, before anything is queued.
async fn check_seeds(fetcher: &Fetcher, requests: &[CrawlRequest]) -> Result<()> {
    for r in requests {
        let url = url::Url::parse(&r.url).with_context(|| format!("bad seed URL {}", r.url))?;
        fetcher
            .policy()
            .check_url(&url)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(())
}

/// Run one control operation against the cluster and print its JSON reply.
async fn control<F, Fut>(settings: Settings, op: F) -> Result<i32>
where
    F: FnOnce(MonitorStore) -> Fut,
    Fut: std::future::Future<Output = Result<Value>>,
{
    let cluster = wiring::cluster(&settings, Arc::default()).await?;
    let reply = op(cluster.monitors).await?;
    writeln!(std::io::stdout().lock(), "{reply}")?;
    Ok(0)
}

/// `spinneret submit`: validate, queue in the cluster, exit.
async fn submit(settings: Settings, args: SubmitArgs) -> Result<i32> {
    if settings.redis.url.is_empty() {
        bail!("submit queues requests in a cluster: give --redis URL (or set redis.url)");
    }
    let requests = collect_requests(&settings, &args.requests, &args.spider)?;
    if requests.is_empty() {
        bail!("nothing to submit: give --seed URL, --request JSON or --requests FILE");
    }
    check_seeds(&Fetcher::new(&settings.crawl)?, &requests).await?;
    let stores = wiring::stores(&settings, None, &Arc::default()).await?;
    let (frontier, dedup) = (stores.frontier, stores.dedup);
    for r in requests {
        let (url, crawlid) = (r.url.clone(), r.crawlid.clone());
        if r.schedule.is_some() {
            // Kept in the cluster's schedule book: its runs are fired by
            // whichever process drives the runs when they fall due.
            let key = crate::request::CrawlKey {
                appid: r.appid.clone(),
                crawlid: crawlid.clone(),
            };
            let json = serde_json::to_string(&r)?;
            stores
                .book
                .keep(&key, &json, jiff::Timestamp::now())
                .await?;
            tracing::info!(url = %crate::config::redact(&url), %crawlid, "scheduled");
            continue;
        }
        let cap = settings.crawl.global_page_per_domain_limit;
        let key = crate::request::CrawlKey {
            appid: r.appid.clone(),
            crawlid: crawlid.clone(),
        };
        let webhook = r.webhook.clone();
        if crate::crawl::submit(&*frontier, &*dedup, r, cap).await? {
            // Noted, so that a control plane tells its end.
            stores.book.alive(&key, webhook.as_ref()).await?;
            tracing::info!(url = %crate::config::redact(&url), %crawlid, "queued");
        } else {
            tracing::warn!(url = %crate::config::redact(&url), %crawlid, cap, "not queued: its domain has reached crawl.global_page_per_domain_limit");
        }
    }
    Ok(0)
}

fn collect_requests(
    settings: &Settings,
    args: &RequestArgs,
    spider: &str,
) -> Result<Vec<CrawlRequest>> {
    let limit = settings.crawl.maxdepth_limit;
    let started = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (i, seed) in args.seed.iter().enumerate() {
        let v = json!({
            "url": seed, "appid": "cli", "crawlid": format!("run-{started}-{i}"),
            "spiderid": spider, "maxdepth": args.maxdepth.unwrap_or(0),
            "render": args.render.as_deref().unwrap_or("never"),
        });
        match CrawlRequest::from_value(v, limit) {
            Ok(r) => out.push(r),
            Err(e) => errors.push(format!("--seed {seed}: {e}")),
        }
    }
    let mut lines: Vec<(String, String)> = args
        .request
        .iter()
        .enumerate()
        .map(|(i, r)| (format!("--request #{}", i + 1), r.clone()))
        .collect();
    if let Some(path) = &args.requests {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        lines.extend(
            text.lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
                .map(|(n, l)| (format!("{}:{}", path.display(), n + 1), l.to_string())),
        );
    }
    for (origin, text) in lines {
        let parsed = serde_json::from_str::<Value>(&text)
            .map_err(|e| format!("not JSON: {e}"))
            .and_then(|mut v| {
                if let Some(obj) = v.as_object_mut() {
                    obj.entry("spiderid").or_insert_with(|| spider.into());
                }
                CrawlRequest::from_value(v, limit).map_err(|e| e.to_string())
            });
        match parsed {
            Ok(r) => out.push(r),
            Err(e) => errors.push(format!("{origin}: {e}")),
        }
    }
    if !errors.is_empty() {
        bail!(
            "rejected {} request(s), nothing was crawled:\n  {}",
            errors.len(),
            errors.join("\n  ")
        );
    }
    Ok(out)
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

fn summary(stats: &Stats, left: crate::scheduler::Counts) {
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
