//! `just bench`: figures, never assertions.
//!
//! 1. Host link extraction on the site's 15-25 KB pages (µs per page).
//! 2. An embedded crawl of a 20,000-page site at unlimited depth with the
//!    `link` spider: pages/s, CPU ms per page, peak RSS (the crawler's own
//!    /proc accounting, read from its JSON summary line).
//! 3. The `link` spider in Rust, Python and JavaScript: parse cost per page,
//!    compile time cold and from the cache, and the same crawl.
//! 4. The same crawl in cluster mode on Redis with 1 and 2 workers: also
//!    round trips per page and Redis memory per crawled URL.
//! 5. info and stop on one crawl with 1,000,000 requests queued.
//! 6. Kafka: ingest throughput (crawl requests validated and enqueued per
//!    second) and a Kafka-fed crawl of the whole site, end to end, in
//!    rounds beside the Redis-only crawl (medians of the ratios; so is the
//!    spider-rs comparison of 2).
//! 7. A rendered crawl of script-built pages in headless chromium: pages/s,
//!    the crawler's and the browser's CPU per page and peak RSS.

mod kafka;
mod peer;
mod redis;
mod render;

use anyhow::{bail, Context, Result};
use clap::Parser;
use spinneret_testsite::{Site, SiteSpec};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 20_000)]
    pages: usize,
    #[arg(long, default_value_t = 8)]
    hosts: usize,
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Run only the Kafka benchmarks (they need Redis and the broker).
    #[arg(long)]
    kafka_only: bool,
    /// Run only the embedded crawls, per spider language.
    #[arg(long)]
    languages_only: bool,
    /// Run only the crawls on Redis (1 and 2 workers).
    #[arg(long)]
    cluster_only: bool,
    /// Run only the rendered crawl (headless chromium).
    #[arg(long)]
    render_only: bool,
    /// Rounds of each side-by-side comparison (Spinneret then spider-rs;
    /// the Redis-only crawl then the Kafka-fed one); the medians of their
    /// ratios are the figures.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let spinneret = std::env::current_exe()?.with_file_name("spinneret");
    let work = std::env::temp_dir().join(format!("spinneret-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;

    let spec = SiteSpec {
        pages: args.pages,
        hosts: args.hosts,
        seed: 7,
    };
    let site = Site::start(spec).await?;
    // Every crawl but the per-language ones loads the Rust `link` spider
    // alone, so no other plugin compiles in the background meanwhile.
    let plugins = only(&repo, &work, "link")?;
    if args.render_only {
        report(
            "rendered crawl (headless chromium)",
            &render::section(&site, &spinneret, &plugins, &work).await?,
        )?;
        let _ = std::fs::remove_dir_all(&work);
        return Ok(());
    }
    if !args.kafka_only && !args.cluster_only {
        if !args.languages_only {
            report("link extraction", &link_extraction(&site))?;
        }
        // The embedded crawl of the whole site with the Rust `link` spider.
        let whole = || {
            crawl(
                &site,
                &spinneret,
                &plugins,
                &work,
                "link",
                (args.concurrency, Scope::Whole),
                None,
            )
        };
        let rust = whole().await?;
        if !args.languages_only {
            report("embedded crawl", &rust.lines(&site, args.concurrency))?;
            let mut rounds = Vec::new();
            for round in 0..args.rounds {
                let ours = match round {
                    0 => rust.clone(),
                    _ => whole().await?,
                };
                match peer::run(&site, args.concurrency).await? {
                    Some(peer) => rounds.push((ours, peer)),
                    None => break,
                }
            }
            report(
                "peer: spider-rs on the same site, same concurrency",
                &peer::compare(&site, args.concurrency, &rounds),
            )?;
        }
        report(
            "spiders by language (link in Rust, Python, JavaScript)",
            &languages(&site, &spinneret, &repo, &work, args.concurrency, rust).await?,
        )?;
        if !args.languages_only {
            report(
                "rendered crawl (headless chromium)",
                &render::section(&site, &spinneret, &plugins, &work).await?,
            )?;
        }
    }
    if args.languages_only {
        let _ = std::fs::remove_dir_all(&work);
        return Ok(());
    }
    match redis::Redis::start(&work)? {
        None => report(
            "cluster mode",
            &["skipped: redis-server is not installed (run scripts/setup --test)".into()],
        )?,
        Some(r) => {
            let mut two_workers = 0.0;
            // `--kafka-only` runs its own Redis-only crawls, in its rounds.
            for workers in [1, 2].into_iter().filter(|_| !args.kafka_only) {
                let title = format!("cluster crawl on Redis, {workers} worker(s)");
                let (lines, per_second) = cluster_crawl(
                    &site,
                    &spinneret,
                    &plugins,
                    &work,
                    (&[&r], &r.url()),
                    workers,
                    args.concurrency,
                )
                .await?;
                report(&title, &lines)?;
                r.flush()?;
                two_workers = per_second;
            }
            if !args.kafka_only {
                report(
                    "sharded crawl on a Redis Cluster (3 masters + 3 replicas, 16 shards by domain), 2 workers",
                    &sharded_crawl(&site, &spinneret, &plugins, &work, &args, two_workers).await?,
                )?;
            }
            if args.kafka_only {
                return kafka::sections(&site, &spinneret, &plugins, &work, &r, &args).await;
            }
            report(
                "idle workers on Redis (run --serve, nothing queued)",
                &idle_workers(&spinneret, &plugins, &work, &r).await?,
            )?;
            r.flush()?;
            if args.cluster_only {
                let _ = std::fs::remove_dir_all(&work);
                return Ok(());
            }
            report(
                "control operations, 1,000,000 queued in 100 crawls",
                &control_at_scale(&r).await?,
            )?;
            r.flush()?;
            return kafka::sections(&site, &spinneret, &plugins, &work, &r, &args).await;
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

/// The middle value (the mean of the two middle ones for an even count).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn report(title: &str, lines: &[String]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "\n== {title}")?;
    for l in lines {
        writeln!(out, "  {l}")?;
    }
    Ok(())
}

fn link_extraction(site: &Site) -> Vec<String> {
    let n = site.spec.pages.min(2000);
    let pages: Vec<bytes::Bytes> = (0..n)
        .map(|i| site.graph().render(i, site.addrs()))
        .collect();
    let urls: Vec<url::Url> = (0..n)
        .filter_map(|i| url::Url::parse(&site.url(i)).ok())
        .collect();
    let filters = spinneret::links::LinkFilters::default();
    let mut links = 0;
    for (p, u) in pages.iter().zip(&urls) {
        links += spinneret::links::extract(p, u, &filters, 5000).links.len();
    }
    let rounds = 5;
    let started = Instant::now();
    for _ in 0..rounds {
        for (p, u) in pages.iter().zip(&urls) {
            std::hint::black_box(spinneret::links::extract(p, u, &filters, 5000));
        }
    }
    let per_page = started.elapsed().as_secs_f64() * 1e6 / (rounds * n) as f64;
    let avg_kb = pages.iter().map(|p| p.len()).sum::<usize>() as f64 / n as f64 / 1024.0;
    vec![
        format!(
            "pages:            {n} ({avg_kb:.1} KB average, {:.1} links kept per page)",
            links as f64 / n as f64
        ),
        format!("per page:         {per_page:.1} µs (target <= 30 µs)"),
    ]
}

/// A plugins directory holding only `plugins/NAME.wasm`.
fn only(repo: &Path, work: &Path, name: &str) -> Result<PathBuf> {
    let dir = work.join(format!("plugins-{name}"));
    std::fs::create_dir_all(&dir)?;
    let wasm = format!("{name}.wasm");
    std::fs::copy(repo.join("plugins").join(&wasm), dir.join(&wasm))
        .with_context(|| format!("plugins/{wasm} is missing: run `just guests`"))?;
    Ok(dir)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// How much of the site a crawl covers.
#[derive(Clone, Copy)]
enum Scope {
    /// Every reachable page.
    Whole,
    /// The first 100 pages admitted per host, all with their links followed.
    Sample,
}

impl Scope {
    fn args(self, site: &Site) -> Vec<String> {
        match self {
            Scope::Whole => vec![
                "--maxdepth".into(),
                "1000".into(),
                "--seed".into(),
                site.seed_url(),
            ],
            Scope::Sample => vec![
                "--request".into(),
                serde_json::json!({
                    "url": site.seed_url(), "appid": "bench", "crawlid": "sample",
                    "maxdepth": 1000, "domain_max_pages": 100,
                })
                .to_string(),
            ],
        }
    }
}

/// What an embedded crawl's summary line says.
#[derive(Clone)]
struct Crawl {
    pages: u64,
    wall: Duration,
    cpu_ms_per_page: f64,
    peak_rss_mb: u64,
    parse_us: f64,
    statuses: String,
}

impl Crawl {
    fn per_second(&self) -> f64 {
        self.pages as f64 / self.wall.as_secs_f64()
    }

    fn lines(&self, site: &Site, concurrency: usize) -> Vec<String> {
        vec![
            format!(
                "site:             {} pages on {} hosts, ~20 KB each; {} reachable",
                site.spec.pages,
                site.spec.hosts,
                site.expected(0, None).len()
            ),
            format!(
                "pages crawled:    {} in {:.2} s (concurrency {concurrency})",
                self.pages,
                self.wall.as_secs_f64()
            ),
            format!(
                "pages/s:          {:.0} (target >= 5000; Scrapy ~120)",
                self.per_second()
            ),
            format!(
                "CPU per page:     {:.3} ms (target <= 0.25; Scrapy ~6.4)",
                self.cpu_ms_per_page
            ),
            format!("peak RSS:         {} MiB", self.peak_rss_mb),
            format!("statuses:         {}", self.statuses),
        ]
    }
}

/// The whole site crawled by `spinneret run --spider NAME`, with the
/// plugins in `plugins` (and the compile cache in `cache`, when given).
async fn crawl(
    site: &Site,
    spinneret: &Path,
    plugins: &Path,
    work: &Path,
    spider: &str,
    (concurrency, scope): (usize, Scope),
    cache: Option<&Path>,
) -> Result<Crawl> {
    let config = bench_config(work)?;
    let err: PathBuf = work.join(format!("crawl-{spider}-{concurrency}.log"));
    let mut command = tokio::process::Command::new(spinneret);
    command
        .args(["run", "--spider", spider])
        .args(scope.args(site))
        .args(["--allow-private", "--log-format", "json"])
        .args(["--concurrency", &concurrency.to_string()])
        .arg("--config")
        .arg(&config)
        .arg("--plugins")
        .arg(plugins)
        .args(["--output", "/dev/null"])
        .stderr(std::fs::File::create(&err)?);
    if let Some(cache) = cache {
        command.env("XDG_CACHE_HOME", cache);
    }
    let started = Instant::now();
    let status = command.status().await?;
    let wall = started.elapsed();
    if !status.success() {
        bail!(
            "crawl failed: {}",
            std::fs::read_to_string(&err).unwrap_or_default()
        );
    }
    let done = summary_of(&err)?;
    let number = |k: &str| {
        done[k]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    Ok(Crawl {
        pages: done["pages"].as_u64().unwrap_or(0),
        wall,
        cpu_ms_per_page: number("cpu_ms_per_page"),
        peak_rss_mb: done["peak_rss_mb"].as_u64().unwrap_or(0),
        parse_us: number("plugin_us_per_call"),
        statuses: done["statuses"].as_str().unwrap_or("?").to_string(),
    })
}

/// `spinneret plugins` on a directory holding one spider, into an empty
/// compile cache and then again (a restart): the load time each reports,
/// and the wall time of each whole run.
async fn compile_times(
    spinneret: &Path,
    plugins: &Path,
    cache: &Path,
) -> Result<[(f64, Duration); 2]> {
    let _ = std::fs::remove_dir_all(cache);
    let mut runs = Vec::new();
    for _ in 0..2 {
        let started = Instant::now();
        let out = tokio::process::Command::new(spinneret)
            .args(["plugins", "--json", "--plugins"])
            .arg(plugins)
            .env("XDG_CACHE_HOME", cache)
            .output()
            .await?;
        let wall = started.elapsed();
        if !out.status.success() {
            bail!(
                "spinneret plugins failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let row: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        runs.push((row["load_ms"].as_f64().unwrap_or(f64::NAN), wall));
    }
    Ok([runs[0], runs[1]])
}

/// The `link` spider in each language: parse cost, compile cost and the
/// crawl of the whole site. `rust` is the embedded crawl already run.
async fn languages(
    site: &Site,
    spinneret: &Path,
    repo: &Path,
    work: &Path,
    concurrency: usize,
    rust: Crawl,
) -> Result<Vec<String>> {
    let mut lines = vec![format!(
        "{:<11} {:>11} {:>13} {:>20} {:>8} {:>12} {:>9}",
        "language",
        "parse µs/pg",
        "compile cold",
        "cached (restart)",
        "pages/s",
        "CPU ms/page",
        "peak RSS"
    )];
    let mut sizes = Vec::new();
    for (language, spider) in [
        ("Rust", "link"),
        ("Python", "py-link"),
        ("JavaScript", "js-link"),
    ] {
        let plugins = only(repo, work, spider)?;
        let cache = work.join(format!("cache-{spider}"));
        let [cold, cached] = compile_times(spinneret, &plugins, &cache).await?;
        // Parse cost from one slot, so no call waits for a core: the mean
        // of ~800 calls on warm instances, each page's links followed.
        let serial = crawl(
            site,
            spinneret,
            &plugins,
            work,
            spider,
            (1, Scope::Sample),
            Some(&cache),
        )
        .await?;
        let own = match spider {
            "link" => None,
            _ => Some(
                crawl(
                    site,
                    spinneret,
                    &plugins,
                    work,
                    spider,
                    (concurrency, Scope::Whole),
                    Some(&cache),
                )
                .await?,
            ),
        };
        let c = own.as_ref().unwrap_or(&rust);
        lines.push(format!(
            "{language:<11} {:>11.1} {:>10.0} ms {:>8.0} ms ({:>4.0} ms) {:>8.0} {:>12.3} {:>5} MiB",
            serial.parse_us,
            cold.0,
            cached.0,
            ms(cached.1),
            c.per_second(),
            c.cpu_ms_per_page,
            c.peak_rss_mb,
        ));
        let bytes = std::fs::metadata(plugins.join(format!("{spider}.wasm")))?.len();
        sizes.push(format!("{spider} {:.0} KB", bytes as f64 / 1024.0));
    }
    lines.push("parse: mean time of one `parse` call on one slot, with the host's link".into());
    lines.push("  extraction (100 pages per host, every page's links followed).".into());
    lines.push(
        "compile: load time the host reports; in brackets the whole `spinneret plugins`".into(),
    );
    lines.push("  process on a restart (target <= 200 ms). Crawl: the whole site as above.".into());
    lines.push(format!("components: {}", sizes.join(", ")));
    Ok(lines)
}

/// The `crawl done` summary line of a worker's JSON log.
fn summary_of(log: &Path) -> Result<serde_json::Value> {
    line_of(log, "crawl done")
}

/// The first line of a JSON log with this message.
fn line_of(log: &Path, message: &str) -> Result<serde_json::Value> {
    std::fs::read_to_string(log)?
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message"] == message)
        .with_context(|| format!("no `{message}` line in {}", log.display()))
}

/// The crawls' settings: no throttle to speak of, deep crawls allowed.
fn bench_config(work: &Path) -> Result<PathBuf> {
    let config = work.join("bench.toml");
    std::fs::write(
        &config,
        "[throttle]\nhits = 1000000\nwindow = 1\nmoderated = false\n\n[crawl]\nmaxdepth_limit = 1000\n",
    )?;
    Ok(config)
}

/// What idle workers cost Redis: 1 and then 4 `run --serve` processes with
/// nothing queued, Redis commands per second per worker over 30 s after
/// they settle.
async fn idle_workers(
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

/// The 2-worker crawl again on a Redis Cluster: how the shards spread
/// Redis's work over the masters, and the speed against one server.
async fn sharded_crawl(
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

/// A crawl by `workers` processes on Redis: `redis` is the nodes to
/// measure and the `--redis` URL.
async fn cluster_crawl(
    site: &Site,
    spinneret: &Path,
    plugins: &Path,
    work: &Path,
    redis: (&[&redis::Redis], &str),
    workers: usize,
    concurrency: usize,
) -> Result<(Vec<String>, f64)> {
    let (nodes, url) = redis;
    let sum = |f: &dyn Fn(&redis::Redis) -> Result<f64>| -> Result<f64> {
        nodes.iter().map(|n| f(n)).sum()
    };
    let expected = site.expected(0, None).len();
    let config = bench_config(work)?;
    let scripts0 = sum(&|n| Ok(n.script_calls()? as f64))?;
    let mem0 = sum(&|n| Ok(n.used_memory()? as f64))?;
    let redis_cpu0 = sum(&|n| n.cpu_seconds())?;
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
    let mem = (sum(&|n| Ok(n.used_memory()? as f64))? - mem0).max(0.0);
    let scripts = sum(&|n| Ok(n.script_calls()? as f64))? - scripts0;
    let redis_cpu_ms = (sum(&|n| n.cpu_seconds())? - redis_cpu0) * 1000.0;
    let (mut seen_bytes, mut seen) = (0, 0);
    for n in nodes {
        let (b, m) = n.seen_sets("spinneret")?;
        seen_bytes += b;
        seen += m;
    }
    let mut summaries = vec![summary_of(&main_log)?];
    for (mut child, log) in helpers {
        if let Some(pid) = child.id() {
            std::process::Command::new("kill")
                .args(["-INT", &pid.to_string()])
                .status()?;
        }
        child.wait().await?;
        summaries.push(summary_of(&log)?);
    }
    let pages: u64 = summaries
        .iter()
        .map(|s| s["pages"].as_u64().unwrap_or(0))
        .sum();
    let cpu_ms: f64 = summaries
        .iter()
        .map(|s| {
            s["cpu_ms_per_page"]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
                * s["pages"].as_f64().unwrap_or(0.0)
        })
        .sum();
    let trips: u64 = summaries
        .iter()
        .map(|s| s["store_round_trips"].as_u64().unwrap_or(0))
        .sum();
    let per = |x: f64| x / pages.max(1) as f64;
    let per_second = pages as f64 / wall.as_secs_f64();
    let lines = vec![
        format!("pages crawled:    {pages} of {expected} in {:.2} s", wall.as_secs_f64()),
        format!("pages/s:          {per_second:.0} (target >= 3000 with one worker; scrapy-redis ~90)"),
        format!("CPU per page:     {:.3} ms (all workers), the bench's site {:.3} ms", per(cpu_ms), per(site_cpu_ms)),
        format!("Redis CPU/page:   {:.3} ms (redis-server over the crawl; target <= 0.10)", per(redis_cpu_ms)),
        format!("round trips/page: {:.2} counted by the workers, {:.2} scripts (INFO commandstats); target <= 4", per(trips as f64), per(scripts)),
        format!(
            "seen URLs:        {seen} in {seen_bytes} bytes: {:.1} bytes of Redis per seen URL (target <= 24)",
            seen_bytes as f64 / seen.max(1) as f64
        ),
        format!("Redis growth:     {:.1} bytes per page in all (seen sets, live throttle windows, counters, stats)", per(mem)),
    ];
    Ok((lines, per_second))
}

/// info and stop on one crawl while 1,000,000 requests of 100 crawls are queued.
async fn control_at_scale(redis: &redis::Redis) -> Result<Vec<String>> {
    use spinneret::request::CrawlRequest;
    let mut settings = spinneret::config::Settings::default();
    settings.redis.url = redis.url();
    settings.redis.namespace = "scale".into();
    let shared = spinneret::store::Redis::connect(&settings, Default::default()).await?;
    let card = std::sync::Arc::new(spinneret::scheduler::WorkerCard::new(
        false,
        Default::default(),
    ));
    let store = spinneret::scheduler::RedisFrontier::new(shared.clone(), &settings, card, None);
    use spinneret::scheduler::Frontier;
    let mem0 = redis.used_memory()?;
    let started = Instant::now();
    for c in 0..100 {
        let seed = format!(r#"{{"url":"http://d0.bench.test/","appid":"bench","crawlid":"c{c}"}}"#);
        let template = CrawlRequest::parse(&seed, 3)?.into_seed();
        for batch in 0..5 {
            let jobs = (0..2000)
                .map(|i| {
                    let n = batch * 2000 + i;
                    let mut j = template.clone();
                    j.url = format!("http://bench{}.test/p/{n}.html", n % 1000);
                    j.priority = n % 7;
                    j
                })
                .collect();
            store.push(jobs).await?;
        }
    }
    let fill = started.elapsed();
    let mem = redis.used_memory()?.saturating_sub(mem0);
    let t = Instant::now();
    let monitor = spinneret::monitor::store::MonitorStore::new(shared, &settings);
    let info = monitor.crawl_info("bench", "c42", "link").await?;
    let info_ms = ms(t.elapsed());
    let t = Instant::now();
    let purged = monitor.stop("bench", "c42", None).await?;
    let stop_ms = ms(t.elapsed());
    Ok(vec![
        format!(
            "queued:           1,000,000 in {:.1} s ({:.0} bytes of Redis each)",
            fill.as_secs_f64(),
            mem as f64 / 1e6
        ),
        format!(
            "info one crawl:   {info_ms:.1} ms ({} pending over {} domains; target <= 100 ms)",
            info.queued,
            info.domains.len()
        ),
        format!("stop one crawl:   {stop_ms:.1} ms ({purged} purged; target <= 100 ms)"),
    ])
}
