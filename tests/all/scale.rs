//! What coordination costs Redis (issue 15).

use crate::cluster::Cluster;
use crate::harness::{eventually, RedisServer};
use anyhow::Result;
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
