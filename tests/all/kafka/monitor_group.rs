//! Kafka monitors in one consumer group: partitions split between members,
//! and a member killed mid-stream replaced, without loss or double handling.

use super::{crawl_request, Bus};
use crate::harness::eventually;
use anyhow::{ensure, Context, Result};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_monitors_in_one_group_split_partitions_without_loss_or_double_handling() -> Result<()>
{
    let mut bus = Bus::start("", "", 4).await?;
    bus.role("kafka-monitor", &[])?;
    bus.role("kafka-monitor", &[])?;
    // Wait until the group has settled with both members holding partitions.
    eventually(
        Duration::from_secs(60),
        "both monitors to hold partitions",
        || {
            let held = bus
                .roles
                .iter()
                .filter(|(_, log)| {
                    std::fs::read_to_string(log)
                        .unwrap_or_default()
                        .lines()
                        .rev()
                        .find(|l| l.contains("partitions assigned"))
                        .is_some_and(|l| !l.contains("partitions=[]"))
                })
                .count();
            (held == 2).then_some(())
        },
    )
    .await
    .with_context(|| bus.logs())?;
    let requests: Vec<String> = (0..100)
        .map(|i| {
            crawl_request(
                &format!("http://site{i}.example/"),
                &format!("crawl-{i}"),
                0,
            )
        })
        .collect();
    bus.produce(&requests).await?;
    eventually(Duration::from_secs(60), "100 crawls queued", || {
        let n = bus.redis_int(&["ZCARD", "{spinneret}:crawls"]).ok()?;
        (n == 100).then_some(())
    })
    .await
    .with_context(|| bus.logs())?;
    // Redelivery would show as more than 100 queued requests or handled
    // messages; give a late duplicate a chance to land before checking.
    let handled = eventually(Duration::from_secs(10), "stats to count 100", || {
        let n = bus
            .redis_int(&["HGET", "{spinneret}:st:k:total:n", "life"])
            .ok()?;
        (n >= 100).then_some(n)
    })
    .await?;
    ensure!(handled == 100, "handled {handled} messages for 100 sent");
    let queued = bus.redis_int(&["HGET", "{spinneret}:counts", "q"])?;
    ensure!(
        queued == 100,
        "{queued} requests queued for 100 distinct crawls"
    );
    let logs = bus.logs();
    for (_, log) in &bus.roles {
        let text = std::fs::read_to_string(log)?;
        ensure!(
            text.contains("partitions assigned"),
            "a monitor never joined:\n{logs}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monitor_killed_mid_stream_is_replaced_without_double_handling() -> Result<()> {
    // No commit before the kill: the replacement reads everything again.
    let mut bus = Bus::start("batch = 10\ncommit_interval_ms = 600000", "", 2).await?;
    let requests: Vec<String> = (0..300)
        .map(|i| {
            crawl_request(
                &format!("http://site{i}.example/"),
                &format!("crawl-{i}"),
                0,
            )
        })
        .collect();
    bus.produce(&requests).await?;
    bus.role("kafka-monitor", &[])?;
    eventually(Duration::from_secs(30), "the monitor to be midway", || {
        let n = bus.redis_int(&["ZCARD", "{spinneret}:crawls"]).ok()?;
        (n > 0).then_some(())
    })
    .await?;
    // kill -9: offsets handled since the last commit are read again.
    bus.roles[0].0.start_kill()?;
    bus.roles[0].0.wait().await?;
    let at_kill = bus.redis_int(&["HGET", "{spinneret}:st:k:total:n", "life"])?;
    bus.role("kafka-monitor", &[])?;
    // The replacement reads the uncommitted messages again; the watermark
    // must skip exactly those handled before the kill.
    let log = bus.roles[1].1.clone();
    eventually(
        Duration::from_secs(60),
        "the replacement to see redelivered messages",
        || {
            std::fs::read_to_string(&log)
                .ok()?
                .contains("redelivered")
                .then_some(())
        },
    )
    .await
    .with_context(|| bus.logs())?;
    eventually(Duration::from_secs(60), "all 300 crawls queued", || {
        let n = bus.redis_int(&["ZCARD", "{spinneret}:crawls"]).ok()?;
        (n == 300).then_some(())
    })
    .await
    .with_context(|| bus.logs())?;
    // Let the replacement work through the whole topic before counting.
    let mut c = bus.redis.connection()?;
    let topic_end = 300;
    eventually(
        Duration::from_secs(60),
        "the replacement to reach the end",
        || {
            let skipped = skipped_in(&log)?;
            let handled: i64 = redis::cmd("HGET")
                .arg("{spinneret}:st:k:total:n")
                .arg("life")
                .query(&mut c)
                .ok()?;
            (skipped + handled >= topic_end).then_some(())
        },
    )
    .await
    .with_context(|| bus.logs())?;
    let handled = bus.redis_int(&["HGET", "{spinneret}:st:k:total:n", "life"])?;
    let queued = bus.redis_int(&["HGET", "{spinneret}:counts", "q"])?;
    ensure!(
        handled == 300 && queued == 300,
        "handled {handled}, queued {queued} for 300 messages (killed at {at_kill})"
    );
    Ok(())
}

/// The redelivered messages a monitor's log says it skipped, summed over
/// its `skipped=N` lines.
fn skipped_in(log: &std::path::Path) -> Option<i64> {
    let text = std::fs::read_to_string(log).ok()?;
    Some(
        text.lines()
            .filter_map(|l| {
                l.split("skipped=")
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .trim_matches(|c: char| !c.is_ascii_digit())
                    .parse::<i64>()
                    .ok()
            })
            .sum(),
    )
}
