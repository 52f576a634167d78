//! The rendered crawl: the site's scripted tree (`/js/tree/`, every page
//! reached only through the links its script writes) crawled with
//! `render: always`, at two render concurrencies.

use super::{bench_config, line_of};
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
    for concurrency in [2, 4] {
        let config = bench_config(work)?;
        let text = std::fs::read_to_string(&config)?;
        let config = work.join(format!("render-{concurrency}.toml"));
        std::fs::write(
            &config,
            format!("{text}\n[render]\nconcurrency = {concurrency}\n"),
        )?;
        let log = work.join(format!("render-{concurrency}.log"));
        let started = Instant::now();
        let status = tokio::process::Command::new(spinneret)
            .args([
                "run",
                "--spider",
                "link",
                "--seed",
                &seed,
                "--maxdepth",
                "100",
            ])
            .args([
                "--render",
                "always",
                "--allow-private",
                "--log-format",
                "json",
            ])
            .args(["--concurrency", &concurrency.to_string()])
            .arg("--config")
            .arg(&config)
            .arg("--plugins")
            .arg(plugins)
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
        lines.push(format!(
            "concurrency {concurrency}:    {pages} pages in {wall:.2} s = {:.1} pages/s; {} rendered, {} failed; mean render {} ms",
            pages as f64 / wall,
            text(&renders, "rendered"),
            text(&renders, "render_failed"),
            text(&renders, "render_ms_mean"),
        ));
        lines.push(format!(
            "                  CPU per page: crawler {} ms + browser {} ms; peak RSS: crawler {} MiB, browser {} MiB",
            text(&done, "cpu_ms_per_page"),
            text(&renders, "browser_cpu_ms_per_render"),
            text(&done, "peak_rss_mb"),
            text(&renders, "browser_peak_rss_mb"),
        ));
    }
    Ok(lines)
}
