//! Section 2: an embedded crawl (`spinneret run`) of the site, and what its
//! summary line says: pages/s, CPU ms per page, peak RSS.

use crate::runner::{bench_config, summary_of};
use anyhow::{bail, Result};
use spinneret_testsite::Site;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How much of the site a crawl covers.
#[derive(Clone, Copy)]
pub(crate) enum Scope {
    /// Every reachable page.
    Whole,
    /// The first 100 pages admitted per host, all with their links followed.
    Sample,
}

impl Scope {
    pub(crate) fn args(self, site: &Site) -> Vec<String> {
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
pub(crate) struct Crawl {
    pub(crate) pages: u64,
    pub(crate) wall: Duration,
    pub(crate) cpu_ms_per_page: f64,
    pub(crate) peak_rss_mb: u64,
    pub(crate) parse_us: f64,
    pub(crate) statuses: String,
}

impl Crawl {
    pub(crate) fn per_second(&self) -> f64 {
        self.pages as f64 / self.wall.as_secs_f64()
    }

    pub(crate) fn lines(&self, site: &Site, concurrency: usize) -> Vec<String> {
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
pub(crate) async fn crawl(
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
