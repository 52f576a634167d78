//! The peer: spider-rs (crate `spider`, built from `bench/peer-spider` by
//! `just bench`) crawls the same site at the same concurrency right after
//! Spinneret's embedded crawl, and the two are compared as ratios.

use crate::embedded::Crawl;
use anyhow::{bail, Result};
use spinneret_testsite::Site;
use std::time::Instant;

/// One spider-rs crawl of the whole site.
pub struct Run {
    pages: u64,
    wall: f64,
    cpu_ms_per_page: f64,
    peak_rss_mb: u64,
    /// Pages its writer dropped because it fell behind.
    lagged: u64,
}

impl Run {
    fn per_second(&self) -> f64 {
        self.pages as f64 / self.wall
    }
}

/// spider-rs on the site, or `None` when it is not built.
pub async fn run(site: &Site, concurrency: usize) -> Result<Option<Run>> {
    let bin = std::env::current_exe()?.with_file_name("peer-spider");
    if !bin.exists() {
        return Ok(None);
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
    Ok(Some(Run {
        pages: summary["pages"].as_u64().unwrap_or(0),
        wall,
        cpu_ms_per_page: summary["cpu_ms_per_page"].as_f64().unwrap_or(f64::NAN),
        peak_rss_mb: summary["peak_rss_mb"].as_u64().unwrap_or(0),
        lagged: summary["not_written"].as_u64().unwrap_or(0),
    }))
}

/// The ratios of rounds that each ran Spinneret's crawl and then the
/// peer's: one figure each, and their medians (the machine's speed drifts
/// by more than the difference between the two).
pub fn compare(site: &Site, concurrency: usize, rounds: &[(Crawl, Run)]) -> Vec<String> {
    let Some((_, last)) = rounds.last() else {
        return vec!["skipped: peer-spider is not built (`just bench` builds it)".into()];
    };
    let hosts = site.spec.hosts;
    let per_host = (concurrency / hosts).max(1);
    let ratios: Vec<(f64, f64, f64)> = rounds
        .iter()
        .map(|(ours, peer)| {
            (
                ours.per_second() / peer.per_second(),
                ours.cpu_ms_per_page / peer.cpu_ms_per_page,
                ours.peak_rss_mb as f64 / peer.peak_rss_mb.max(1) as f64,
            )
        })
        .collect();
    let each = |f: fn(&(f64, f64, f64)) -> f64| {
        ratios
            .iter()
            .map(|r| format!("{:.2}", f(r)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let median =
        |f: fn(&(f64, f64, f64)) -> f64| crate::runner::median(ratios.iter().map(f).collect());
    vec![
        format!(
            "spider-rs:        {} pages in {:.2} s ({per_host} per host x {hosts} hosts, robots.txt obeyed, bodies written; last round)",
            last.pages, last.wall
        ),
        format!(
            "pages/s:          {:.0} ({} pages not written: its writer fell behind)",
            last.per_second(),
            last.lagged
        ),
        format!("CPU per page:     {:.3} ms", last.cpu_ms_per_page),
        format!("peak RSS:         {} MiB", last.peak_rss_mb),
        format!(
            "rounds:           {} (each: Spinneret's crawl, then the peer's); pages/s ratios {}, CPU ratios {}",
            rounds.len(),
            each(|r| r.0),
            each(|r| r.1)
        ),
        format!(
            "Spinneret / peer: {:.2}x pages/s (target >= 1.0), {:.2}x CPU per page (target <= 1.0), {:.2}x peak RSS (medians of the rounds)",
            median(|r| r.0),
            median(|r| r.1),
            median(|r| r.2)
        ),
    ]
}
