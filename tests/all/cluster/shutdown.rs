//! A worker told to stop: SIGTERM hands its requests back at once within
//! `process.shutdown_grace`; a second signal exits without waiting.

use super::{spec, urls, Cluster};
use crate::harness::{eventually, signal, RedisServer, Site};
use anyhow::Result;
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// SIGTERM to a worker mid-crawl: it takes no new work, gives back the
/// requests it holds once most of its grace is gone, and exits 0 within
/// `process.shutdown_grace`. Another worker crawls those requests at once,
/// not after `lease_ttl` (two minutes here), and the stopped worker's
/// output holds only whole results.
#[tokio::test(flavor = "multi_thread")]
async fn a_terminated_worker_hands_back_its_requests_at_once() -> Result<()> {
    let redis = RedisServer::start().await?;
    // Pages take 2.5 s: longer than the 1.5 s the stop gives them to end.
    let site = Site::start_slow(spec(120, 23), Duration::from_millis(2500)).await?;
    let expected = site.expected(0, Some(1));
    let mut cluster = Cluster::new(
        &redis,
        "[crawl]\nlease_ttl = 120\n[process]\nshutdown_grace = 3\n",
    )?;
    cluster.start_worker()?;
    cluster
        .submit(&["--seed", &site.seed_url(), "--maxdepth", "1"])
        .await?;
    // Once the seed is written its children are leased, each in flight
    // for 2.5 s.
    eventually(Duration::from_secs(30), "the seed's result", || {
        (cluster.per_worker()[0] >= 1).then_some(())
    })
    .await?;
    cluster.start_worker()?;
    let signalled = Instant::now();
    signal(&cluster.workers[0].0, "TERM")?;
    let status =
        tokio::time::timeout(Duration::from_secs(10), cluster.workers[0].0.wait()).await??;
    let took = signalled.elapsed();
    let log = std::fs::read_to_string(cluster.scratch.path("worker-0.log"))?;
    assert!(status.success(), "exit {status:?}:\n{log}");
    assert!(took < Duration::from_secs(3), "took {took:?}:\n{log}");
    assert!(
        log.contains("giving requests in flight back"),
        "the stop released leases:\n{log}"
    );
    let results = cluster
        .until_all_of(&expected, Duration::from_secs(60))
        .await?;
    let unique: BTreeSet<String> = urls(&results).into_iter().collect();
    assert_eq!(unique, expected);
    // Every line the stopped worker wrote is a whole result.
    let text = std::fs::read_to_string(&cluster.workers[0].1)?;
    for line in text.lines() {
        serde_json::from_str::<Value>(line).map_err(|e| {
            anyhow::anyhow!("torn line in the stopped worker's output: {e}: {line}")
        })?;
    }
    Ok(())
}

/// A second signal does not wait for the grace: the worker exits at once
/// (130), leaving its leases to expire as a killed worker's would.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_signal_exits_at_once() -> Result<()> {
    let redis = RedisServer::start().await?;
    let site = Site::start_slow(spec(30, 26), Duration::from_secs(20)).await?;
    let mut cluster = Cluster::new(
        &redis,
        "[crawl]\nlease_ttl = 60\ndownload_timeout = 30\n[process]\nshutdown_grace = 30\n",
    )?;
    cluster.start_worker()?;
    cluster
        .submit(&["--seed", &site.seed_url(), "--maxdepth", "0"])
        .await?;
    let log = cluster.scratch.path("worker-0.log");
    eventually(Duration::from_secs(30), "the seed in flight", || {
        site.hits()
            .iter()
            .any(|h| h.path.starts_with("/p/"))
            .then_some(())
    })
    .await?;
    signal(&cluster.workers[0].0, "TERM")?;
    eventually(Duration::from_secs(10), "the first signal taken", || {
        std::fs::read_to_string(&log)
            .ok()?
            .contains("stopping: no new work")
            .then_some(())
    })
    .await?;
    let signalled = Instant::now();
    signal(&cluster.workers[0].0, "TERM")?;
    let status =
        tokio::time::timeout(Duration::from_secs(10), cluster.workers[0].0.wait()).await??;
    assert_eq!(status.code(), Some(130));
    assert!(signalled.elapsed() < Duration::from_secs(5));
    Ok(())
}
