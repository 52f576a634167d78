//! Kafka benchmarks on a throwaway nisshi broker: ingest throughput (crawl
//! requests validated and enqueued per second) and a Kafka-fed cluster
//! crawl, end to end (feed to the last result on the broker), in rounds beside
//! the Redis-only crawl.

use crate::cluster::cluster_crawl;
use crate::redis::Redis;
use crate::runner::{median, report};
use crate::Args;
use anyhow::{Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use spinneret_testsite::Site;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The topics of the `demo` prefix that `spinneret up` uses.
const TOPICS: [&str; 4] = [
    "demo.incoming",
    "demo.errors",
    "demo.outbound_firehose",
    "demo.crawled_firehose",
];

/// Where `spinneret up` delivers the pages.
const RESULTS: &str = "demo.crawled_firehose";

pub struct Broker {
    port: u16,
    child: Child,
}

impl Broker {
    /// `None` when the broker is not built (`scripts/setup --test` builds it).
    pub async fn start() -> Result<Option<Broker>> {
        let home = std::env::var_os("HOME").unwrap_or_default();
        let tools = std::env::var_os("SPINNERET_TOOLS")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(home).join(".cache/spinneret/tools"));
        let bin = tools.join("bin/nisshi");
        if !bin.exists() {
            return Ok(None);
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(bin)
            .args(["broker", "--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://nisshi/"])
            .args(["--group-initial-rebalance-delay", "0s"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(20),
                "nisshi did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Some(Broker { port, child }))
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.brokers())
            .set("log_level", "0");
        c
    }

    async fn create_topics(&self, names: &[&str], partitions: i32) -> Result<()> {
        let admin: AdminClient<_> = self.client().create()?;
        let topics: Vec<NewTopic> = names
            .iter()
            .map(|n| NewTopic::new(n, partitions, TopicReplication::Fixed(1)))
            .collect();
        admin
            .create_topics(&topics, &AdminOptions::new())
            .await
            .context("creating topics")?;
        Ok(())
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A config for `broker` and `redis` in namespace `ns`; `compression`
/// replaces the default `kafka.compression`.
fn config(
    work: &Path,
    name: &str,
    (broker, redis): (&Broker, &Redis),
    ns: &str,
    compression: Option<&str>,
) -> Result<PathBuf> {
    let path = work.join(name);
    let compression = compression.map_or(String::new(), |c| format!("compression = \"{c}\"\n"));
    std::fs::write(
        &path,
        format!(
            "[kafka]\nbrokers = \"{}\"\npartitions = 4\n{compression}[redis]\nurl = \"{}\"\nnamespace = \"{ns}\"\n\
             [throttle]\nhits = 1000000\nwindow = 1\nmoderated = false\n\
             [crawl]\nmaxdepth_limit = 1000\nallow_private = true\n",
            broker.brokers(),
            redis.url()
        ),
    )?;
    Ok(path)
}

/// A running `spinneret` role, killed if the bench bails out before
/// [`stop`] (so no worker outlives the run).
struct Role(Child);

impl Role {
    fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn role(
    spinneret: &Path,
    plugins: &Path,
    config: &Path,
    args: &[&str],
    log: &Path,
) -> Result<Role> {
    Ok(Role(
        Command::new(spinneret)
            .args(args)
            .arg("--config")
            .arg(config)
            .arg("--plugins")
            .arg(plugins)
            .args(["--log-format", "json"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log)?)
            .spawn()?,
    ))
}

/// User + system CPU of a process so far, from /proc.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
    let f: Vec<f64> = after.split(' ').map(|x| x.parse().unwrap_or(0.0)).collect();
    // utime and stime are fields 14 and 15; `after` starts at field 3.
    (f.get(11).unwrap_or(&0.0) + f.get(12).unwrap_or(&0.0)) / 100.0
}

fn stop(mut role: Role) -> Result<()> {
    Command::new("kill")
        .args(["-INT", &role.id().to_string()])
        .status()?;
    role.0.wait()?;
    Ok(())
}

/// Wait until `up` answers an info request on `outbound_firehose`: its
/// consumer has joined and its producer is ready (an idempotent producer
/// takes a second to get its id), so the crawl's clock starts on a
/// running node, as the Redis-only crawl's does.
async fn warm_up(spinneret: &Path, config: &Path, broker: &Broker, log: &Path) -> Result<()> {
    let replies: StreamConsumer = broker
        .client()
        .set("group.id", "bench-warm-up")
        .set("auto.offset.reset", "earliest")
        .create()?;
    replies.subscribe(&["demo.outbound_firehose"])?;
    let ask =
        r#"{"uuid":"warm-up","appid":"bench","spiderid":"link","action":"info","crawlid":"none"}"#;
    let fed = Command::new(spinneret)
        .args(["feed", ask, "--config"])
        .arg(config)
        .stderr(Stdio::null())
        .status()?;
    anyhow::ensure!(fed.success(), "feed failed");
    loop {
        let m = tokio::time::timeout(Duration::from_secs(60), replies.recv())
            .await
            .with_context(|| {
                format!(
                    "no info reply from spinneret up in 60 s: {}",
                    std::fs::read_to_string(log).unwrap_or_default()
                )
            })??;
        use rdkafka::Message;
        if m.payload()
            .is_some_and(|p| p.windows(9).any(|w| w == b"\"warm-up\""))
        {
            return Ok(());
        }
    }
}

/// `n` distinct crawl requests through one ingest monitor.
pub async fn ingest(
    spinneret: &Path,
    plugins: &Path,
    work: &Path,
    redis: &Redis,
    broker: &Broker,
    n: usize,
) -> Result<Vec<String>> {
    broker.create_topics(&TOPICS, 4).await?;
    let producer: FutureProducer = broker
        .client()
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let produced = Instant::now();
    let mut pending = Vec::with_capacity(n);
    for i in 0..n {
        let body = format!(
            r#"{{"url":"http://site{}.example/page/{i}","appid":"bench","crawlid":"c{i}","maxdepth":1,"priority":{}}}"#,
            i % 5000,
            1 + i % 100
        );
        let key = i.to_string();
        pending.push(
            producer
                .send_result(FutureRecord::to("demo.incoming").key(&key).payload(&body))
                .map_err(|(e, _)| e)?,
        );
    }
    for p in pending {
        p.await?.map_err(|(e, _)| e)?;
    }
    let produce_s = produced.elapsed().as_secs_f64();

    let config = config(work, "ingest.toml", (broker, redis), "bench-ingest", None)?;
    let log = work.join("ingest.log");
    let redis_cpu0 = redis.cpu_seconds()?;
    let started = Instant::now();
    let monitor = role(spinneret, plugins, &config, &["kafka-monitor"], &log)?;
    let mut first: Option<Instant> = None;
    let mut con = ::redis::Client::open(redis.url())?.get_connection()?;
    loop {
        let done: u64 = ::redis::cmd("ZCARD")
            .arg("{bench-ingest}:crawls")
            .query(&mut con)?;
        if done > 0 && first.is_none() {
            first = Some(Instant::now());
        }
        if done as usize >= n {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "ingest stalled at {done} of {n}: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let wall = started.elapsed().as_secs_f64();
    let steady = first.map(|f| f.elapsed().as_secs_f64()).unwrap_or(wall);
    let monitor_cpu = cpu_seconds(monitor.id());
    let redis_cpu = redis.cpu_seconds()? - redis_cpu0;
    stop(monitor)?;
    Ok(vec![
        format!("CPU:              monitor {monitor_cpu:.2} s, Redis {redis_cpu:.2} s ({:.1} + {:.1} µs per request)", monitor_cpu * 1e6 / n as f64, redis_cpu * 1e6 / n as f64),
        format!("requests:         {n} distinct crawl requests, 4 partitions (produced in {produce_s:.2} s)"),
        format!("validated+queued: all in {wall:.2} s from the monitor's start ({:.0}/s, joining the group included)", n as f64 / wall),
        format!("throughput:       {:.0} requests/s from the first queued to the last (target >= 50,000)", n as f64 / steady),
    ])
}

/// The whole site crawled by `spinneret up`, fed one seed on Kafka; timed
/// from the feed to the last expected result on crawled_firehose.
pub async fn crawl(
    site: &Site,
    spinneret: &Path,
    plugins: &Path,
    work: &Path,
    redis: &Redis,
    broker: &Broker,
    // Its concurrency, and `kafka.compression` when not the default.
    (concurrency, compression): (usize, Option<&str>),
) -> Result<(Vec<String>, f64)> {
    let expected = site.expected(0, None).len();
    // Each round has a fresh broker: its readers need the topics at once.
    broker.create_topics(&TOPICS, 4).await?;
    let config = config(
        work,
        "kafka-crawl.toml",
        (broker, redis),
        "bench-kafka",
        compression,
    )?;
    let log = work.join("up.log");
    let up = role(
        spinneret,
        plugins,
        &config,
        &["up", "--concurrency", &concurrency.to_string()],
        &log,
    )?;
    warm_up(spinneret, &config, broker, &log).await?;
    let seed = format!(
        r#"{{"url":"{}","appid":"bench","crawlid":"kafka-crawl","maxdepth":1000}}"#,
        site.seed_url()
    );
    let (up_cpu0, broker_cpu0) = (cpu_seconds(up.id()), cpu_seconds(broker.child.id()));
    let bench_cpu0 = cpu_seconds(std::process::id());
    let redis_cpu0 = redis.cpu_seconds()?;
    let stats0 = redis.command_stats()?;
    let started = Instant::now();
    let fed = Command::new(spinneret)
        .args(["feed", &seed, "--config"])
        .arg(&config)
        .stderr(Stdio::null())
        .status()?;
    anyhow::ensure!(fed.success(), "feed failed");
    // Done when crawled_firehose holds every page: a lease is acked only
    // once its result is on the broker, so the topic's offsets say so
    // without a reader taking CPU beside the crawl (the Redis-only crawl
    // has no reader either). The results are read back after the clock.
    until_delivered(broker, expected, started, &log).await?;
    let wall = started.elapsed().as_secs_f64();
    let up_cpu = cpu_seconds(up.id()) - up_cpu0;
    let broker_cpu = cpu_seconds(broker.child.id()) - broker_cpu0;
    let bench_cpu = cpu_seconds(std::process::id()) - bench_cpu0;
    let redis_cpu = redis.cpu_seconds()? - redis_cpu0;
    let calls = redis_calls_since(redis, &stats0)?;
    stop(up)?;
    let (seen, bytes) = read_back(broker, expected).await?;
    let per = |s: f64| s * 1000.0 / seen.max(1) as f64;
    let per_second = seen as f64 / wall;
    Ok((vec![
        format!(
            "results:          {expected} delivered in {wall:.2} s; read back after: {seen} distinct pages, {:.0} MB of JSON",
            bytes as f64 / 1e6
        ),
        format!(
            "CPU per page:     spinneret up {:.3} ms, broker {:.3} ms, Redis {:.3} ms, the bench's site {:.3} ms",
            per(up_cpu),
            per(broker_cpu),
            per(redis_cpu),
            per(bench_cpu)
        ),
        redis_commands_line(&calls, seen),
        format!(
            "pages/s:          {per_second:.0} end to end (feed -> crawl -> the last result on crawled_firehose)"
        ),
    ], per_second))
}

/// Until crawled_firehose holds `expected` results (600 s at most from
/// `started`): a lease is acked only once its result is on the broker, so
/// the topic's offsets say so without a reader taking CPU beside the crawl
/// (the Redis-only crawl has no reader either).
async fn until_delivered(
    broker: &Broker,
    expected: usize,
    started: Instant,
    log: &Path,
) -> Result<()> {
    let offsets: Arc<BaseConsumer> = Arc::new(broker.client().create()?);
    loop {
        let o = offsets.clone();
        let delivered = tokio::task::spawn_blocking(move || -> Result<i64> {
            (0..4).try_fold(0, |sum, p| {
                let (low, high) = o.fetch_watermarks(RESULTS, p, Duration::from_secs(5))?;
                Ok(sum + high - low)
            })
        })
        .await??;
        if delivered as usize >= expected {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "{delivered} of {expected} results after 600 s: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// The Redis commands run since `stats0` (calls, server µs), busiest first.
fn redis_calls_since(
    redis: &Redis,
    stats0: &std::collections::BTreeMap<String, (u64, u64)>,
) -> Result<Vec<(String, u64, u64)>> {
    let mut calls: Vec<(String, u64, u64)> = redis
        .command_stats()?
        .into_iter()
        .map(|(name, (n, us))| {
            let (n0, us0) = stats0.get(&name).copied().unwrap_or_default();
            (name, n - n0, us - us0)
        })
        .filter(|c| c.1 > 0 && c.0 != "info")
        .collect();
    calls.sort_by_key(|c| std::cmp::Reverse(c.2));
    Ok(calls)
}

/// The busiest Redis commands: calls and server time per page of `seen`.
fn redis_commands_line(calls: &[(String, u64, u64)], seen: usize) -> String {
    format!(
        "Redis commands:   {} (calls and server time per page)",
        calls
            .iter()
            .take(6)
            .map(|(name, n, us)| format!(
                "{name} {:.2} / {:.0} us",
                *n as f64 / seen.max(1) as f64,
                *us as f64 / seen.max(1) as f64
            ))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Reads crawled_firehose from the start until it has `expected` distinct
/// pages: the crawl lost nothing. Returns them and the bytes read.
async fn read_back(broker: &Broker, expected: usize) -> Result<(usize, usize)> {
    use rdkafka::Message;
    let consumer: StreamConsumer = broker
        .client()
        .set("group.id", "bench-reader")
        .set("auto.offset.reset", "earliest")
        .create()?;
    consumer.subscribe(&[RESULTS])?;
    let (mut urls, mut bytes) = (HashSet::new(), 0);
    while urls.len() < expected {
        let m = tokio::time::timeout(Duration::from_secs(60), consumer.recv())
            .await
            .with_context(|| format!("read back {} of {expected} pages", urls.len()))??;
        let payload = m.payload().unwrap_or_default();
        bytes += payload.len();
        let page: serde_json::Value = serde_json::from_slice(payload)?;
        urls.insert(page["url"].as_str().unwrap_or_default().to_string());
    }
    Ok((urls.len(), bytes))
}

/// Kafka ingest, then rounds of the 1-worker Redis-only crawl followed by
/// the Kafka-fed crawl, each on a fresh broker and a flushed Redis.
pub async fn sections(
    site: &Site,
    spinneret: &Path,
    plugins: &Path,
    work: &Path,
    r: &Redis,
    args: &Args,
) -> Result<()> {
    let Some(b) = Broker::start().await? else {
        report(
            "Kafka",
            &["skipped: the nisshi broker is not built (run scripts/setup --test)".into()],
        )?;
        let _ = std::fs::remove_dir_all(work);
        return Ok(());
    };
    report(
        "Kafka ingest (kafka-monitor)",
        &ingest(spinneret, plugins, work, r, &b, 200_000).await?,
    )?;
    r.flush()?;
    drop(b);
    // Each round: the Redis-only crawl, then the Kafka-fed one with the
    // default compression (lz4), then without compression.
    let (mut lines, mut rounds) = (Vec::new(), Vec::new());
    for _ in 0..args.rounds.max(1) {
        let (these, redis_only, kafka) = round(site, spinneret, plugins, work, r, args).await?;
        lines = these;
        rounds.push((redis_only, kafka));
    }
    lines.extend(rounds_lines(&rounds));
    report("Kafka-fed cluster crawl (spinneret up; last round)", &lines)?;
    let _ = std::fs::remove_dir_all(work);
    Ok(())
}

/// One round: the 1-worker Redis-only crawl, then the Kafka-fed one with
/// the default compression (lz4), then without compression. The Kafka-fed
/// crawl's lines (the CPU of the others beside them), the Redis-only
/// pages/s, and the Kafka-fed pages/s with and without lz4.
async fn round(
    site: &Site,
    spinneret: &Path,
    plugins: &Path,
    work: &Path,
    r: &Redis,
    args: &Args,
) -> Result<(Vec<String>, f64, [f64; 2])> {
    let mut lines = Vec::new();
    let (redis_lines, redis_only) = cluster_crawl(
        site,
        spinneret,
        plugins,
        work,
        (&[r], &r.url()),
        1,
        args.concurrency,
    )
    .await?;
    r.flush()?;
    let mut kafka = [0.0; 2];
    for (i, compression) in [None, Some("none")].into_iter().enumerate() {
        let b = Broker::start()
            .await?
            .context("the nisshi broker stopped being there")?;
        let (these, per_second) = crawl(
            site,
            spinneret,
            plugins,
            work,
            r,
            &b,
            (args.concurrency, compression),
        )
        .await?;
        r.flush()?;
        kafka[i] = per_second;
        if compression.is_none() {
            lines = these;
        } else {
            // Where the CPU goes without lz4, beside it.
            lines.extend(
                these
                    .into_iter()
                    .filter(|l| l.starts_with("CPU per page"))
                    .map(|l| format!("uncompressed {l}")),
            );
        }
    }
    // The Redis-only crawl's CPU, for the comparison.
    lines.extend(
        redis_lines
            .iter()
            .filter(|l| l.starts_with("CPU per page") || l.starts_with("Redis CPU"))
            .map(|l| format!("Redis-only {l}")),
    );
    Ok((lines, redis_only, kafka))
}

/// The rounds' pages/s, and the medians of the Kafka-fed crawls' ratios to
/// the Redis-only one.
fn rounds_lines(rounds: &[(f64, [f64; 2])]) -> Vec<String> {
    let ratio = |i: usize| median(rounds.iter().map(|(r, k)| k[i] / r).collect());
    vec![
        format!(
        "rounds:           {} (each: the 1-worker Redis-only crawl, then this one with lz4, then without compression); pages/s {}",
        rounds.len(),
        rounds
            .iter()
            .map(|(r, k)| format!("{r:.0}/{:.0}/{:.0}", k[0], k[1]))
            .collect::<Vec<_>>()
            .join(", ")
    ),
        format!(
        "Kafka / Redis:    {:.2}x the Redis-only crawl's pages/s with kafka.compression = lz4 (the default), {:.2}x with none (medians of the rounds; target >= 0.8)",
        ratio(0),
        ratio(1)
    ),
    ]
}
