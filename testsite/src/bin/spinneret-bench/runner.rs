//! What every section shares: the plugins directory and the config a crawl
//! runs with, a worker's JSON log read back, and the figures printed.

use anyhow::{Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A plugins directory holding only `plugins/NAME.wasm`.
pub(crate) fn only(repo: &Path, work: &Path, name: &str) -> Result<PathBuf> {
    let dir = work.join(format!("plugins-{name}"));
    std::fs::create_dir_all(&dir)?;
    let wasm = format!("{name}.wasm");
    std::fs::copy(repo.join("plugins").join(&wasm), dir.join(&wasm))
        .with_context(|| format!("plugins/{wasm} is missing: run `just guests`"))?;
    Ok(dir)
}

/// The crawls' settings: no throttle to speak of, deep crawls allowed.
pub(crate) fn bench_config(work: &Path) -> Result<PathBuf> {
    let config = work.join("bench.toml");
    std::fs::write(
        &config,
        "[throttle]\nhits = 1000000\nwindow = 1\nmoderated = false\n\n[crawl]\nmaxdepth_limit = 1000\n",
    )?;
    Ok(config)
}

/// The `crawl done` summary line of a worker's JSON log.
pub(crate) fn summary_of(log: &Path) -> Result<serde_json::Value> {
    line_of(log, "crawl done")
}

/// The first line of a JSON log with this message.
pub(crate) fn line_of(log: &Path, message: &str) -> Result<serde_json::Value> {
    std::fs::read_to_string(log)?
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message"] == message)
        .with_context(|| format!("no `{message}` line in {}", log.display()))
}

pub(crate) fn report(title: &str, lines: &[String]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "\n== {title}")?;
    for l in lines {
        writeln!(out, "  {l}")?;
    }
    Ok(())
}

/// The middle value (the mean of the two middle ones for an even count).
pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
