//! Section 10: a recurring crawl's second run beside its first. The whole
//! site served with ETags (as nginx serves static files), crawled on a
//! schedule of two runs with `revisit`: the second asks for every page
//! with its ETag and each answers 304. Once by one embedded process, once
//! by one worker on Redis, whose CPU per page is read from `INFO cpu` at
//! each run's end, and the page state it keeps from `MEMORY USAGE`.
//! Pages/s and bytes fetched per run come from the runs'
//! `crawl.completed` events.

use crate::redis::Redis;
use crate::runner::{bench_config, median};
use anyhow::{bail, Result};
use spinneret_testsite::{Quirks, Site};
use std::path::Path;
use std::time::Duration;

/// One run's figures from its `crawl.completed` event, and on Redis the
/// server's CPU seconds at its end.
struct RunFigures {
    pages: f64,
    seconds: f64,
    bytes: f64,
    cpu: f64,
}

/// Where the runs go: the embedded store, or a Redis server.
#[derive(Clone, Copy)]
enum Store<'a> {
    Embedded,
    Redis(&'a Redis),
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
    let crawl = Crawl {
        site: &served,
        spinneret,
        plugins,
        work,
        concurrency,
    };
    let mut lines = Vec::new();
    let (mut speed, mut first_bytes, mut second_bytes) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let [one, two] = crawl.two_runs(Store::Embedded).await?.0;
        speed.push((two.pages / two.seconds) / (one.pages / one.seconds));
        first_bytes.push(one.bytes / one.pages.max(1.0));
        second_bytes.push(two.bytes / two.pages.max(1.0));
    }
    lines.push(format!(
        "embedded, run 2 (revisit, every page 304) beside run 1: {:.2}x pages/s (median of {rounds} rounds)",
        median(speed)
    ));
    lines.push(format!(
        "body bytes fetched per page: run 1 {:.1} KiB, run 2 {:.1} KiB",
        median(first_bytes) / 1024.0,
        median(second_bytes) / 1024.0
    ));
    let Some(redis) = Redis::start(work)? else {
        lines.push("on Redis: skipped (no redis-server; scripts/setup --test)".into());
        return Ok(lines);
    };
    let (mut speed, mut cpu_one, mut cpu_two, mut state) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        redis.flush()?;
        let ([one, two], kept) = crawl.two_runs(Store::Redis(&redis)).await?;
        speed.push((two.pages / two.seconds) / (one.pages / one.seconds));
        cpu_one.push(one.cpu / one.pages.max(1.0));
        cpu_two.push(two.cpu / two.pages.max(1.0));
        state.push(kept);
    }
    lines.push(format!(
        "one worker on Redis, run 2 beside run 1: {:.2}x pages/s; Redis CPU per page: run 1 {:.3} ms, run 2 {:.3} ms ({:.2}x)",
        median(speed),
        median(cpu_one.clone()) * 1000.0,
        median(cpu_two.clone()) * 1000.0,
        median(cpu_two) / median(cpu_one).max(f64::MIN_POSITIVE),
    ));
    lines.push(format!(
        "page state kept per URL on Redis (MEMORY USAGE of the crawl's pg hashes / pages): {:.0} bytes",
        median(state)
    ));
    Ok(lines)
}

/// The crawl each round makes.
struct Crawl<'a> {
    site: &'a Site,
    spinneret: &'a Path,
    plugins: &'a Path,
    work: &'a Path,
    concurrency: usize,
}

impl Crawl<'_> {
    /// Two runs; on Redis also the bytes of page state kept per URL.
    async fn two_runs(&self, store: Store<'_>) -> Result<([RunFigures; 2], f64)> {
        let events = self.work.join("revisit-events.jsonl");
        let err = self.work.join("revisit.log");
        let _ = std::fs::remove_file(&events);
        let request = serde_json::json!({
            "url": self.site.seed_url(), "appid": "bench", "crawlid": "revisit", "maxdepth": 1000,
            "schedule": {"every": 1, "max_runs": 2, "overlap": "queue"},
            "revisit": {"emit": "changed"},
        });
        let mut command = tokio::process::Command::new(self.spinneret);
        command
            .args([
                "run",
                "--spider",
                "link",
                "--allow-private",
                "--log-format",
                "json",
            ])
            .args(["--concurrency", &self.concurrency.to_string()])
            .arg("--request")
            .arg(request.to_string())
            .arg("--config")
            .arg(bench_config(self.work)?)
            .arg("--plugins")
            .arg(self.plugins)
            .arg("--events")
            .arg(&events)
            .args(["--output", "/dev/null"])
            .stderr(std::fs::File::create(&err)?);
        if let Store::Redis(r) = store {
            command.args(["--redis", &r.url()]);
        }
        let cpu_start = match store {
            Store::Redis(r) => r.cpu_seconds()?,
            Store::Embedded => 0.0,
        };
        let mut child = command.spawn()?;
        // On Redis: the server's CPU and the state kept when run 1 ends.
        let (mut cpu_at_one, mut kept) = (None, 0.0);
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if let (Store::Redis(r), None) = (store, cpu_at_one) {
                if completed(&events).len() == 1 {
                    cpu_at_one = Some(r.cpu_seconds()?);
                    kept = state_bytes(r)?;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        if !status.success() {
            bail!(
                "revisit crawl failed: {}",
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        let mut runs = completed(&events);
        if let Store::Redis(r) = store {
            let (at_one, at_end) = (cpu_at_one.unwrap_or(0.0), r.cpu_seconds()?);
            if let [one, two] = &mut runs[..] {
                one.cpu = at_one - cpu_start;
                two.cpu = at_end - at_one;
                kept /= one.pages.max(1.0);
            }
        }
        match <[RunFigures; 2]>::try_from(runs) {
            Ok(two) => Ok((two, kept)),
            Err(runs) => bail!("expected two completed runs, got {}", runs.len()),
        }
    }
}

/// The runs completed so far, from the events file.
fn completed(events: &Path) -> Vec<RunFigures> {
    std::fs::read_to_string(events)
        .unwrap_or_default()
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
                cpu: 0.0,
            }
        })
        .collect()
}

/// Bytes Redis spends on every revisited crawl's kept pages (`pg:` keys).
fn state_bytes(redis: &Redis) -> Result<f64> {
    let mut total = 0.0;
    for key in redis.query(&["--scan", "--pattern", "*:pg:*"])?.lines() {
        let used = redis.query(&["MEMORY", "USAGE", key, "SAMPLES", "0"])?;
        total += used.trim().parse::<f64>().unwrap_or(0.0);
    }
    Ok(total)
}
