//! The rendered crawl: the site's scripted tree (`/js/tree/`, every page
//! reached only through the links its script writes) crawled with
//! `render: always`, at two render concurrencies, by the walled browser
//! and by the one it replaced (root, no sandbox), alternating which goes
//! first.

use crate::runner::{bench_config, line_of};
use anyhow::{bail, Result};
use spinneret_testsite::Site;
use std::path::Path;
use std::time::Instant;

pub async fn section(
    site: &Site,
    spinneret: &Path,
    plugins: &Path,
    work: &Path,
) -> Result<Vec<String>> {
    if !Path::new("/usr/bin/chromium").exists() {
        return Ok(vec![
            "skipped: chromium is not installed (run scripts/setup --test)".into(),
        ]);
    }
    let seed = site.scripted_url(0, "tree/0.html");
    let mut lines = vec![format!(
        "site:             {} script-built pages (app shell + script), link spider, render: always",
        spinneret_testsite::SCRIPTED_TREE
    )];
    for (i, concurrency) in [2, 4].into_iter().enumerate() {
        let order = if i % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        let mut rates = [0.0; 2];
        for walled in order {
            let run = Run {
                seed: &seed,
                spinneret,
                plugins,
                work,
                concurrency,
                walled,
            };
            let (rate, described) = run.crawl().await?;
            rates[usize::from(!walled)] = rate;
            lines.extend(described);
        }
        lines.push(format!(
            "concurrency {concurrency}:    walled / unwalled pages/s = {:.2}",
            rates[0] / rates[1]
        ));
    }
    Ok(lines)
}

struct Run<'a> {
    seed: &'a str,
    spinneret: &'a Path,
    plugins: &'a Path,
    work: &'a Path,
    concurrency: usize,
    walled: bool,
}

impl Run<'_> {
    /// One rendered crawl: its pages/s and the lines that describe it.
    async fn crawl(&self) -> Result<(f64, Vec<String>)> {
        let (concurrency, work) = (self.concurrency, self.work);
        let (name, walls) = if self.walled {
            ("walled", "")
        } else {
            // No such user and the sandbox allowed off: as root, the browser
            // before the walls (in a network namespace, which costs nothing).
            (
                "unwalled",
                "user = \"spinneret-bench-no-such-user\"\nallow_unsandboxed = true\n",
            )
        };
        let text = std::fs::read_to_string(bench_config(work)?)?;
        let config = work.join(format!("render-{concurrency}-{name}.toml"));
        std::fs::write(
            &config,
            format!("{text}\n[render]\nconcurrency = {concurrency}\n{walls}"),
        )?;
        let log = work.join(format!("render-{concurrency}-{name}.log"));
        let started = Instant::now();
        let status = tokio::process::Command::new(self.spinneret)
            .args(["run", "--spider", "link", "--seed", self.seed])
            .args(["--maxdepth", "100", "--render", "always", "--allow-private"])
            .args(["--log-format", "json"])
            .args(["--concurrency", &concurrency.to_string()])
            .arg("--config")
            .arg(&config)
            .arg("--plugins")
            .arg(self.plugins)
            .args(["--output", "/dev/null"])
            .stderr(std::fs::File::create(&log)?)
            .status()
            .await?;
        let wall = started.elapsed().as_secs_f64();
        if !status.success() {
            bail!(
                "rendered crawl failed: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        let done = line_of(&log, "crawl done")?;
        let renders = line_of(&log, "renders")?;
        let text = |v: &serde_json::Value, k: &str| {
            v[k].as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v[k].to_string())
        };
        let pages = done["pages"].as_u64().unwrap_or(0);
        let rate = pages as f64 / wall;
        let lines = vec![
            format!(
                "concurrency {concurrency}, {name}: {pages} pages in {wall:.2} s = {rate:.1} pages/s; {} rendered, {} failed; mean render {} ms",
                text(&renders, "rendered"),
                text(&renders, "render_failed"),
                text(&renders, "render_ms_mean"),
            ),
            format!(
                "                  CPU per page: crawler {} ms + browser {} ms; peak RSS: crawler {} MiB, browser {} MiB",
                text(&done, "cpu_ms_per_page"),
                text(&renders, "browser_cpu_ms_per_render"),
                text(&done, "peak_rss_mb"),
                text(&renders, "browser_peak_rss_mb"),
            ),
        ];
        Ok((rate, lines))
    }
}
