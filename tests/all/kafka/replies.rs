//! What the monitors answer on `demo.outbound_firehose`: an expired crawl
//! reported once, and a request kind added by a monitor plugin.

use super::Bus;
use anyhow::{ensure, Context, Result};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_crawl_is_reported_once() -> Result<()> {
    let mut bus = Bus::start("", "", 1).await?;
    bus.role("kafka-monitor", &[])?;
    bus.role("redis-monitor", &[])?;
    bus.role("redis-monitor", &[])?;
    let replies = bus.broker.collect("demo.outbound_firehose")?;
    // Blacklisted, so its seed stays queued until it expires.
    bus.cli(&[
        "domain",
        "blacklist",
        "held.example",
        "--redis",
        &bus.redis.url(),
    ])
    .await?;
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        + 2;
    let req = json!({"url": "http://held.example/", "appid": "testapp", "crawlid": "short",
                     "spiderid": "link", "expires": expires});
    bus.produce(&[req.to_string()]).await?;
    let expired = replies
        .wait(Duration::from_secs(30), "the expired message", |v| {
            v.iter().find(|r| r["action"] == "expired").cloned()
        })
        .await
        .with_context(|| bus.logs())?;
    ensure!(
        expired["crawlid"] == "short"
            && expired["appid"] == "testapp"
            && expired["spiderid"] == "link"
            && expired["total_expired"] == 1
            && expired["server_time"].is_i64()
            && expired.get("uuid").is_none(),
        "expired message {expired}"
    );
    // Once: a later info reply arrives after it, and no second `expired`.
    bus.produce(&[
        json!({"uuid": "after", "appid": "testapp", "spiderid": "link",
                         "action": "info", "crawlid": "short"})
        .to_string(),
    ])
    .await?;
    let info = replies
        .wait(Duration::from_secs(30), "the info reply", |v| {
            v.iter().find(|r| r["uuid"] == "after").cloned()
        })
        .await?;
    ensure!(
        info["total_pending"] == 0,
        "expired crawl still queued: {info}"
    );
    let n = replies
        .values()
        .iter()
        .filter(|r| r["action"] == "expired")
        .count();
    ensure!(n == 1, "{n} expired messages");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monitor_plugin_adds_a_request_kind() -> Result<()> {
    let mut bus = Bus::start("", "", 1).await?;
    bus.role("kafka-monitor", &[])?;
    bus.role("redis-monitor", &[])?;
    let replies = bus.broker.collect("demo.outbound_firehose")?;
    let errors = bus.broker.collect("demo.errors")?;
    let msg = json!({"uuid": "sl-1", "appid": "testapp", "crawlid": "list",
                     "urls": ["http://one.example/", "http://two.example/", "http://three.example/"]});
    let bad = json!({"uuid": "sl-2", "appid": "testapp", "crawlid": "list", "urls": []});
    bus.produce(&[msg.to_string(), bad.to_string()]).await?;
    let reply = replies
        .wait(Duration::from_secs(30), "the plugin's reply", |v| {
            v.iter().find(|r| r["uuid"] == "sl-1").cloned()
        })
        .await
        .with_context(|| bus.logs())?;
    ensure!(
        reply["queued"] == 3 && reply["appid"] == "testapp",
        "reply {reply}"
    );
    ensure!(reply["server_time"].is_i64(), "reply {reply}");
    let letter = errors
        .wait(Duration::from_secs(30), "the refused seed list", |v| {
            v.first().cloned()
        })
        .await?;
    ensure!(
        letter["error"]
            .as_str()
            .is_some_and(|e| e.contains("seed-list") && e.contains("no urls")),
        "letter {letter}"
    );
    let queued = bus.redis_int(&["HGET", "{spinneret}:counts", "q"])?;
    ensure!(queued == 3, "{queued} queued");
    let plugin_count = bus.redis_int(&["HGET", "{spinneret}:st:k:seed-list:n", "life"])?;
    ensure!(plugin_count >= 1, "plugin not counted in stats");
    Ok(())
}
