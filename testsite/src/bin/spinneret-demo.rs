//! `just demo`: serve the local site, crawl it with the `link` spider at
//! depth 2 through the real `spinneret` binary, and summarize.

use anyhow::{bail, Context, Result};
use spinneret_testsite::{Site, SiteSpec};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

#[tokio::main]
async fn main() -> Result<()> {
    let site = Site::start(SiteSpec {
        pages: 300,
        hosts: 3,
        seed: 7,
    })
    .await?;
    let exe = std::env::current_exe()?;
    let spinneret = exe.with_file_name("spinneret");
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = tempfile_dir()?;
    let config = dir.join("demo.toml");
    // Polite but quick: 50 fetches/s per domain instead of the default 10/min.
    std::fs::write(
        &config,
        "[throttle]\nhits = 50\nwindow = 1\nmoderated = true\n",
    )?;
    let out = dir.join("results.jsonl");

    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "site: {} pages on {} loopback hosts, seed {}",
        site.spec.pages,
        site.spec.hosts,
        site.seed_url()
    )?;
    writeln!(
        stdout,
        "crawl: link spider, depth 2, throttle 50 fetches/s per domain (moderated)\n"
    )?;
    drop(stdout);
    let secs = crawl(&spinneret, &repo, &site, &config, &out).await?;
    let results = read_results(&out)?;
    let got: std::collections::BTreeSet<String> = results
        .iter()
        .filter_map(|r| r["url"].as_str().map(str::to_string))
        .collect();
    let expected = site.expected(0, Some(2));
    summarize(&results, secs, &out, got == expected, expected.len())?;
    if got != expected {
        bail!("the crawl did not return the expected URL set");
    }
    Ok(())
}

/// `spinneret run` of the `link` spider from the site's seed at depth 2,
/// writing to `out`; its wall time in seconds.
async fn crawl(
    spinneret: &Path,
    repo: &Path,
    site: &Site,
    config: &Path,
    out: &Path,
) -> Result<f64> {
    let started = Instant::now();
    let status = tokio::process::Command::new(spinneret)
        .args([
            "run",
            "--spider",
            "link",
            "--maxdepth",
            "2",
            "--allow-private",
            "--seed",
        ])
        .arg(site.seed_url())
        .arg("--config")
        .arg(config)
        .arg("--plugins")
        .arg(repo.join("plugins"))
        .arg("--output")
        .arg(out)
        .status()
        .await
        .with_context(|| format!("running {}", spinneret.display()))?;
    let secs = started.elapsed().as_secs_f64();
    if !status.success() {
        bail!("spinneret failed: {status}");
    }
    Ok(secs)
}

/// The crawl's results, one JSON object a line.
fn read_results(out: &Path) -> Result<Vec<serde_json::Value>> {
    let text = std::fs::read_to_string(out)?;
    Ok(text
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?)
}

/// The figures: pages, statuses, pages/s, and whether the URLs crawled are
/// the `expected` ones (`as_expected`).
fn summarize(
    results: &[serde_json::Value],
    secs: f64,
    out: &Path,
    as_expected: bool,
    expected: usize,
) -> Result<()> {
    let mut statuses: BTreeMap<i64, usize> = BTreeMap::new();
    for r in results {
        *statuses
            .entry(r["status_code"].as_i64().unwrap_or(0))
            .or_default() += 1;
    }
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "\npages:     {}", results.len())?;
    let s: Vec<String> = statuses.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    writeln!(stdout, "statuses:  {}", s.join(", "))?;
    writeln!(
        stdout,
        "pages/s:   {:.0} (throttled)",
        results.len() as f64 / secs
    )?;
    writeln!(
        stdout,
        "expected:  {} URLs, {}",
        expected,
        if as_expected {
            "all crawled, none extra"
        } else {
            "MISMATCH"
        }
    )?;
    writeln!(stdout, "results:   {}", out.display())?;
    Ok(())
}

fn tempfile_dir() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("spinneret-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
