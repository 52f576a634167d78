//! Workers sharing one crawl: each page crawled once whatever the number of
//! workers, the throttle holding across them, and pages waiting for a
//! spider's first compile.

use super::{cluster_of, spec, urls, Cluster};
use crate::harness::{RedisServer, Site, COMPILE_WAIT};
use anyhow::Result;
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// A worker starts crawling before its plugins finish compiling: here the
/// Python spider compiles cold (an empty cache) in the background while the
/// worker already pops its pages. Those pages wait for the first compile
/// instead of failing with "no spider loaded".
#[tokio::test(flavor = "multi_thread")]
async fn pages_of_a_spider_on_its_first_compile_wait_for_it() -> Result<()> {
    let redis = RedisServer::start().await?;
    let site = Site::start(spec(120, 5)).await?;
    let cache = tempfile::tempdir()?;
    let mut cluster = Cluster::with_plugins(
        redis.url(),
        &[("link", "link"), ("py-link", "py-link")],
        &format!("[plugins]\ncache_dir = {:?}\n", cache.path()),
    )?;
    cluster.start_worker()?;
    cluster
        .submit(&[
            "--spider",
            "py-link",
            "--seed",
            &site.seed_url(),
            "--maxdepth",
            "1",
        ])
        .await?;
    let expected = site.expected(0, Some(1));
    let results = cluster.until_all_of(&expected, COMPILE_WAIT).await?;
    let failed: Vec<_> = results
        .iter()
        .filter(|r| r.get("error").is_some())
        .collect();
    assert!(failed.is_empty(), "pages failed: {failed:?}");
    let log = std::fs::read_to_string(cluster.scratch.path("worker-0.log"))?;
    assert!(
        log.lines().any(|l| l.contains("plugin loaded")
            && l.contains("py-link")
            && l.contains("compiled")),
        "py-link should have compiled in the background:\n{log}"
    );
    Ok(())
}

async fn workers_share_a_crawl(n: usize) -> Result<()> {
    // ~45 pages/s in all: slow enough that every worker gets some.
    let (_redis, site, cluster) =
        cluster_of(spec(300, 21), n, "[throttle]\nhits = 15\nwindow = 1\n").await?;
    let expected = site.expected(0, Some(2));
    cluster
        .submit(&["--seed", &site.seed_url(), "--maxdepth", "2"])
        .await?;
    let results = cluster
        .until_all_of(&expected, Duration::from_secs(90))
        .await?;
    let got = urls(&results);
    let unique: BTreeSet<String> = got.iter().cloned().collect();
    assert_eq!(unique, expected);
    assert_eq!(got.len(), unique.len(), "no duplicates without failures");
    let per_worker = cluster.per_worker();
    assert!(
        per_worker.iter().all(|n| *n > 0),
        "every worker should take part: {per_worker:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn two_workers_share_one_crawl() -> Result<()> {
    workers_share_a_crawl(2).await
}

#[tokio::test(flavor = "multi_thread")]
async fn three_workers_share_one_crawl() -> Result<()> {
    workers_share_a_crawl(3).await
}

#[tokio::test(flavor = "multi_thread")]
async fn throttle_holds_across_workers() -> Result<()> {
    let (_redis, site, cluster) = cluster_of(
        spec(120, 23),
        3,
        "[throttle]\nhits = 2\nwindow = 2\nmoderated = false\n",
    )
    .await?;
    let expected = site.expected(0, Some(1));
    cluster
        .submit(&["--seed", &site.seed_url(), "--maxdepth", "1"])
        .await?;
    cluster
        .until_all_of(&expected, Duration::from_secs(120))
        .await?;
    // robots.txt is fetched outside the throttle (once per origin).
    let mut by_host: HashMap<usize, Vec<(Instant, String)>> = HashMap::new();
    for hit in site.hits().into_iter().filter(|h| h.path != "/robots.txt") {
        by_host
            .entry(hit.host)
            .or_default()
            .push((hit.at, hit.path));
    }
    // The throttle decides in Redis; arrival at the site adds scheduling
    // jitter (more on a loaded 2-core CI machine). A broken throttle shows
    // bursts within milliseconds, so 250 ms of slack still catches it.
    let span = Duration::from_millis(2000 - 250);
    for (host, mut hits) in by_host {
        hits.sort();
        assert!(
            hits.len() >= 3,
            "host {host} should have been fetched several times"
        );
        for w in hits.windows(3) {
            let paths: Vec<&str> = w.iter().map(|h| h.1.as_str()).collect();
            assert!(
                w[2].0 - w[0].0 >= span,
                "host {host}: 3 fetches within {:?}: {paths:?}",
                w[2].0 - w[0].0
            );
        }
    }
    Ok(())
}
