//! Ingest refuses what it cannot take: every kind of invalid message goes to
//! `demo.errors` verbatim with its origin and reason, and ingest goes on.

use super::{crawl_request, Bus};
use crate::harness::eventually;
use anyhow::{ensure, Result};
use serde_json::Value;
use std::time::Duration;

/// What each dead letter of `bad_messages` says, in the same order.
const REASONS: [&str; 10] = [
    "not JSON",
    "unknown field `colour`",
    "unknown variant `everything`",
    "priority",
    "`cookie` is null",
    "allowed_domains",
    "only A-Z a-z 0-9 _ - . are allowed",
    "only A-Z a-z 0-9 _ - . are allowed",
    "`allow_regex` has 40 items, more than the 32 allowed",
    "is faster than the 100 per",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_invalid_input_is_dead_lettered_and_ingest_goes_on() -> Result<()> {
    let mut bus = Bus::start("", "", 1).await?;
    bus.role("kafka-monitor", &[])?;
    let errors = bus.broker.collect("demo.errors")?;
    let bad = bad_messages();
    let mut messages: Vec<String> = bad.iter().map(|(_, m)| m.clone()).collect();
    messages.push(crawl_request("http://good.example/", "good", 0));
    bus.produce(&messages).await?;

    let letters = errors
        .wait(Duration::from_secs(30), "a dead letter for each", |v| {
            (v.len() >= bad.len()).then(|| v.to_vec())
        })
        .await?;
    ensure!(
        letters.len() == bad.len(),
        "more dead letters than bad messages: {letters:?}"
    );
    for (i, l) in letters.iter().enumerate() {
        let (what, payload) = &bad[i];
        ensure!(
            l["payload"] == *payload,
            "{what}: payload not kept verbatim: {l}"
        );
        ensure!(
            l["topic"] == "demo.incoming" && l["partition"] == 0 && l["offset"] == i as i64,
            "{what}: origin wrong: {l}"
        );
        ensure!(
            l["server_time"].as_i64().is_some_and(|t| t > 1_700_000_000),
            "{what}: no server_time: {l}"
        );
        let reason = l["error"].as_str().unwrap_or_default();
        ensure!(
            reason.contains(REASONS[i]),
            "{what}: reason {reason:?} does not say {:?}",
            REASONS[i]
        );
    }
    // The good request after them was queued: the monitor kept going.
    let info: Value = serde_json::from_str(
        &bus.cli(&["info", "--appid", "testapp", "--crawlid", "good"])
            .await?,
    )?;
    let queued = eventually(
        Duration::from_secs(20),
        "the valid request to be queued",
        || {
            let n = bus.redis_int(&["HGET", "{spinneret}:counts", "q"]).ok()?;
            (n == 1).then_some(n)
        },
    )
    .await?;
    ensure!(queued == 1);
    let _ = info;
    // Failures are counted in the kafka-monitor stats.
    let fails = bus.redis_int(&["HGET", "{spinneret}:st:k:fail:n", "life"])?;
    ensure!(fails == bad.len() as i64, "fail count {fails}");
    Ok(())
}

/// One message of each kind ingest refuses, named for the failure.
fn bad_messages() -> Vec<(&'static str, String)> {
    vec![
        ("not JSON", r#"{"url": "http://a.com/", "appid""#.to_string()),
        ("unknown field", r#"{"url":"http://a.com/","appid":"app","crawlid":"c","colour":"red"}"#.into()),
        ("bad enum", r#"{"uuid":"u1","appid":"app","stats":"everything"}"#.into()),
        ("out of range", r#"{"url":"http://a.com/","appid":"app","crawlid":"c","priority":101}"#.into()),
        ("explicit null", r#"{"url":"http://a.com/","appid":"app","crawlid":"c","cookie":null}"#.into()),
        ("duplicate entry", r#"{"url":"http://a.com/","appid":"app","crawlid":"c","allowed_domains":["a.com","a.com"]}"#.into()),
        ("spiderid with a bar", r#"{"url":"http://a.com/","appid":"app","crawlid":"c","spiderid":"link|x"}"#.into()),
        ("spiderid with a newline", r#"{"url":"http://a.com/","appid":"app","crawlid":"c","spiderid":"a\nb"}"#.into()),
        ("too many regexes", serde_json::json!({"url": "http://a.com/", "appid": "app", "crawlid": "c",
            "allow_regex": (0..40).map(|i| format!("{i}{}", "a".repeat(1000))).collect::<Vec<_>>()}).to_string()),
        ("domain config too fast", r#"{"uuid":"u9","appid":"app","domain":"a.com","action":"domain-update","hits":1000,"window":1}"#.into()),
    ]
}
