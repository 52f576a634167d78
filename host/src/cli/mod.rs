//! The command line. This is the edge, so errors are `anyhow` with
//! context, and stdout carries only data. The Kafka roles and tools live in
//! `cluster.rs`.

mod cluster;
mod plugins;
mod wiring;

use plugins::{require_chain, spider_name, start_registry, watch};

use crate::bus::{JsonlSink, ResultSink};
use crate::config::{LogFormat, Settings};
use crate::fetch::Fetcher;
use crate::monitor::store::DomainAction;
use crate::monitor::store::MonitorStore;
use crate::request::CrawlRequest;
use crate::scheduler::Frontier;
use crate::shutdown::Shutdown;
use crate::telemetry::{process_usage, Stats};
use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::{json, Value};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "spinneret",
    version,
    about = "A distributed on-demand crawler with WebAssembly plugins"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug)]
pub struct Global {
    /// TOML settings file (see docs/settings.md for every key).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Directory of .wasm plugins, watched for changes.
    #[arg(long, global = true)]
    pub plugins: Option<PathBuf>,
    /// Fetch loopback, private and link-local addresses.
    #[arg(long, global = true)]
    pub allow_private: bool,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormatArg>,
    /// Cluster mode: share the frontier, dedup and throttle through Redis.
    #[arg(long, global = true, value_name = "URL")]
    pub redis: Option<String>,
    /// Kafka bootstrap brokers (kafka.brokers), e.g. 127.0.0.1:9092.
    #[arg(long, global = true, value_name = "BROKERS")]
    pub kafka: Option<String>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormatArg {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Crawl: embedded by default, no Redis or Kafka needed.
    Run(RunArgs),
    /// List the plugins in the plugins directory: name, kind, WIT version, hash.
    Plugins(PluginsArgs),
    /// Run a spider on one recorded response and print what it yields.
    Parse(ParseArgs),
    /// Queue crawl requests in the cluster (needs --redis) and exit.
    Submit(SubmitArgs),
    /// Info on a crawl, or on every crawl of an app (needs --redis).
    Info(CrawlArgs),
    /// Stop a crawl: purge its queue, refuse its children (needs --redis).
    Stop(CrawlArgs),
    /// Change a domain's throttle or blacklist it, live (needs --redis).
    Domain(DomainArgs),
    /// Cluster stats: spider, machine, queue or crawler (needs --redis).
    Stats(StatsArgs),
    /// Ingest monitor: validate the incoming topic, queue crawls, dead-letter the rest.
    KafkaMonitor,
    /// Control plane: answer info, stop, stats and domain-config requests on Kafka.
    RedisMonitor,
    /// Crawl worker of a cluster: results go to Kafka.
    Worker(cluster::WorkerArgs),
    /// Ingest, control plane and workers in one process (one machine).
    Up(WorkerOpts),
    /// Send requests to the incoming topic; waits for the broker's ack.
    Feed(cluster::FeedArgs),
    /// Print a topic's messages (like the reference's kafkadump).
    Dump(cluster::DumpArgs),
    /// REST gateway: /feed, /poll, health, OpenAPI and metrics (rest.port).
    Rest(cluster::RestArgs),
}

#[derive(Args, Debug)]
pub struct CrawlArgs {
    #[arg(long)]
    pub appid: String,
    /// Without it, `info` covers every crawl of the app.
    #[arg(long)]
    pub crawlid: Option<String>,
    #[arg(long, default_value = "link")]
    pub spiderid: String,
}

#[derive(Args, Debug)]
pub struct DomainArgs {
    /// update, remove, blacklist or unblacklist
    #[arg(value_parser = ["update", "remove", "blacklist", "unblacklist"])]
    pub action: String,
    pub domain: String,
    /// Fetches per window (update).
    #[arg(long, default_value_t = 0)]
    pub hits: u32,
    /// Window in seconds (update).
    #[arg(long, default_value_t = 0.0)]
    pub window: f64,
    /// Scale of `hits`, 0.0-1.0 (update).
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    #[arg(long = "type", default_value = "crawler", value_parser = ["spider", "machine", "queue", "crawler"])]
    pub kind: String,
}

#[derive(Args, Debug)]
pub struct SubmitArgs {
    /// Spider name for requests that do not name one.
    #[arg(long, default_value = "link")]
    pub spider: String,
    #[command(flatten)]
    pub requests: RequestArgs,
}

/// Where crawl requests come from.
#[derive(Args, Debug, Default)]
pub struct RequestArgs {
    /// Seed URL (repeatable).
    #[arg(long)]
    pub seed: Vec<String>,
    /// A crawl request as JSON (contract §2.1; repeatable).
    #[arg(long)]
    pub request: Vec<String>,
    /// A file of crawl requests, one JSON object per line.
    #[arg(long)]
    pub requests: Option<PathBuf>,
    /// Depth for --seed crawls; also raises crawl.maxdepth_limit for this run.
    #[arg(long)]
    pub maxdepth: Option<u32>,
    /// Render --seed crawls' pages in a headless browser: never, always or
    /// auto (when a page looks script-built).
    #[arg(long, value_parser = ["never", "always", "auto"])]
    pub render: Option<String>,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Spider: a name in the plugins directory, or a path to a .wasm file.
    #[arg(long)]
    pub spider: String,
    #[command(flatten)]
    pub requests: RequestArgs,
    /// Write results here instead of stdout (JSON lines).
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Keep running as a worker after the crawl is done.
    #[arg(long)]
    pub serve: bool,
    #[command(flatten)]
    pub worker: WorkerOpts,
}

/// What a crawling process runs: `run`, `worker` and `up` share these.
#[derive(Args, Debug, Default)]
pub struct WorkerOpts {
    /// Downloader middleware by plugin name, in order (repeatable).
    #[arg(long)]
    pub middleware: Vec<String>,
    /// Item pipeline by plugin name, in order (repeatable).
    #[arg(long)]
    pub pipeline: Vec<String>,
    /// Requests in flight at once (crawl.concurrency); in one process these
    /// are its workers.
    #[arg(long, visible_alias = "workers")]
    pub concurrency: Option<usize>,
}

impl WorkerOpts {
    /// Layer the flags over the settings.
    pub fn apply(&self, settings: &mut Settings) {
        if let Some(c) = self.concurrency {
            settings.crawl.concurrency = c;
        }
        settings
            .plugins
            .middlewares
            .extend(self.middleware.iter().cloned());
        settings
            .plugins
            .pipelines
            .extend(self.pipeline.iter().cloned());
    }
}

#[derive(Args, Debug)]
pub struct PluginsArgs {
    /// Print JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ParseArgs {
    /// Spider: a name in the plugins directory, or a path to a .wasm file.
    #[arg(long)]
    pub spider: String,
    /// Recorded response (JSON: url, status, headers, body, depth, request).
    #[arg(long)]
    pub response: PathBuf,
}

pub async fn main(cli: Cli) -> Result<i32> {
    let mut settings = Settings::load(cli.global.config.as_deref())?;
    if let Some(dir) = &cli.global.plugins {
        settings.plugins.dir = dir.clone();
    }
    if cli.global.allow_private {
        settings.crawl.allow_private = true;
    }
    if let Some(url) = &cli.global.redis {
        settings.redis.url = url.clone();
    }
    if let Some(brokers) = &cli.global.kafka {
        settings.kafka.brokers = brokers.clone();
    }
    if let Some(f) = cli.global.log_format {
        settings.log.format = match f {
            LogFormatArg::Text => LogFormat::Text,
            LogFormatArg::Json => LogFormat::Json,
        };
    }
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
            Ok(json!({"action": "stop", "appid": args.appid, "spiderid": args.spiderid, "crawlid": crawlid, "total_purged": purged}))
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
    }
}

impl Command {
    /// Layer this command's own flags over the settings, before they are
    /// validated.
    fn apply(&self, settings: &mut Settings) {
        match self {
            Command::Run(args) => {
                args.requests.raise_depth(settings);
                args.worker.apply(settings);
            }
            Command::Submit(args) => args.requests.raise_depth(settings),
            Command::Worker(args) => args.opts.apply(settings),
            Command::Up(opts) => opts.apply(settings),
            Command::Rest(args) => {
                if let Some(port) = args.port {
                    settings.rest.port = port;
                }
            }
            _ => {}
        }
    }
}

impl RequestArgs {
    /// `--maxdepth` raises `crawl.maxdepth_limit` for this run.
    fn raise_depth(&self, settings: &mut Settings) {
        if let Some(d) = self.maxdepth {
            settings.crawl.maxdepth_limit = settings.crawl.maxdepth_limit.max(d);
        }
    }
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
    let frontier = stores.frontier.clone();
    let engine = wiring::engine(&settings, &stats, &registry, stores, sink)?;
    for r in requests {
        let (url, crawlid) = (r.url.clone(), r.crawlid.clone());
        if engine.submit(r).await? {
            tracing::info!(url = %crate::config::redact(&url), %crawlid, "crawl submitted");
        } else {
            tracing::warn!(url = %crate::config::redact(&url), %crawlid, "not queued: its domain has reached crawl.global_page_per_domain_limit");
        }
    }

    let stop = Shutdown::on_signal(settings.process.grace());
    let progress = std::io::stderr().is_terminal().then(|| {
        let (stats, frontier) = (stats.clone(), frontier.clone());
        tokio::spawn(async move { progress_line(stats, frontier).await })
    });
    engine.run(!args.serve, stop.clone()).await;
    if let Some(p) = progress {
        p.abort();
        eprint!("\r\x1b[K");
    }
    let left = frontier.counts().await.unwrap_or_default();
    summary(&stats, left);
    // A result that was not delivered is a failed run, whatever else went
    // well: a script must not take a partial output for a whole one.
    let undelivered = stats.undelivered.get();
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
        let cap = settings.crawl.global_page_per_domain_limit;
        if crate::crawl::submit(&*frontier, &*dedup, r, cap).await? {
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
        let pages = stats.pages.get();
        let c = frontier.counts().await.unwrap_or_default();
        eprint!(
            "\r\x1b[K{pages} pages  {}/s  queued {}  in flight {}  errors {}",
            pages - last,
            c.queued,
            c.in_flight,
            stats.errors.get()
        );
        last = pages;
    }
}

fn summary(stats: &Stats, left: crate::scheduler::Counts) {
    let secs = stats.elapsed().as_secs_f64();
    let pages = stats.pages.get();
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
        errors = stats.errors.get(),
        retries = stats.retries.get(),
        paused = stats.paused.get(),
        robots_denied = stats.robots_denied.get(),
        plugin_calls,
        plugin_us_per_call = format!(
            "{:.1}",
            plugin_time.as_secs_f64() * 1e6 / plugin_calls.max(1) as f64
        ),
        plugin_instances,
        store_round_trips = stats.store_round_trips.get(),
        empty_pops = stats.empty_pops.get(),
        undelivered = stats.undelivered.get(),
        released = stats.released.get(),
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
    let undelivered = stats.undelivered.get();
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
