//! Results on the topics: none lost across a broker restart, per-app topics
//! and base64 bodies read back with `dump`, an oversized result's error.

use super::{crawl_request, one_host_site, Bus};
use crate::harness::{eventually, Collector};
use anyhow::{ensure, Context, Result};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_mid_crawl_loses_no_page() -> Result<()> {
    let site = one_host_site(60, 11).await?;
    let expected: BTreeSet<String> = site.expected(0, Some(2)).into_iter().collect();
    let mut bus = Bus::start(
        "",
        "[throttle]\nhits = 20\nwindow = 1\nmoderated = true\n",
        2,
    )
    .await?;
    bus.role("kafka-monitor", &[])?;
    bus.role("redis-monitor", &[])?;
    bus.role("worker", &["--concurrency", "4"])?;
    let before = bus.broker.collect("demo.crawled_firehose")?;
    bus.cli(&["feed", &crawl_request(&site.url(0), "restart", 2)])
        .await?;
    before
        .wait(Duration::from_secs(60), "the first results", |v| {
            (v.len() >= 5).then_some(())
        })
        .await
        .with_context(|| bus.logs())?;
    let host = url::Url::parse(&site.url(0))?
        .host_str()
        .unwrap_or_default()
        .to_string();
    let got = hold_and_read_delivered(&bus, &host, before).await?;
    let after = restart_the_broker_mid_crawl(&mut bus, &host).await?;
    let got = after
        .wait(Duration::from_secs(120), "every expected page", |v| {
            let mut all = got.clone();
            all.extend(urls(v));
            expected.is_subset(&all).then_some(all)
        })
        .await
        .with_context(|| bus.logs())?;
    let missing: Vec<_> = expected.difference(&got).collect();
    ensure!(missing.is_empty(), "lost pages: {missing:?}");
    // The incoming topic started over with the broker: a request fed now
    // has an offset the monitor saw before, and must still be handled.
    bus.cli(&["feed", &crawl_request(&site.url(7), "after-restart", 0)])
        .await?;
    after
        .wait(
            Duration::from_secs(60),
            "a crawl fed after the restart",
            |v| v.iter().find(|r| r["crawlid"] == "after-restart").cloned(),
        )
        .await
        .with_context(|| bus.logs())?;
    ensure!(bus.logs().contains("retrying"), "the outage was not logged");
    ensure!(
        after
            .all()
            .iter()
            .all(|r| r.key.as_ref() == r.value["crawlid"].as_str().map(str::to_string).as_ref()),
        "results are keyed by crawlid"
    );
    Ok(())
}

/// The requests the workers hold (`counts` field `f`).
fn in_flight(bus: &Bus) -> Result<i64> {
    bus.redis_int(&["HGET", "{spinneret}:counts", "f"])
}

fn urls(results: &[Value]) -> impl Iterator<Item = String> + '_ {
    results
        .iter()
        .filter_map(|r| r["url"].as_str().map(str::to_string))
}

/// Hold fetching from `host`, and wait until every delivered result was
/// read, so the broker's in-memory loss on restart can only hit messages
/// we have: the URLs read.
async fn hold_and_read_delivered(
    bus: &Bus,
    host: &str,
    before: Collector,
) -> Result<BTreeSet<String>> {
    bus.cli(&["domain", "blacklist", host, "--redis", &bus.redis.url()])
        .await?;
    eventually(Duration::from_secs(30), "nothing in flight", || {
        (in_flight(bus).ok()? == 0).then_some(())
    })
    .await?;
    // Pages acked with a delivered result (the crawl's own counter, written
    // by the ack itself; the stats windows lag by up to a second).
    let out = bus
        .cli(&["info", "--appid", "testapp", "--crawlid", "restart"])
        .await?;
    let delivered = serde_json::from_str::<Value>(&out)?["crawled"]
        .as_i64()
        .unwrap_or(0);
    eventually(
        Duration::from_secs(30),
        "every delivered result to be read",
        || (before.values().len() as i64 >= delivered).then_some(()),
    )
    .await?;
    Ok(urls(&before.values()).collect())
}

/// The broker goes away while the crawl goes on (`host` fetched again):
/// results wait in the workers (leases held), nothing is acked. Then it
/// comes back; a reader of the results from then on.
async fn restart_the_broker_mid_crawl(bus: &mut Bus, host: &str) -> Result<Collector> {
    bus.broker.kill();
    bus.cli(&["domain", "unblacklist", host, "--redis", &bus.redis.url()])
        .await?;
    eventually(
        Duration::from_secs(30),
        "a result waiting for the broker",
        || (in_flight(bus).ok()? > 0).then_some(()),
    )
    .await?;
    bus.broker.restart().await?;
    bus.broker.collect("demo.crawled_firehose")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_app_topics_and_base64_bodies_read_back_with_dump() -> Result<()> {
    let site = one_host_site(10, 3).await?;
    let mut bus = Bus::start("appid_topics = true\nbase64_body = true", "", 1).await?;
    for t in ["demo.crawled_testapp", "demo.outbound_testapp"] {
        bus.broker.create_topic(t, 1).await?;
    }
    bus.role("up", &["--workers", "2"])?;
    let per_app = bus.broker.collect("demo.crawled_testapp")?;
    let replies = bus.broker.collect("demo.outbound_testapp")?;
    bus.cli(&["feed", &crawl_request(&site.url(0), "b64", 0)])
        .await?;
    let raw = per_app
        .wait(
            Duration::from_secs(60),
            "the result on the per-app topic",
            |v| v.first().cloned(),
        )
        .await
        .with_context(|| bus.logs())?;
    let body = raw["body"].as_str().unwrap_or_default();
    ensure!(
        !body.contains('<'),
        "body is not base64: {}",
        &body[..body.len().min(80)]
    );
    let dumped = bus
        .cli(&[
            "dump",
            "-t",
            "demo.crawled_firehose",
            "--from-beginning",
            "--count",
            "1",
            "--decode-base64",
        ])
        .await?;
    let dumped: Value = serde_json::from_str(dumped.trim())?;
    ensure!(
        dumped["body"].as_str().is_some_and(|b| b.contains("<html")),
        "dump did not decode the body"
    );
    let no_body = bus
        .cli(&[
            "dump",
            "-t",
            "demo.crawled_firehose",
            "--from-beginning",
            "--count",
            "1",
            "--no-body",
        ])
        .await?;
    ensure!(
        serde_json::from_str::<Value>(no_body.trim())?
            .get("body")
            .is_none(),
        "--no-body kept the body"
    );
    bus.cli(&[
        "feed",
        r#"{"uuid":"app-q","appid":"testapp","stats":"queue"}"#,
    ])
    .await?;
    replies
        .wait(
            Duration::from_secs(30),
            "the reply on the per-app topic",
            |v| v.iter().find(|r| r["uuid"] == "app-q").cloned(),
        )
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_over_the_size_limit_arrives_with_an_error() -> Result<()> {
    let site = one_host_site(10, 3).await?;
    // Test pages are 15-25 KiB: none fits in 4 KiB.
    let mut bus = Bus::start("max_message_bytes = 4096", "", 1).await?;
    bus.role("up", &[])?;
    let results = bus.broker.collect("demo.crawled_firehose")?;
    bus.cli(&["feed", &crawl_request(&site.url(0), "big", 0)])
        .await?;
    let r = results
        .wait(
            Duration::from_secs(60),
            "the oversized page's result",
            |v| v.first().cloned(),
        )
        .await
        .with_context(|| bus.logs())?;
    ensure!(
        r["body"] == "" && r["url"] == site.url(0).as_str(),
        "result {r}"
    );
    ensure!(
        r["error"]
            .as_str()
            .is_some_and(|e| e.contains("exceeds kafka.max_message_bytes (4096)")),
        "result {r}"
    );
    ensure!(r["status_code"] == 200, "the page itself was fine: {r}");
    Ok(())
}
