//! Configuration in three steps: raw serde structs (unknown keys rejected),
//! layered as defaults < TOML file < `SPINNERET_<TABLE>__<KEY>` env < CLI
//! flags, then validated into [`Settings`]. Every timeout and limit lives
//! here; docs/settings.md has the table.

mod layers;
mod network;
mod output;
mod render;
mod seconds;
mod validate;
mod webhooks;
pub use network::Network;

/// The most shards a Redis namespace may have (`redis.shards`).
pub const MAX_SHARDS: u16 = 256;
pub use output::{Objects, Output, SplitBy, Warc};
pub use render::Render;
pub use webhooks::Webhooks;

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Every setting, with the contract's names (§6) and our additions.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub kafka: Kafka,
    pub redis: Redis,
    pub throttle: Throttle,
    pub crawl: Crawl,
    pub stats: Stats,
    pub rest: Rest,
    pub log: Log,
    pub plugins: Plugins,
    pub process: Process,
    pub render: Render,
    pub warc: Warc,
    pub output: Output,
    pub webhooks: Webhooks,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Kafka {
    pub brokers: String,
    pub topic_prefix: String,
    pub incoming_topic: String,
    pub group: String,
    pub appid_topics: bool,
    pub base64_body: bool,
    pub max_message_bytes: usize,
    /// Partitions of the topics Spinneret creates (the incoming topic caps
    /// how many ingest monitors share the work).
    pub partitions: i32,
    /// Replication factor of the topics Spinneret creates.
    pub replication: i32,
    /// Messages the ingest monitor validates and enqueues per batch.
    pub batch: usize,
    /// How often the ingest monitor commits the offsets it has handled
    /// (ms). Longer means more redelivery after a crash, never loss.
    pub commit_interval_ms: u64,
    /// Producer compression: `none`, `gzip`, `snappy`, `lz4` or `zstd`.
    pub compression: String,
    /// How long the producer waits to fill a batch (ms).
    pub linger_ms: u64,
}

impl Default for Kafka {
    fn default() -> Self {
        Kafka {
            brokers: "127.0.0.1:9092".into(),
            topic_prefix: "demo".into(),
            incoming_topic: "demo.incoming".into(),
            group: "demo-group".into(),
            appid_topics: false,
            base64_body: false,
            max_message_bytes: 1_048_576,
            partitions: 4,
            replication: 1,
            batch: 2000,
            commit_interval_ms: 1000,
            compression: "lz4".into(),
            linger_ms: 25,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Redis {
    /// Empty = embedded (in-process) stores.
    pub url: String,
    pub namespace: String,
    /// Shards of the frontier (by registered domain); 0 = 1 on a single
    /// server, [`CLUSTER_SHARDS`] on a Redis Cluster.
    pub shards: u16,
}

/// The shards of a namespace on a Redis Cluster unless set: enough to
/// spread over a few masters evenly.
pub const CLUSTER_SHARDS: u16 = 16;

impl Redis {
    /// The number of shards: as set, else by kind of deployment.
    pub fn shard_count(&self, cluster: bool) -> usize {
        match self.shards {
            0 if cluster => CLUSTER_SHARDS as usize,
            0 => 1,
            n => n as usize,
        }
    }
}

impl Default for Redis {
    fn default() -> Self {
        Redis {
            url: String::new(),
            namespace: "spinneret".into(),
            shards: 0,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Throttle {
    /// The fastest a domain-config request may make a domain: this many
    /// fetches per `window`.
    pub max_hits: u32,
    /// Apps that may send domain-config requests; empty = any.
    pub domain_config_apps: Vec<String>,
    pub hits: u32,
    #[serde(deserialize_with = "seconds::read")]
    pub window: Duration,
    pub moderated: bool,
    pub split_by_spider: bool,
    pub split_by_egress: bool,
    pub egress_id: String,
    /// Apps' weights in the fair shares of a site's budget between crawls
    /// (`{ app = 3 }`: its crawls get three fetches for another app's
    /// crawl's one); apps not named weigh 1.
    pub weights: BTreeMap<String, u32>,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle {
            max_hits: 100,
            domain_config_apps: Vec::new(),
            hits: 10,
            window: Duration::from_secs(60),
            moderated: true,
            split_by_spider: true,
            split_by_egress: false,
            egress_id: String::new(),
            weights: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Crawl {
    pub retries: u32,
    /// Seconds for the whole fetch, body included.
    #[serde(deserialize_with = "seconds::read")]
    pub download_timeout: Duration,
    /// Seconds to establish a connection.
    #[serde(deserialize_with = "seconds::read")]
    pub connect_timeout: Duration,
    /// Seconds without a byte from the server before a fetch fails.
    #[serde(deserialize_with = "seconds::read")]
    pub read_timeout: Duration,
    pub maxdepth_limit: u32,
    pub dupe_idle_ttl: u64,
    pub global_page_per_domain_limit: u32,
    pub obey_robots: bool,
    pub allow_private: bool,
    /// Non-public networks fetched although `allow_private` is off
    /// (addresses or CIDR blocks, e.g. an intranet's `10.1.0.0/16`).
    pub allow_networks: Vec<Network>,
    pub max_body_bytes: usize,
    pub max_redirects: usize,
    /// Fetch through this HTTP proxy (`http://host:port`); empty = none.
    /// Proxies from the environment are never used. Targets are still
    /// resolved and checked by the address policy first.
    pub proxy: String,
    /// Apps whose results publish the credentials they sent (`Cookie`,
    /// `Authorization`, `Proxy-Authorization` in `request_headers`).
    pub publish_credentials: Vec<String>,
    /// Links a page may add to the frontier: extraction stops there, and a
    /// spider's requests past it are dropped (the result says so).
    pub max_links_per_page: usize,
    /// Requests in flight per process.
    pub concurrency: usize,
    pub user_agent: String,
    /// Seconds a host's robots.txt stays cached.
    pub robots_ttl: u64,
    /// Seconds a robots.txt fetch may take, redirects included.
    #[serde(deserialize_with = "seconds::read")]
    pub robots_timeout: Duration,
    /// Origins whose robots.txt a process keeps.
    pub robots_cache: usize,
    /// Seconds a worker may hold a request before another worker takes it
    /// over (cluster mode). A live worker renews the leases it holds every
    /// third of this, so only a dead worker's requests are taken over.
    #[serde(deserialize_with = "seconds::read")]
    pub lease_ttl: Duration,
    /// Seconds a result whose output keeps failing with a passing error
    /// (a full disk) is retried before it is reported undeliverable.
    #[serde(deserialize_with = "seconds::read")]
    pub delivery_timeout: Duration,
    /// Fetches of one registered domain open at once, cluster-wide; 0 = no
    /// cap.
    pub max_in_flight: u32,
    /// Of them, the most one app's crawls may hold at once; 0 = no cap.
    pub max_in_flight_per_app: u32,
    /// Steps a walking spider (one request per page marked `walk`) may
    /// take from its seed, past `maxdepth`.
    pub max_walk_steps: u32,
    /// Seconds: the longest robots.txt `Crawl-delay` honoured.
    #[serde(deserialize_with = "seconds::read")]
    pub max_crawl_delay: Duration,
    /// Slow a domain down when its latency or errors rise, and back up
    /// when they fall, never past the throttle.
    pub adaptive_throttle: bool,
    /// Seconds before the first retry of a failed fetch; each further
    /// retry waits twice as long (with jitter), up to `retry_backoff_max`.
    #[serde(deserialize_with = "seconds::read")]
    pub retry_backoff: Duration,
    #[serde(deserialize_with = "seconds::read")]
    pub retry_backoff_max: Duration,
    /// Seconds a domain pauses after its second 429 or 503 in a row
    /// without `Retry-After` (the first cuts its learned rate only);
    /// doubled for each further one, up to `max_pause`, which also caps a
    /// `Retry-After`.
    #[serde(deserialize_with = "seconds::read")]
    pub pause_first: Duration,
    #[serde(deserialize_with = "seconds::read")]
    pub max_pause: Duration,
    /// Times a request answered 429 or 503 is put back (after the pause)
    /// before it gets an error result. These do not count toward `retries`.
    pub max_pauses: u32,
    /// A crawl with `sitemaps`: sitemap files read (indexes included),
    /// page URLs taken from them (also capped by its `domain_max_pages`),
    /// and seconds the reading may take.
    pub max_sitemaps: usize,
    pub max_sitemap_urls: usize,
    #[serde(deserialize_with = "seconds::read")]
    pub sitemap_timeout: Duration,
}

impl Default for Crawl {
    fn default() -> Self {
        Crawl {
            retries: 3,
            download_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(5),
            maxdepth_limit: 3,
            dupe_idle_ttl: 600,
            global_page_per_domain_limit: 0,
            obey_robots: true,
            allow_private: false,
            allow_networks: Vec::new(),
            max_body_bytes: 10 * 1024 * 1024,
            max_redirects: 10,
            max_links_per_page: 5000,
            publish_credentials: Vec::new(),
            proxy: String::new(),
            concurrency: 64,
            user_agent: concat!("spinneret/", env!("CARGO_PKG_VERSION")).into(),
            robots_ttl: 3600,
            robots_timeout: Duration::from_secs(5),
            robots_cache: 10_000,
            lease_ttl: Duration::from_secs(60),
            delivery_timeout: Duration::from_secs(60),
            max_in_flight: 8,
            max_in_flight_per_app: 0,
            max_crawl_delay: Duration::from_secs(30),
            max_walk_steps: 1000,
            adaptive_throttle: false,
            retry_backoff: Duration::from_secs(1),
            retry_backoff_max: Duration::from_secs(60),
            pause_first: Duration::from_secs(5),
            max_pause: Duration::from_secs(600),
            max_pauses: 10,
            max_sitemaps: 50,
            max_sitemap_urls: 50_000,
            sitemap_timeout: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Stats {
    pub heartbeat_ttl: u64,
    /// Port of `/metrics` for workers and monitors; 0 = none.
    pub metrics_port: u16,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            heartbeat_ttl: 120,
            metrics_port: 0,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rest {
    /// Address the gateway listens on: loopback unless configured
    /// (`0.0.0.0` for every interface; set `token` then).
    pub bind: String,
    /// Connections open at once; more are closed on accept.
    pub max_connections: usize,
    /// Seconds a client has to send a request's headers (also how long an
    /// idle kept-alive connection stays open).
    #[serde(deserialize_with = "seconds::read")]
    pub header_timeout: Duration,
    /// Seconds a client has to send a request's body once its headers are
    /// in (a body that drips is cut off with 408).
    #[serde(deserialize_with = "seconds::read")]
    pub body_timeout: Duration,
    pub port: u16,
    #[serde(deserialize_with = "seconds::read")]
    pub feed_wait: Duration,
    pub token: String,
    /// Seconds a reply waits for `/poll` before it is dropped.
    pub poll_ttl: u64,
}

impl Default for Rest {
    fn default() -> Self {
        Rest {
            bind: "127.0.0.1".into(),
            max_connections: 512,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            port: 5343,
            feed_wait: Duration::from_secs(5),
            token: String::new(),
            poll_ttl: 600,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    pub format: LogFormat,
    pub level: String,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// How every role starts and stops.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Process {
    /// Seconds a stop (SIGTERM, Ctrl-C) may take: requests in flight finish
    /// or go back to the queue, results are flushed, then the process exits.
    #[serde(deserialize_with = "seconds::read")]
    pub shutdown_grace: Duration,
}

impl Default for Process {
    fn default() -> Self {
        Process {
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Plugins {
    /// Directory of `.wasm` plugins, watched for changes.
    pub dir: PathBuf,
    /// Compiled-code cache; empty = `$XDG_CACHE_HOME/spinneret` or `~/.cache/spinneret`.
    pub cache_dir: PathBuf,
    pub watch: bool,
    pub watch_interval_ms: u64,
    /// Downloader middlewares, in order, by plugin name.
    pub middlewares: Vec<String>,
    /// Item pipelines, in order, by plugin name.
    pub pipelines: Vec<String>,
    /// Seed for the `random` host import; 0 = from the OS.
    pub random_seed: u64,
    /// Limits for every plugin...
    pub limits: Limits,
    /// ...and per plugin name, overriding them.
    pub overrides: BTreeMap<String, LimitOverrides>,
}

impl Default for Plugins {
    fn default() -> Self {
        Plugins {
            dir: PathBuf::from("plugins"),
            cache_dir: PathBuf::new(),
            watch: true,
            watch_interval_ms: 250,
            middlewares: Vec::new(),
            pipelines: Vec::new(),
            random_seed: 0,
            limits: Limits::default(),
            overrides: BTreeMap::new(),
        }
    }
}

/// Per-plugin resource limits.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Linear memory cap; growth past it fails inside the guest.
    pub memory_mb: u64,
    /// Wall time of one call (epoch interruption).
    pub call_timeout_ms: u64,
    /// Fuel per call; 0 = unmetered.
    pub fuel: u64,
    /// Recycle an instance after this many calls.
    pub recycle_calls: u64,
    /// Recycle an instance once its memory passes this.
    pub recycle_memory_mb: u64,
    /// Items one call may return (a spider's items, a monitor's replies).
    pub max_items: u64,
    /// Requests one call may return (a spider's requests, a monitor's crawls).
    pub max_requests: u64,
    /// Bytes of text one call may return, all outputs together.
    pub max_output_bytes: u64,
    /// `log` calls and stdout/stderr lines per call.
    pub max_log_lines: u64,
    /// Distinct `count` names a plugin may create, over its life.
    pub max_counters: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_mb: 128,
            call_timeout_ms: 2000,
            fuel: 0,
            recycle_calls: 10_000,
            recycle_memory_mb: 96,
            max_items: 1000,
            max_requests: 10_000,
            max_output_bytes: 32 << 20,
            max_log_lines: 100,
            max_counters: 100,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LimitOverrides {
    pub memory_mb: Option<u64>,
    pub call_timeout_ms: Option<u64>,
    pub fuel: Option<u64>,
    pub recycle_calls: Option<u64>,
    pub recycle_memory_mb: Option<u64>,
    pub max_items: Option<u64>,
    pub max_requests: Option<u64>,
    pub max_output_bytes: Option<u64>,
    pub max_log_lines: Option<u64>,
    pub max_counters: Option<u64>,
}

impl Plugins {
    /// The limits of plugin `name`: the defaults with its overrides applied.
    pub fn limits_for(&self, name: &str) -> Limits {
        let mut l = self.limits;
        if let Some(o) = self.overrides.get(name) {
            l.memory_mb = o.memory_mb.unwrap_or(l.memory_mb);
            l.call_timeout_ms = o.call_timeout_ms.unwrap_or(l.call_timeout_ms);
            l.fuel = o.fuel.unwrap_or(l.fuel);
            l.recycle_calls = o.recycle_calls.unwrap_or(l.recycle_calls);
            l.recycle_memory_mb = o.recycle_memory_mb.unwrap_or(l.recycle_memory_mb);
            l.max_items = o.max_items.unwrap_or(l.max_items);
            l.max_requests = o.max_requests.unwrap_or(l.max_requests);
            l.max_output_bytes = o.max_output_bytes.unwrap_or(l.max_output_bytes);
            l.max_log_lines = o.max_log_lines.unwrap_or(l.max_log_lines);
            l.max_counters = o.max_counters.unwrap_or(l.max_counters);
        }
        l
    }

    pub fn fuel_enabled(&self) -> bool {
        self.limits.fuel > 0 || self.overrides.values().any(|o| o.fuel.unwrap_or(0) > 0)
    }

    pub fn cache_dir(&self) -> PathBuf {
        if !self.cache_dir.as_os_str().is_empty() {
            return self.cache_dir.clone();
        }
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(std::env::temp_dir);
        base.join("spinneret")
    }
}

/// `url` fit for a log line: a password in it becomes `***`
/// (`redis://:secret@host` logs as `redis://:***@host`), in each node of a
/// comma-separated list too.
pub fn redact(url: &str) -> std::borrow::Cow<'_, str> {
    // No `@`, no credentials: the common case costs a byte scan.
    if !url.contains('@') {
        return url.into();
    }
    url.split(',')
        .map(redact_one)
        .collect::<Vec<_>>()
        .join(",")
        .into()
}

/// One URL (or `host:port` after a comma) with its password hidden.
fn redact_one(node: &str) -> std::borrow::Cow<'_, str> {
    let start = node.find("://").map_or(0, |i| i + 3);
    let rest = &node[start..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let Some(at) = authority.rfind('@') else {
        return node.into();
    };
    match authority[..at].split_once(':') {
        Some((user, _)) => format!("{}{user}:***{}", &node[..start], &rest[at..]).into(),
        None => node.into(),
    }
}

#[cfg(test)]
mod tests;
