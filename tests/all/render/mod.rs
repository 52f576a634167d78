//! Rendering (contract §3 "Rendering"): pages built by their scripts are
//! loaded in headless chromium, every request they make answered by our
//! fetcher under the address policy, bounded in time, and crash-safe.
//! Real chromium, real worker processes, the local site's `/js/` pages.

mod bounds;
mod browser;
mod crawls;
mod procs;
mod walls;

use crate::harness::{Run, Scratch, Site, SiteSpec};
use anyhow::{Context, Result};
use serde_json::Value;

/// The scripted pages are served from host 1 (127.0.0.2), so a test can
/// allow that address alone and keep 127.0.0.1 private.
const HOST: usize = 1;

async fn site() -> Result<Site> {
    Ok(Site::start(SiteSpec {
        pages: 6,
        hosts: 2,
        seed: 41,
    })
    .await?)
}

/// `spinneret run` of the link spider from `seeds` with `--render mode`.
async fn run(scratch: &Scratch, seeds: &[String], depth: u32, mode: &str) -> Result<Run> {
    let depth = depth.to_string();
    let mut args = vec!["--spider", "link", "--maxdepth", &depth, "--render", mode];
    for s in seeds {
        args.extend(["--seed", s.as_str()]);
    }
    scratch.run(&args).await?.ok()
}

fn result<'a>(run: &'a Run, url: &str) -> Result<&'a Value> {
    run.results
        .iter()
        .find(|r| r["url"] == url)
        .with_context(|| format!("no result for {url}: {:?}", run.urls()))
}

fn body(r: &Value) -> &str {
    r["body"].as_str().unwrap_or_default()
}
