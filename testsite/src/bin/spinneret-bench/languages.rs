//! Section 3: the `link` spider in Rust, Python and JavaScript: parse cost
//! per page, compile time cold and from the cache, and the same crawl.

use crate::embedded::{crawl, Crawl, Scope};
use crate::runner::{ms, only};
use anyhow::{bail, Result};
use spinneret_testsite::Site;
use std::path::Path;
use std::time::{Duration, Instant};

/// The `link` spider in each language: parse cost, compile cost and the
/// crawl of the whole site. `rust` is the embedded crawl already run.
pub(crate) async fn languages(
    site: &Site,
    spinneret: &Path,
    repo: &Path,
    work: &Path,
    concurrency: usize,
    rust: Crawl,
) -> Result<Vec<String>> {
    let mut lines = vec![format!(
        "{:<11} {:>11} {:>13} {:>20} {:>8} {:>12} {:>9}",
        "language",
        "parse µs/pg",
        "compile cold",
        "cached (restart)",
        "pages/s",
        "CPU ms/page",
        "peak RSS"
    )];
    let mut sizes = Vec::new();
    for (language, spider) in [
        ("Rust", "link"),
        ("Python", "py-link"),
        ("JavaScript", "js-link"),
    ] {
        let plugins = only(repo, work, spider)?;
        let cache = work.join(format!("cache-{spider}"));
        let [cold, cached] = compile_times(spinneret, &plugins, &cache).await?;
        // Parse cost from one slot, so no call waits for a core: the mean
        // of ~800 calls on warm instances, each page's links followed.
        let serial = crawl(
            site,
            spinneret,
            &plugins,
            work,
            spider,
            (1, Scope::Sample),
            Some(&cache),
        )
        .await?;
        let own = match spider {
            "link" => None,
            _ => Some(
                crawl(
                    site,
                    spinneret,
                    &plugins,
                    work,
                    spider,
                    (concurrency, Scope::Whole),
                    Some(&cache),
                )
                .await?,
            ),
        };
        let c = own.as_ref().unwrap_or(&rust);
        lines.push(format!(
            "{language:<11} {:>11.1} {:>10.0} ms {:>8.0} ms ({:>4.0} ms) {:>8.0} {:>12.3} {:>5} MiB",
            serial.parse_us,
            cold.0,
            cached.0,
            ms(cached.1),
            c.per_second(),
            c.cpu_ms_per_page,
            c.peak_rss_mb,
        ));
        let bytes = std::fs::metadata(plugins.join(format!("{spider}.wasm")))?.len();
        sizes.push(format!("{spider} {:.0} KB", bytes as f64 / 1024.0));
    }
    lines.push("parse: mean time of one `parse` call on one slot, with the host's link".into());
    lines.push("  extraction (100 pages per host, every page's links followed).".into());
    lines.push(
        "compile: load time the host reports; in brackets the whole `spinneret plugins`".into(),
    );
    lines.push("  process on a restart (target <= 200 ms). Crawl: the whole site as above.".into());
    lines.push(format!("components: {}", sizes.join(", ")));
    Ok(lines)
}

/// `spinneret plugins` on a directory holding one spider, into an empty
/// compile cache and then again (a restart): the load time each reports,
/// and the wall time of each whole run.
pub(crate) async fn compile_times(
    spinneret: &Path,
    plugins: &Path,
    cache: &Path,
) -> Result<[(f64, Duration); 2]> {
    let _ = std::fs::remove_dir_all(cache);
    let mut runs = Vec::new();
    for _ in 0..2 {
        let started = Instant::now();
        let out = tokio::process::Command::new(spinneret)
            .args(["plugins", "--json", "--plugins"])
            .arg(plugins)
            .env("XDG_CACHE_HOME", cache)
            .output()
            .await?;
        let wall = started.elapsed();
        if !out.status.success() {
            bail!(
                "spinneret plugins failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let row: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        runs.push((row["load_ms"].as_f64().unwrap_or(f64::NAN), wall));
    }
    Ok([runs[0], runs[1]])
}
