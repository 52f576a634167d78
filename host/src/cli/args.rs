//! The command line's arguments (clap types) and how each layers its flags
//! over the settings before they are validated.

use crate::config::{LogFormat, Settings};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

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
    /// Fetch one page and try selectors on it interactively (as `scrapy shell`).
    Shell(ShellArgs),
    /// Queue crawl requests in the cluster (needs --redis) and exit.
    Submit(SubmitArgs),
    /// Info on a crawl, or on every crawl of an app (needs --redis).
    Info(CrawlArgs),
    /// Stop a crawl: purge its queue, refuse its children, end its
    /// schedule (needs --redis).
    Stop(CrawlArgs),
    /// Pause, resume, run-now or unschedule a scheduled crawl (needs --redis).
    Schedule(ScheduleArgs),
    /// Change a domain's throttle or blacklist it, live (needs --redis).
    Domain(DomainArgs),
    /// Cluster stats: spider, machine, queue or crawler (needs --redis).
    Stats(StatsArgs),
    /// Ingest monitor: validate the incoming topic, queue crawls, dead-letter the rest.
    KafkaMonitor,
    /// Control plane: answer info, stop, stats and domain-config requests on Kafka.
    RedisMonitor,
    /// Crawl worker of a cluster: results go to Kafka.
    Worker(WorkerArgs),
    /// Ingest, control plane and workers in one process (one machine).
    Up(WorkerOpts),
    /// Send requests to the incoming topic; waits for the broker's ack.
    Feed(FeedArgs),
    /// Print a topic's messages (like the reference's kafkadump).
    Dump(DumpArgs),
    /// REST gateway: /feed, /poll, health, OpenAPI and metrics (rest.port).
    Rest(RestArgs),
    /// Package a crawl's records in warc.dir as a WACZ (and upload it when
    /// output.objects is set); with --from-store, the records every worker
    /// uploaded.
    Wacz(WaczArgs),
}

#[derive(Args, Debug)]
pub struct WaczArgs {
    #[arg(long)]
    pub appid: String,
    #[arg(long)]
    pub crawlid: String,
    /// Package from the sealed files all workers uploaded to the object
    /// store (a crawl run by a cluster), not from this machine's warc.dir.
    #[arg(long)]
    pub from_store: bool,
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
pub struct ScheduleArgs {
    #[arg(value_parser = ["pause", "resume", "run-now", "unschedule"])]
    pub action: String,
    #[arg(long)]
    pub appid: String,
    #[arg(long)]
    pub crawlid: String,
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
    /// Write the crawls' lifecycle events here, one JSON object per line
    /// (`-`: stderr).
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,
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

#[derive(Args, Debug)]
pub struct ShellArgs {
    /// The page to fetch (once, through the crawl's fetcher and address policy).
    pub url: String,
    /// Answer these lines (queries or `:commands`) and exit, instead of reading stdin.
    #[arg(long)]
    pub query: Vec<String>,
    /// Write the page as `spinneret parse --response` reads it.
    #[arg(long)]
    pub save: Option<PathBuf>,
}

impl Global {
    /// Layer the global flags over the settings.
    pub(super) fn apply(&self, settings: &mut Settings) {
        if let Some(dir) = &self.plugins {
            settings.plugins.dir = dir.clone();
        }
        if self.allow_private {
            settings.crawl.allow_private = true;
        }
        if let Some(url) = &self.redis {
            settings.redis.url = url.clone();
        }
        if let Some(brokers) = &self.kafka {
            settings.kafka.brokers = brokers.clone();
        }
        if let Some(f) = self.log_format {
            settings.log.format = match f {
                LogFormatArg::Text => LogFormat::Text,
                LogFormatArg::Json => LogFormat::Json,
            };
        }
    }
}

impl Command {
    /// Layer this command's own flags over the settings, before they are
    /// validated.
    pub(super) fn apply(&self, settings: &mut Settings) {
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

#[derive(Args, Debug, Default)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub opts: WorkerOpts,
    /// Also answer control requests (info, stop, stats, domain-config).
    #[arg(long)]
    pub control_plane: bool,
}

#[derive(Args, Debug)]
pub struct FeedArgs {
    /// Requests as JSON (one or more); `-` reads one per line from stdin.
    #[arg(required = true)]
    pub json: Vec<String>,
}

#[derive(Args, Debug)]
pub struct DumpArgs {
    /// Topic to print (e.g. demo.crawled_firehose).
    #[arg(short, long)]
    pub topic: String,
    /// Start at the oldest message instead of new ones only.
    #[arg(long)]
    pub from_beginning: bool,
    /// Leave out `body` (crawl results are mostly body).
    #[arg(long)]
    pub no_body: bool,
    /// Indent the JSON.
    #[arg(long)]
    pub pretty: bool,
    /// Decode a base64 `body` (kafka.base64_body) back to text.
    #[arg(long)]
    pub decode_base64: bool,
    /// Exit after this many messages.
    #[arg(long)]
    pub count: Option<u64>,
}

#[derive(Args, Debug)]
pub struct RestArgs {
    /// Port to listen on (rest.port, default 5343).
    #[arg(long)]
    pub port: Option<u16>,
}
