//! Delivery and stops on Kafka (issue 11): results the broker can never
//! take become dead letters instead of silent losses, and every role stops
//! cleanly on SIGTERM.

use crate::harness::{eventually, free_port, signal};
use crate::kafka::{crawl_request, one_host_site, Bus};
use anyhow::{ensure, Context, Result};
use serde_json::json;
use std::time::Duration;

/// A result over `max_message_bytes` even without its body, headers and
/// links (its 6 KB URL alone is over 4 KiB) is a dead letter on
/// `demo.errors` that names it and says why; the lease is acked, so the
/// crawl still reaches `done`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_that_never_fits_is_dead_lettered_and_the_crawl_finishes() -> Result<()> {
    let site = one_host_site(10, 3).await?;
    let mut bus = Bus::start("max_message_bytes = 4096", "", 1).await?;
    bus.role("up", &[])?;
    let errors = bus.broker.collect("demo.errors")?;
    let url = format!("{}?q={}", site.url(0), "x".repeat(6000));
    bus.cli(&["feed", &crawl_request(&url, "huge", 0)]).await?;
    let letter = errors
        .wait(Duration::from_secs(60), "the dead letter", |v| {
            v.first().cloned()
        })
        .await
        .with_context(|| bus.logs())?;
    ensure!(
        letter["error"]
            .as_str()
            .is_some_and(|e| e.contains("even without its body")),
        "{letter}"
    );
    let r = &letter["result"];
    ensure!(
        r["crawlid"] == "huge" && r["appid"] == "testapp" && r["status_code"] == 200,
        "{letter}"
    );
    ensure!(
        r["url"]
            .as_str()
            .is_some_and(|u| u.starts_with(&site.url(0)) && u.len() < 2100),
        "the URL, cut short: {letter}"
    );
    bus.until_done("testapp", "huge").await?;
    Ok(())
}

/// With `appid_topics`, an app whose per-app topic cannot be created (its
/// name would be over Kafka's 249 characters) still gets its results on
/// the firehose; each per-app copy is a dead letter with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_topic_that_cannot_exist_does_not_cost_the_firehose_copy() -> Result<()> {
    let site = one_host_site(10, 4).await?;
    let prefix = "p".repeat(210);
    let mut bus = Bus::start(
        &format!("appid_topics = true\ntopic_prefix = \"{prefix}\""),
        "",
        1,
    )
    .await?;
    let (firehose, errors) = (
        format!("{prefix}.crawled_firehose"),
        format!("{prefix}.errors"),
    );
    bus.broker.create_topic(&firehose, 1).await?;
    bus.broker.create_topic(&errors, 1).await?;
    bus.role("up", &[])?;
    let results = bus.broker.collect(&firehose)?;
    let letters = bus.broker.collect(&errors)?;
    let appid = "a".repeat(40);
    let request =
        json!({"url": site.url(0), "appid": appid, "crawlid": "long", "maxdepth": 0}).to_string();
    bus.cli(&["feed", &request]).await?;
    let r = results
        .wait(Duration::from_secs(60), "the firehose copy", |v| {
            v.first().cloned()
        })
        .await
        .with_context(|| bus.logs())?;
    ensure!(
        r["url"] == site.url(0).as_str() && r["appid"] == appid.as_str(),
        "{r}"
    );
    let letter = letters
        .wait(
            Duration::from_secs(60),
            "the per-app copy's dead letter",
            |v| v.first().cloned(),
        )
        .await
        .with_context(|| bus.logs())?;
    ensure!(
        letter["error"]
            .as_str()
            .is_some_and(|e| e.contains("per-app copy not delivered")),
        "{letter}"
    );
    bus.until_done(&appid, "long").await?;
    Ok(())
}

/// Every role stops the same way: SIGTERM, and it exits 0 within
/// `process.shutdown_grace`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_stops_cleanly_on_sigterm() -> Result<()> {
    let mut bus = Bus::start("", "[process]\nshutdown_grace = 5\n", 1).await?;
    let port = free_port()?.to_string();
    let roles: [(&str, &[&str], &str); 5] = [
        ("kafka-monitor", &[], "ingest monitor consuming"),
        ("redis-monitor", &[], "control plane started"),
        ("worker", &[], "worker ready"),
        ("up", &[], "control plane started"),
        ("rest", &["--port", &port], "REST gateway listening"),
    ];
    for (role, args, _) in &roles {
        bus.role(role, args)?;
    }
    for (i, (role, _, ready)) in roles.iter().enumerate() {
        let log = bus.roles[i].1.clone();
        eventually(Duration::from_secs(60), role, || {
            std::fs::read_to_string(&log)
                .ok()?
                .contains(ready)
                .then_some(())
        })
        .await
        .with_context(|| bus.logs())?;
    }
    for (child, _) in &bus.roles {
        signal(child, "TERM")?;
    }
    let started = std::time::Instant::now();
    for (i, (role, _, _)) in roles.iter().enumerate() {
        let (child, log) = &mut bus.roles[i];
        let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .with_context(|| format!("{role} still running 10 s after SIGTERM"))??;
        let text = std::fs::read_to_string(log.as_path()).unwrap_or_default();
        ensure!(status.success(), "{role} exited with {status:?}:\n{text}");
    }
    ensure!(
        started.elapsed() < Duration::from_secs(5),
        "stopped after {:?}",
        started.elapsed()
    );
    Ok(())
}
