//! The peer: spider-rs (crate `spider`, built from `bench/peer-spider` by
//! `just bench`) crawls the same site at the same concurrency right after
//! Spinneret's embedded crawl, and the two are compared as ratios.

use super::Crawl;
use anyhow::{bail, Result};
use spinneret_testsite::Site;
use std::time::Instant;

pub async fn compare(site: &Site, concurrency: usize, ours: &Crawl) -> Result<Vec<String>> {
    let bin = std::env::current_exe()?.with_file_name("peer-spider");
    if !bin.exists() {
        return Ok(vec![format!(
            "skipped: {} is not built (`just bench` builds it)",
            bin.display()
        )]);
    }
    // spider-rs crawls one host per `Website`: one per host, each with its
    // share of the concurrency, all at once.
    let hosts = site.spec.hosts;
    let per_host = (concurrency / hosts).max(1);
    let roots: Vec<String> = (0..hosts).map(|k| site.url(k)).collect();
    let started = Instant::now();
    let out = tokio::process::Command::new(&bin)
        .args([
            "--concurrency",
            &per_host.to_string(),
            "--output",
            "/dev/null",
        ])
        .args(&roots)
        .output()
        .await?;
    let wall = started.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "peer-spider failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let pages = summary["pages"].as_u64().unwrap_or(0);
    let cpu = summary["cpu_ms_per_page"].as_f64().unwrap_or(f64::NAN);
    let rss = summary["peak_rss_mb"].as_u64().unwrap_or(0);
    let rate = pages as f64 / wall;
    let lagged = summary["not_written"].as_u64().unwrap_or(0);
    Ok(vec![
        format!("spider-rs:        {pages} pages in {wall:.2} s ({per_host} per host x {hosts} hosts, robots.txt obeyed, bodies written)"),
        format!("pages/s:          {rate:.0} ({lagged} pages not written: its writer fell behind)"),
        format!("CPU per page:     {cpu:.3} ms"),
        format!("peak RSS:         {rss} MiB"),
        format!(
            "Spinneret / peer: {:.2}x pages/s (target >= 1.0), {:.2}x CPU per page (target <= 1.0), {:.2}x peak RSS",
            ours.per_second() / rate,
            ours.cpu_ms_per_page / cpu,
            ours.peak_rss_mb as f64 / rss.max(1) as f64
        ),
    ])
}
