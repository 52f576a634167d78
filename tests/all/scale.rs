//! What coordination costs Redis (issue 15).

use crate::cluster::{request, spec, Cluster};
use crate::harness::{eventually, RedisServer, Site};
use crate::redis_cluster::RedisCluster;
use anyhow::Result;
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;

/// Calls of every command Redis has run, those inside scripts included,
/// from `INFO commandstats`; the `INFO` calls themselves left out.
fn commands(con: &mut redis::Connection) -> Result<u64> {
    let text: String = redis::cmd("INFO").arg("commandstats").query(con)?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with("cmdstat_") && !l.starts_with("cmdstat_info:"))
        .filter_map(|l| {
            l.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum())
}

/// Idle workers wait on a pushed wake-up and pace their upkeep: three
/// `--serve` workers with nothing queued send at most 30 commands in 10 s
/// between them (they sent ~58 each per second when they polled).
#[tokio::test(flavor = "multi_thread")]
async fn idle_workers_cost_redis_at_most_one_command_a_second() -> Result<()> {
    let redis = RedisServer::start().await?;
    let mut cluster = Cluster::new(&redis, "")?;
    for _ in 0..3 {
        cluster.start_worker()?;
    }
    let mut con = redis.connection()?;
    let hb = format!("{{{}}}:hb", cluster.ns);
    // All three have sent their first heartbeat.
    eventually(Duration::from_secs(60), "three heartbeats", || {
        let n: u64 = redis::cmd("ZCARD").arg(&hb).query(&mut con).ok()?;
        (n == 3).then_some(())
    })
    .await?;
    let before = commands(&mut con)?;
    // The measurement window itself (no event to wait for): as long as a
    // heartbeat period, so every worker beats at least once within it.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let sent = commands(&mut con)? - before;
    let logs: Vec<String> = (0..3)
        .map(|i| {
            std::fs::read_to_string(cluster.scratch.path(&format!("worker-{i}.log")))
                .unwrap_or_default()
        })
        .collect();
    assert!(
        sent <= 30,
        "3 idle workers sent {sent} Redis commands in 10 s:\n{}",
        logs.join("\n---\n")
    );
    // The workers were alive and beating all along.
    let n: u64 = redis::cmd("ZCARD").arg(&hb).query(&mut con)?;
    assert_eq!(n, 3);
    assert!(sent >= 3, "no heartbeat in 10 s ({sent} commands)");
    Ok(())
}

/// Three workers crawl through a Redis Cluster (3 masters, 3 replicas),
/// `--redis` naming all six nodes: exactly the expected pages, and the
/// crawl's info says it is done.
#[tokio::test(flavor = "multi_thread")]
async fn three_workers_crawl_through_a_redis_cluster() -> Result<()> {
    let redis = RedisCluster::start().await?;
    let site = Site::start(spec(240, 43)).await?;
    let expected = site.expected(0, None);
    let mut cluster = Cluster::on(redis.url(), "[crawl]\nmaxdepth_limit = 100\n")?;
    for _ in 0..3 {
        cluster.start_worker()?;
    }
    cluster
        .submit(&["--request", &request(&site, "sharded", 100, Value::Null)])
        .await?;
    let results = cluster
        .until_all_of(&expected, Duration::from_secs(60))
        .await?;
    let urls: Vec<&str> = results.iter().filter_map(|r| r["url"].as_str()).collect();
    let unique: BTreeSet<&str> = urls.iter().copied().collect();
    assert_eq!(unique.len(), urls.len(), "a page was crawled twice");
    assert_eq!(unique.len(), expected.len());
    let info = cluster.until_done("ops", "sharded").await?;
    assert_eq!(info["in_flight"], 0, "{info}");
    assert!(
        cluster.per_worker().iter().all(|n| *n > 0),
        "a worker got nothing"
    );
    Ok(())
}

/// Three workers crawl through a Redis Cluster (3 masters, 3 replicas),
/// and the master holding the crawl's slot is killed mid-crawl: its
/// replica takes over, and the workers finish the crawl with exactly the
/// expected pages. What the dead master had not yet passed to its replica
/// comes back as leases that run out and are crawled again: duplicates,
/// never gaps.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "issue 15: after a failover the workers sometimes stall (2 runs in 9); see ARCHITECTURE.md, Redis Cluster"]
async fn a_crawl_on_redis_cluster_survives_a_master_failover() -> Result<()> {
    let mut redis = RedisCluster::start().await?;
    let site = Site::start_slow(spec(240, 41), Duration::from_millis(100)).await?;
    let expected = site.expected(0, None);
    let mut cluster = Cluster::on(
        redis.url(),
        "[crawl]\nlease_ttl = 5\ndownload_timeout = 4\nmaxdepth_limit = 100\n",
    )?;
    for _ in 0..3 {
        cluster.start_worker()?;
    }
    cluster
        .submit(&["--request", &request(&site, "failover", 100, Value::Null)])
        .await?;
    eventually(Duration::from_secs(60), "the crawl under way", || {
        (cluster.results().len() >= 20).then_some(())
    })
    .await?;
    let master = redis.master_of(&format!("{{{}}}:ready", cluster.ns))?;
    redis.kill(master);
    let results = match cluster
        .until_all_of(&expected, Duration::from_secs(120))
        .await
    {
        Ok(r) => r,
        Err(e) => {
            let logs: Vec<String> = (0..3)
                .map(|i| {
                    let log = cluster.scratch.path(&format!("worker-{i}.log"));
                    std::fs::read_to_string(log).unwrap_or_default()
                })
                .collect();
            let n = cluster.results().len();
            anyhow::bail!("{e} ({n} results):\n{}", logs.join("\n---\n"));
        }
    };
    let got: BTreeSet<String> = results
        .iter()
        .filter_map(|r| r["url"].as_str().map(str::to_string))
        .collect();
    assert_eq!(got, expected);
    // The crawl is seen through to its end on the new master.
    let info = cluster.until_done("ops", "failover").await?;
    assert_eq!(info["in_flight"], 0, "{info}");
    Ok(())
}
