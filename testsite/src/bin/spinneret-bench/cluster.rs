//! Section 4: crawls on Redis: 1 and 2 workers on one server (round trips
//! and Redis memory per page), 2 on a sharded Redis Cluster, and what idle
//! workers cost Redis.

use crate::kafka;
use crate::redis;
use crate::runner::{bench_config, summary_of};
use crate::Args;
use anyhow::{bail, Result};
use spinneret_testsite::Site;
use std::path::Path;
use std::time::{Duration, Instant};

/// A crawl by `workers` processes on Redis: `redis` is the nodes to
/// measure and the `--redis` URL.
pub(crate) async fn cluster_crawl(
    site: &Site,
    spinneret: &Path,
    plugins: &Path,
    work: &Path,
    redis: (&[&redis::Redis], &str),
    workers: usize,
    concurrency: usize,
) -> Result<(Vec<String>, f64)> {
    let (nodes, url) = redis;
    let expected = site.expected(0, None).len();
    let config = bench_config(work)?;
    let command = |log: &Path| -> Result<tokio::process::Command> {
        let mut c = tokio::process::Command::new(spinneret);
        c.args([
            "run",
            "--spider",
            "link",
            "--allow-private",
            "--log-format",
            "json",
            "--redis",
            url,
        ])
        .args(["--concurrency", &concurrency.to_string()])
        .arg("--config")
        .arg(&config)
        .arg("--plugins")
        .arg(plugins)
        .args(["--output", "/dev/null"])
        .stderr(std::fs::File::create(log)?);
        Ok(c)
    };
    let redis0 = RedisFigures::read(nodes)?;
    // Helpers serve; the first worker brings the seed and returns when the
    // cluster has nothing queued or in flight.
    let mut helpers = Vec::new();
    for i in 1..workers {
        let log = work.join(format!("cluster-{workers}-{i}.log"));
        helpers.push((command(&log)?.arg("--serve").spawn()?, log));
    }
    let main_log = work.join(format!("cluster-{workers}-0.log"));
    let site_cpu0 = kafka::cpu_seconds(std::process::id());
    let started = Instant::now();
    let status = command(&main_log)?
        .args(["--maxdepth", "1000", "--seed", &site.seed_url()])
        .status()
        .await?;
    let wall = started.elapsed();
    let site_cpu_ms = (kafka::cpu_seconds(std::process::id()) - site_cpu0) * 1000.0;
    if !status.success() {
        bail!(
            "cluster crawl failed: {}",
            std::fs::read_to_string(&main_log).unwrap_or_default()
        );
    }
    let redis = RedisFigures::read(nodes)?.since(&redis0);
    let (seen_bytes, seen) = seen_sets(nodes)?;
    let mut summaries = vec![summary_of(&main_log)?];
    summaries.extend(stop_helpers(helpers).await?);
    let workers = WorkerFigures::of(&summaries);
    let pages = workers.pages;
    let per = |x: f64| x / pages.max(1) as f64;
    let per_second = pages as f64 / wall.as_secs_f64();
    let lines = vec![
        format!("pages crawled:    {pages} of {expected} in {:.2} s", wall.as_secs_f64()),
        format!("pages/s:          {per_second:.0} (target >= 3000 with one worker; scrapy-redis ~90)"),
        format!("CPU per page:     {:.3} ms (all workers), the bench's site {:.3} ms", per(workers.cpu_ms), per(site_cpu_ms)),
        format!("Redis CPU/page:   {:.3} ms (redis-server over the crawl; target <= 0.10)", per(redis.cpu_ms)),
        format!("round trips/page: {:.2} counted by the workers, {:.2} scripts (INFO commandstats); target <= 4", per(workers.trips as f64), per(redis.scripts)),
        format!(
            "seen URLs:        {seen} in {seen_bytes} bytes: {:.1} bytes of Redis per seen URL (target <= 24)",
            seen_bytes as f64 / seen.max(1) as f64
        ),
        format!("Redis growth:     {:.1} bytes per page in all (seen sets, live throttle windows, counters, stats)", per(redis.memory.max(0.0))),
    ];
    Ok((lines, per_second))
}

/// What the Redis nodes of a crawl report, summed over them: script calls,
/// used memory (bytes), CPU (ms).
struct RedisFigures {
    scripts: f64,
    memory: f64,
    cpu_ms: f64,
}

impl RedisFigures {
    fn read(nodes: &[&redis::Redis]) -> Result<RedisFigures> {
        let sum = |f: &dyn Fn(&redis::Redis) -> Result<f64>| -> Result<f64> {
            nodes.iter().map(|n| f(n)).sum()
        };
        Ok(RedisFigures {
            scripts: sum(&|n| Ok(n.script_calls()? as f64))?,
            memory: sum(&|n| Ok(n.used_memory()? as f64))?,
            cpu_ms: sum(&|n| n.cpu_seconds())? * 1000.0,
        })
    }

    /// The growth since `before`.
    fn since(self, before: &RedisFigures) -> RedisFigures {
        RedisFigures {
            scripts: self.scripts - before.scripts,
            memory: self.memory - before.memory,
            cpu_ms: self.cpu_ms - before.cpu_ms,
        }
    }
}

/// The seen sets of namespace `spinneret` on every node: (bytes, members).
fn seen_sets(nodes: &[&redis::Redis]) -> Result<(u64, u64)> {
    let (mut bytes, mut members) = (0, 0);
    for n in nodes {
        let (b, m) = n.seen_sets("spinneret")?;
        bytes += b;
        members += m;
    }
    Ok((bytes, members))
}

/// SIGINT to each serving helper; the summary line each writes on its way out.
async fn stop_helpers(
    helpers: Vec<(tokio::process::Child, std::path::PathBuf)>,
) -> Result<Vec<serde_json::Value>> {
    let mut summaries = Vec::new();
    for (mut child, log) in helpers {
        if let Some(pid) = child.id() {
            std::process::Command::new("kill")
                .args(["-INT", &pid.to_string()])
                .status()?;
        }
        child.wait().await?;
        summaries.push(summary_of(&log)?);
    }
    Ok(summaries)
}

/// The workers' summary lines added up: pages, CPU ms, store round trips.
struct WorkerFigures {
    pages: u64,
    cpu_ms: f64,
    trips: u64,
}

impl WorkerFigures {
    fn of(summaries: &[serde_json::Value]) -> WorkerFigures {
        WorkerFigures {
            pages: summaries
                .iter()
                .map(|s| s["pages"].as_u64().unwrap_or(0))
                .sum(),
            cpu_ms: summaries
                .iter()
                .map(|s| {
                    s["cpu_ms_per_page"]
                        .as_str()
                        .and_then(|v| v.parse::<f64>().ok())
                        .unwrap_or(0.0)
                        * s["pages"].as_f64().unwrap_or(0.0)
                })
                .sum(),
            trips: summaries
                .iter()
                .map(|s| s["store_round_trips"].as_u64().unwrap_or(0))
                .sum(),
        }
    }
}

/// The 2-worker crawl again on a Redis Cluster: how the shards spread
/// Redis's work over the masters, and the speed against one server.
pub(crate) async fn sharded_crawl(
    site: &Site,
    spinneret: &Path,
    plugins: &Path,
    work: &Path,
    args: &Args,
    one_server: f64,
) -> Result<Vec<String>> {
    let Some(cluster) = redis::Cluster::start(work)? else {
        return Ok(vec!["skipped: redis-server is not installed".into()]);
    };
    let nodes: Vec<&redis::Redis> = cluster.nodes.iter().collect();
    let masters = cluster.masters();
    let cpu0: Vec<f64> = masters
        .iter()
        .map(|n| n.cpu_seconds())
        .collect::<Result<_>>()?;
    let (mut lines, per_second) = cluster_crawl(
        site,
        spinneret,
        plugins,
        work,
        (&nodes, &cluster.url()),
        2,
        args.concurrency,
    )
    .await?;
    let cpu: Vec<f64> = masters
        .iter()
        .zip(&cpu0)
        .map(|(n, c0)| Ok((n.cpu_seconds()? - c0) * 1000.0))
        .collect::<Result<_>>()?;
    let mean = cpu.iter().sum::<f64>() / cpu.len() as f64;
    let busiest = cpu.iter().copied().fold(0.0, f64::max);
    let each: Vec<String> = cpu.iter().map(|c| format!("{c:.0}")).collect();
    lines.push(format!(
        "shard balance:    Redis CPU per master {} ms; busiest / mean = {:.2} ({} domains on 16 shards; replicas' CPU is in Redis CPU/page)",
        each.join(" / "),
        busiest / mean.max(f64::EPSILON),
        args.hosts
    ));
    lines.push(format!(
        "vs one server:    {:.2}x the pages/s of the same 2-worker crawl on one redis-server",
        per_second / one_server.max(f64::EPSILON)
    ));
    Ok(lines)
}

/// What idle workers cost Redis: 1 and then 4 `run --serve` processes with
/// nothing queued, Redis commands per second per worker over 30 s after
/// they settle.
pub(crate) async fn idle_workers(
    spinneret: &Path,
    plugins: &Path,
    work: &Path,
    redis: &redis::Redis,
) -> Result<Vec<String>> {
    let config = bench_config(work)?;
    let mut lines = Vec::new();
    for workers in [1usize, 4] {
        let mut children = Vec::new();
        for i in 0..workers {
            let log = work.join(format!("idle-{workers}-{i}.log"));
            children.push(
                tokio::process::Command::new(spinneret)
                    .args([
                        "run",
                        "--serve",
                        "--spider",
                        "link",
                        "--redis",
                        &redis.url(),
                    ])
                    .arg("--config")
                    .arg(&config)
                    .arg("--plugins")
                    .arg(plugins)
                    .args(["--output", "/dev/null"])
                    .stderr(std::fs::File::create(&log)?)
                    .kill_on_drop(true)
                    .spawn()?,
            );
        }
        // Started, connected and past their first upkeep.
        tokio::time::sleep(Duration::from_secs(3)).await;
        // As long as an idle worker's longest rhythm (its upkeep).
        let window = Duration::from_secs(30);
        let before = redis.commands()?;
        tokio::time::sleep(window).await;
        let n = redis.commands()? - before;
        let per_worker = n as f64 / window.as_secs_f64() / workers as f64;
        lines.push(format!(
            "{workers} worker(s):      {per_worker:.1} Redis commands/s per worker (target <= 1)"
        ));
        for mut c in children {
            if let Some(pid) = c.id() {
                std::process::Command::new("kill")
                    .args(["-INT", &pid.to_string()])
                    .status()?;
            }
            c.wait().await?;
        }
    }
    Ok(lines)
}
