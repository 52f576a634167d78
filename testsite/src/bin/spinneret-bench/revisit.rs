//! Section 10: a recurring crawl's second run beside its first. The whole
//! site served with ETags (as nginx serves static files), crawled by one
//! embedded process on a schedule of two runs with `revisit`: the second
//! asks for every page with its ETag and each answers 304. Pages/s and
//! bytes fetched per run come from the runs' `crawl.completed` events.

use crate::runner::{bench_config, median};
use anyhow::{bail, Result};
use spinneret_testsite::{Quirks, Site};
use std::path::Path;

/// One run's figures from its `crawl.completed` event.
struct RunFigures {
    pages: f64,
    seconds: f64,
    bytes: f64,
}

pub(crate) async fn section(
    site: &Site,
    spinneret: &Path,
    plugins: &Path,
    work: &Path,
    (concurrency, rounds): (usize, usize),
) -> Result<Vec<String>> {
    let served = Site::start_with(
        site.spec,
        Quirks {
            etags: true,
            ..Quirks::default()
        },
    )
    .await?;
    let (mut speed, mut first_bytes, mut second_bytes) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let [one, two] = two_runs(&served, spinneret, plugins, work, concurrency).await?;
        speed.push((two.pages / two.seconds) / (one.pages / one.seconds));
        first_bytes.push(one.bytes / one.pages.max(1.0));
        second_bytes.push(two.bytes / two.pages.max(1.0));
    }
    Ok(vec![
        format!(
            "embedded, run 2 (revisit, every page 304) beside run 1: {:.2}x pages/s (median of {rounds} rounds)",
            median(speed)
        ),
        format!(
            "body bytes fetched per page: run 1 {:.1} KiB, run 2 {:.1} KiB",
            median(first_bytes) / 1024.0,
            median(second_bytes) / 1024.0
        ),
        "page state kept per URL: 25 bytes + URL + ETag (docs/recurring.md); Redis CPU per page: runs are not fired on a cluster yet".into(),
    ])
}

async fn two_runs(
    site: &Site,
    spinneret: &Path,
    plugins: &Path,
    work: &Path,
    concurrency: usize,
) -> Result<[RunFigures; 2]> {
    let events = work.join("revisit-events.jsonl");
    let err = work.join("revisit.log");
    let request = serde_json::json!({
        "url": site.seed_url(), "appid": "bench", "crawlid": "revisit", "maxdepth": 1000,
        "schedule": {"every": 1, "max_runs": 2, "overlap": "queue"},
        "revisit": {"emit": "changed"},
    });
    let status = tokio::process::Command::new(spinneret)
        .args([
            "run",
            "--spider",
            "link",
            "--allow-private",
            "--log-format",
            "json",
        ])
        .args(["--concurrency", &concurrency.to_string()])
        .arg("--request")
        .arg(request.to_string())
        .arg("--config")
        .arg(bench_config(work)?)
        .arg("--plugins")
        .arg(plugins)
        .arg("--events")
        .arg(&events)
        .args(["--output", "/dev/null"])
        .stderr(std::fs::File::create(&err)?)
        .status()
        .await?;
    if !status.success() {
        bail!(
            "revisit crawl failed: {}",
            std::fs::read_to_string(&err).unwrap_or_default()
        );
    }
    let text = std::fs::read_to_string(&events)?;
    let runs: Vec<RunFigures> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "crawl.completed")
        .map(|e| {
            let s = &e["stats"];
            let n = |k: &str| s[k].as_f64().unwrap_or(0.0);
            RunFigures {
                pages: n("pages"),
                seconds: n("duration_ms") / 1000.0,
                bytes: n("bytes"),
            }
        })
        .collect();
    match <[RunFigures; 2]>::try_from(runs) {
        Ok(two) => Ok(two),
        Err(runs) => bail!("expected two completed runs, got {}", runs.len()),
    }
}
