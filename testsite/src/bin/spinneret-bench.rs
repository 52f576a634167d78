//! `just bench`: figures, never assertions.
//!
//! 1. Host link extraction on the site's 15-25 KB pages (µs per page).
//! 2. Plugin compile time, cold and from the cache.
//! 3. An embedded crawl of a 20,000-page site at unlimited depth with the
//!    `link` spider: pages/s, CPU ms per page, peak RSS (the crawler's own
//!    /proc accounting, read from its JSON summary line).

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
    report("link extraction", &link_extraction(&site))?;
    report(
        "plugin compile (link.wasm)",
        &compile_times(&spinneret, &repo, &work).await?,
    )?;
    report(
        "embedded crawl",
        &crawl(&site, &spinneret, &repo, &work, args.concurrency).await?,
    )?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
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
        links += spinneret::links::extract(p, u, &filters).len();
    }
    let rounds = 5;
    let started = Instant::now();
    for _ in 0..rounds {
        for (p, u) in pages.iter().zip(&urls) {
            std::hint::black_box(spinneret::links::extract(p, u, &filters));
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

async fn compile_times(spinneret: &Path, repo: &Path, work: &Path) -> Result<Vec<String>> {
    let cache = work.join("compile-cache");
    let plugins = work.join("compile-plugins");
    std::fs::create_dir_all(&plugins)?;
    std::fs::copy(repo.join("plugins/link.wasm"), plugins.join("link.wasm"))?;
    let mut times = Vec::new();
    for _ in 0..2 {
        let started = Instant::now();
        let out = tokio::process::Command::new(spinneret)
            .args(["plugins", "--plugins"])
            .arg(&plugins)
            .env("XDG_CACHE_HOME", &cache)
            .output()
            .await?;
        if !out.status.success() {
            bail!(
                "spinneret plugins failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        times.push(started.elapsed());
    }
    Ok(vec![
        format!(
            "cold (empty cache):  {:.0} ms for the whole `spinneret plugins` run",
            ms(times[0])
        ),
        format!("cached:              {:.0} ms", ms(times[1])),
    ])
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn crawl(
    site: &Site,
    spinneret: &Path,
    repo: &Path,
    work: &Path,
    concurrency: usize,
) -> Result<Vec<String>> {
    let expected = site.expected(0, None).len();
    let config = work.join("bench.toml");
    std::fs::write(
        &config,
        "[throttle]\nhits = 1000000\nwindow = 1\nmoderated = false\n",
    )?;
    let err: PathBuf = work.join("crawl.log");
    let started = Instant::now();
    let status = tokio::process::Command::new(spinneret)
        .args([
            "run",
            "--spider",
            "link",
            "--maxdepth",
            "1000",
            "--allow-private",
            "--log-format",
            "json",
        ])
        .args([
            "--concurrency",
            &concurrency.to_string(),
            "--seed",
            &site.seed_url(),
        ])
        .arg("--config")
        .arg(&config)
        .arg("--plugins")
        .arg(repo.join("plugins"))
        .args(["--output", "/dev/null"])
        .stderr(std::fs::File::create(&err)?)
        .status()
        .await?;
    let wall = started.elapsed();
    if !status.success() {
        bail!(
            "crawl failed: {}",
            std::fs::read_to_string(&err).unwrap_or_default()
        );
    }
    let log = std::fs::read_to_string(&err)?;
    let done: serde_json::Value = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message"] == "crawl done")
        .context("no `crawl done` summary in the crawler's log")?;
    let pages = done["pages"].as_u64().unwrap_or(0);
    let field = |k: &str| done[k].as_str().unwrap_or("?").to_string();
    Ok(vec![
        format!(
            "site:             {} pages on {} hosts, ~20 KB each; {} reachable",
            site.spec.pages, site.spec.hosts, expected
        ),
        format!(
            "pages crawled:    {pages} in {:.2} s (concurrency {concurrency})",
            wall.as_secs_f64()
        ),
        format!(
            "pages/s:          {:.0} (target >= 5000; Scrapy ~120)",
            pages as f64 / wall.as_secs_f64()
        ),
        format!(
            "CPU per page:     {} ms (target <= 0.25; Scrapy ~6.4)",
            field("cpu_ms_per_page")
        ),
        format!("peak RSS:         {} MiB", done["peak_rss_mb"]),
        format!("statuses:         {}", field("statuses")),
    ])
}
