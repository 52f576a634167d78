//! A page too large for a message, by claim check: its body in a real S3
//! server (moto_server), the result with `body_ref`; a store that is down
//! is waited out with the lease held; a worker killed between the PUT and
//! the send leaves the page to be crawled again, under the same key.

use super::{crawl_request, one_host_site, Bus};
use crate::harness::{eventually, Site, SiteSpec};
use crate::s3::S3Server;
use anyhow::{ensure, Context, Result};
use serde_json::Value;
use sha2::{Digest, Sha256};
use spinneret_testsite::archived;
use std::time::Duration;

fn sha256(b: &[u8]) -> String {
    hex(&Sha256::digest(b))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The result's `body_ref` names the served page, which the store holds.
async fn check_offloaded(s3: &S3Server, r: &Value) -> Result<String> {
    let big = archived::big();
    ensure!(
        r.get("body").is_none(),
        "body sent as well: {}",
        r["body_ref"]
    );
    let body_ref = &r["body_ref"];
    ensure!(body_ref["sha256"] == sha256(&big), "{body_ref}");
    ensure!(body_ref["bytes"] == big.len() as u64, "{body_ref}");
    ensure!(
        body_ref["content_type"]
            .as_str()
            .is_some_and(|t| t.starts_with("text/html")),
        "{body_ref}"
    );
    let uri = body_ref["uri"].as_str().context("body_ref.uri")?;
    ensure!(
        uri.starts_with("s3://crawl/spinneret/bodies/testapp/"),
        "{uri}"
    );
    ensure!(
        sha256(&s3.get(uri).await?) == sha256(&big),
        "stored bytes differ"
    );
    Ok(uri.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_too_large_for_a_message_goes_by_claim_check_and_waits_out_the_store() -> Result<()>
{
    let site = one_host_site(5, 3).await?;
    let mut s3 = S3Server::start("crawl").await?;
    let config = format!("{}presign = 600\n", s3.config("spinneret"));
    let mut bus = Bus::start("", &config, 1).await?;
    bus.role_env("up", &[], &S3Server::env())?;
    let results = bus.broker.collect("demo.crawled_firehose")?;
    let big = site.archive_url(archived::BIG);
    bus.cli(&["feed", &crawl_request(&big, "big", 0)]).await?;
    let r = results
        .wait(Duration::from_secs(60), "the large page's result", |v| {
            v.iter().find(|r| r["crawlid"] == "big").cloned()
        })
        .await
        .with_context(|| bus.logs())?;
    let uri = check_offloaded(&s3, &r).await?;
    // A link for consumers without credentials.
    let link = r["body_ref"]["url"].as_str().context("body_ref.url")?;
    let linked = reqwest::get(link).await?;
    ensure!(linked.status().is_success(), "{link}: {}", linked.status());
    ensure!(sha256(&linked.bytes().await?) == sha256(&archived::big()));
    // The store goes away: the next large page waits, its lease held and
    // nothing sent, until the store is back.
    s3.stop();
    bus.cli(&["feed", &crawl_request(&big, "while-down", 0)])
        .await?;
    eventually(Duration::from_secs(60), "a failed PUT retried", || {
        bus.logs()
            .contains("result not delivered yet; retrying")
            .then_some(())
    })
    .await
    .with_context(|| bus.logs())?;
    ensure!(
        !results
            .values()
            .iter()
            .any(|r| r["crawlid"] == "while-down"),
        "a result went out while its body could not be stored"
    );
    ensure!(
        bus.redis_int(&["HGET", "{spinneret}:counts", "f"])? == 1,
        "the lease was not held"
    );
    s3.resume().await?;
    let r = results
        .wait(
            Duration::from_secs(60),
            "the result after the outage",
            |v| v.iter().find(|r| r["crawlid"] == "while-down").cloned(),
        )
        .await
        .with_context(|| bus.logs())?;
    // Stored again (the restarted store had lost everything), same key.
    ensure!(check_offloaded(&s3, &r).await? == uri);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_between_the_put_and_the_send_leaves_one_object() -> Result<()> {
    // Pages take 2 s: time to take the broker away mid-fetch.
    let site = Site::start_slow(
        SiteSpec {
            pages: 5,
            hosts: 1,
            seed: 4,
        },
        Duration::from_secs(2),
    )
    .await?;
    let s3 = S3Server::start("crawl").await?;
    let config = format!("{}[crawl]\nlease_ttl = 5\n", s3.config("spinneret"));
    let mut bus = Bus::start("", &config, 1).await?;
    bus.role_env("up", &[], &S3Server::env())?;
    let big = site.archive_url(archived::BIG);
    bus.cli(&["feed", &crawl_request(&big, "killed", 0)])
        .await?;
    eventually(Duration::from_secs(60), "the fetch to start", || {
        site.hits()
            .iter()
            .any(|h| h.path == archived::BIG)
            .then_some(())
    })
    .await
    .with_context(|| bus.logs())?;
    // The broker away: the body is stored, and the send cannot happen.
    bus.broker.kill();
    let bodies = "spinneret/bodies/";
    let mut stored = Vec::new();
    for _ in 0..300 {
        stored = s3.keys(bodies).await?;
        if !stored.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ensure!(stored.len() == 1, "stored: {stored:?}\n{}", bus.logs());
    // Killed outright before it could send; a new worker crawls the page
    // again once the lease lapses.
    bus.roles[0].0.start_kill()?;
    bus.roles[0].0.wait().await?;
    bus.broker.restart().await?;
    let results = bus.broker.collect("demo.crawled_firehose")?;
    bus.role_env("up", &[], &S3Server::env())?;
    let r = results
        .wait(Duration::from_secs(90), "the page crawled again", |v| {
            v.iter().find(|r| r["crawlid"] == "killed").cloned()
        })
        .await
        .with_context(|| bus.logs())?;
    let uri = check_offloaded(&s3, &r).await?;
    ensure!(uri.ends_with(&stored[0]), "{uri} is not {}", stored[0]);
    ensure!(s3.keys(bodies).await? == stored, "a second object");
    let fetched = site
        .hits()
        .iter()
        .filter(|h| h.path == archived::BIG)
        .count();
    ensure!(fetched >= 2, "not crawled again ({fetched} fetches)");
    Ok(())
}
