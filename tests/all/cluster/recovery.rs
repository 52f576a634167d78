//! Failures the cluster rides out: a killed worker's leases reclaimed, Redis
//! restarted mid-crawl, and a live worker renewing the lease of a request
//! busy past it.

use super::{cluster_of, spec, urls, Cluster};
use crate::harness::{eventually, Quirks, RedisServer, Site, SiteSpec};
use anyhow::Result;
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn killed_worker_loses_nothing() -> Result<()> {
    let redis = RedisServer::start().await?;
    // 1 s per page: each worker holds about a dozen leases at any moment,
    // so the victim dies holding some.
    let site = Site::start_slow(
        SiteSpec {
            pages: 300,
            hosts: 3,
            seed: 22,
        },
        Duration::from_millis(1000),
    )
    .await?;
    let expected = site.expected(0, Some(2));
    let mut cluster = Cluster::new(
        &redis,
        "[throttle]\nhits = 12\nwindow = 1\n[crawl]\nlease_ttl = 3\ndownload_timeout = 2\n",
    )?;
    // The victim works alone first, so it certainly holds leases (pages
    // take 1 s) when the survivors arrive and it is killed.
    cluster.start_worker()?;
    cluster
        .submit(&["--seed", &site.seed_url(), "--maxdepth", "2"])
        .await?;
    eventually(Duration::from_secs(30), "the victim to be busy", || {
        (cluster.per_worker()[0] >= 10).then_some(())
    })
    .await?;
    cluster.start_worker()?;
    cluster.start_worker()?;
    cluster.workers[0].0.start_kill()?; // SIGKILL: no chance to hand anything back
    cluster.workers[0].0.wait().await?;
    let results = cluster
        .until_all_of(&expected, Duration::from_secs(120))
        .await?;
    let unique: BTreeSet<String> = urls(&results).into_iter().collect();
    assert_eq!(
        unique, expected,
        "the killed worker's leased requests were crawled by the others"
    );
    // The victim may have written results it never acked: those leases
    // expire after lease_ttl and must be reclaimed by a survivor.
    let survivor_logs = || -> String {
        (1..3)
            .map(|i| {
                std::fs::read_to_string(cluster.scratch.path(&format!("worker-{i}.log")))
                    .unwrap_or_default()
            })
            .collect()
    };
    let reclaimed = eventually(
        Duration::from_secs(20),
        "a survivor to reclaim the victim's leases",
        || {
            survivor_logs()
                .contains("expired leases put back")
                .then_some(())
        },
    )
    .await;
    if let Err(e) = reclaimed {
        let notable: Vec<String> = survivor_logs()
            .lines()
            .filter(|l| !l.contains(" INFO "))
            .take(20)
            .map(str::to_string)
            .collect();
        anyhow::bail!("{e}; survivors logged: {notable:#?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_restart_mid_crawl_completes() -> Result<()> {
    let (mut redis, site, cluster) = cluster_of(
        spec(300, 24),
        2,
        "[throttle]\nhits = 12\nwindow = 1\n[crawl]\nlease_ttl = 3\ndownload_timeout = 2\n",
    )
    .await?;
    let expected = site.expected(0, Some(2));
    cluster
        .submit(&["--seed", &site.seed_url(), "--maxdepth", "2"])
        .await?;
    eventually(Duration::from_secs(30), "the crawl to be under way", || {
        (cluster.results().len() >= 20).then_some(())
    })
    .await?;
    redis.restart().await?;
    let results = cluster
        .until_all_of(&expected, Duration::from_secs(120))
        .await?;
    let unique: BTreeSet<String> = urls(&results).into_iter().collect();
    assert_eq!(unique, expected);
    Ok(())
}

/// A live worker renews the leases it holds: a request whose robots.txt
/// takes 5 s (two slow hops) with `lease_ttl` at 3 s is not taken over by
/// the other worker, so the page is fetched exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_busy_past_its_lease_is_fetched_once() -> Result<()> {
    let redis = RedisServer::start().await?;
    let site = Site::start_with(
        spec(30, 24),
        Quirks {
            robots: Duration::from_millis(2500),
            ..Quirks::default()
        },
    )
    .await?;
    let mut cluster = Cluster::new(
        &redis,
        "[crawl]\nlease_ttl = 3\ndownload_timeout = 3\nobey_robots = true\n",
    )?;
    cluster.start_worker()?;
    cluster.start_worker()?;
    let seed = site.seed_url();
    let request = json!({"url": seed, "appid": "lease", "crawlid": "slow-robots", "maxdepth": 0});
    cluster.submit(&["--request", &request.to_string()]).await?;
    cluster.until_done("lease", "slow-robots").await?;
    let path = url::Url::parse(&seed)?.path().to_string();
    let fetches = site.hits().iter().filter(|h| h.path == path).count();
    let robots = site
        .hits()
        .iter()
        .filter(|h| h.path == "/robots.txt")
        .count();
    assert!(robots >= 2, "robots.txt took its two slow hops ({robots})");
    assert_eq!(fetches, 1, "the page was fetched {fetches} times");
    assert_eq!(cluster.results().len(), 1);
    Ok(())
}
