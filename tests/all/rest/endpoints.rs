//! Every endpoint and error case of contract §5: health, feed-and-wait,
//! feed-then-poll, unknown routes, outages of Kafka and Redis, and the
//! gateway's own id in `rest` stats.

use super::{failure, Gateway};
use crate::kafka::{crawl_request, Bus};
use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_and_error_case_of_the_gateway() -> Result<()> {
    let mut bus = Bus::start("", "", 2).await?;
    bus.role("up", &["--workers", "4"])?;
    let gw = Gateway::start(&mut bus, &[]).await?;
    health_and_feeds(&gw).await?;
    bad_input_is_refused(&gw).await?;
    unknown_routes_and_polls_are_refused(&gw).await?;
    metrics_count_the_refusals(&gw).await?;
    outages_turn_health_yellow_then_red(&mut bus, &gw).await
}

/// Health answers without an envelope; a feed with a uuid waits for its
/// reply, one without is sent with no data.
async fn health_and_feeds(gw: &Gateway) -> Result<()> {
    // Health, no envelope.
    let (code, h) = gw.get("/").await?;
    ensure!(
        code == 200 && h["kafka_connected"] == true && h["redis_connected"] == true,
        "{h}"
    );
    ensure!(h["uptime_sec"].is_u64() && h["my_id"].is_string(), "{h}");

    // Feed and wait: the stats reply comes back as data.
    let r = gw
        .post_json(
            "/feed",
            &json!({"uuid": "rest-q", "appid": "restapp", "stats": "queue"}),
        )
        .await?;
    ensure!(
        r.0 == 200 && r.1["status"] == "SUCCESS" && r.1["error"].is_null(),
        "{r:?}"
    );
    ensure!(
        r.1["data"]["uuid"] == "rest-q" && r.1["data"]["stats"] == "queue",
        "{r:?}"
    );
    ensure!(r.1["data"]["queues"]["total_backlog"].is_u64(), "{r:?}");

    // Feed without uuid: sent, data null.
    let r = gw
        .post_json(
            "/feed",
            &serde_json::from_str(&crawl_request("http://rest.example/", "rest-c", 0))?,
        )
        .await?;
    ensure!(
        r.0 == 200 && r.1["status"] == "SUCCESS" && r.1["data"].is_null(),
        "{r:?}"
    );

    Ok(())
}

/// Payloads that are not JSON, or JSON the schema refuses: 400.
async fn bad_input_is_refused(gw: &Gateway) -> Result<()> {
    // Bad input.
    failure(
        &gw.post("/feed", "{not json", "application/json", None)
            .await?,
        400,
        "The payload must be valid JSON.",
    )?;
    failure(
        &gw.post(
            "/feed",
            r#"{"uuid":"x","appid":"restapp"}"#,
            "text/plain",
            None,
        )
        .await?,
        400,
        "The payload must be valid JSON.",
    )?;
    let r = gw
        .post_json(
            "/feed",
            &json!({"uuid": "x", "appid": "restapp", "stats": "everything"}),
        )
        .await?;
    failure(&r, 400, "JSON did not validate against schema.")?;
    ensure!(
        r.1["error"]["cause"]
            .as_str()
            .is_some_and(|c| c.contains("everything")),
        "{r:?}"
    );

    Ok(())
}

/// Unknown routes and methods: 404; polls for an unknown id or with a bad
/// body: 404 and 400.
async fn unknown_routes_and_polls_are_refused(gw: &Gateway) -> Result<()> {
    // Unknown routes and methods.
    failure(
        &gw.get("/nope").await?,
        404,
        "The desired endpoint does not exist",
    )?;
    failure(
        &gw.get("/feed").await?,
        404,
        "The desired endpoint does not exist",
    )?;

    // Poll: unknown id, bad body.
    failure(
        &gw.post_json("/poll", &json!({"poll_id": "never-fed"}))
            .await?,
        404,
        "Could not find matching poll_id",
    )?;
    failure(
        &gw.post_json("/poll", &json!({"id": "x"})).await?,
        400,
        "JSON did not validate against schema.",
    )?;
    failure(
        &gw.post("/poll", "nope", "application/json", None).await?,
        400,
        "The payload must be valid JSON.",
    )?;

    Ok(())
}

/// `/metrics` counts what was served, refusals included.
async fn metrics_count_the_refusals(gw: &Gateway) -> Result<()> {
    // Metrics count what was served.
    let (code, m) = gw.get("/metrics").await?;
    let m = m.as_str().unwrap_or_default().to_string();
    ensure!(
        code == 200 && m.contains("spinneret_rest_requests_total{route=\"/feed\",code=\"400\"} 3"),
        "{m}"
    );

    Ok(())
}

/// Kafka down: feed 500, health YELLOW; Redis down too: poll 500, RED.
async fn outages_turn_health_yellow_then_red(bus: &mut Bus, gw: &Gateway) -> Result<()> {
    // Outages: Kafka down -> feed 500, health YELLOW; Redis down too -> poll 500, RED.
    bus.broker.kill();
    let r = gw
        .post_json(
            "/feed",
            &json!({"uuid": "down", "appid": "restapp", "stats": "queue"}),
        )
        .await?;
    failure(&r, 500, "Unable to connect to Kafka")?;
    let mut health = Value::Null;
    for _ in 0..300 {
        health = gw.get("/").await?.1;
        if health["node_health"] == "YELLOW" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ensure!(
        health["node_health"] == "YELLOW" && health["kafka_connected"] == false,
        "{health}"
    );
    // Redis goes away too (replaced by a server the gateway does not know).
    drop(std::mem::replace(
        &mut bus.redis,
        crate::harness::RedisServer::start().await?,
    ));
    let r = gw.post_json("/poll", &json!({"poll_id": "any"})).await?;
    failure(&r, 500, "Unable to connect to Redis")?;
    let mut health = Value::Null;
    for _ in 0..400 {
        health = gw.get("/").await?.1;
        if health["node_health"] == "RED" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ensure!(health["node_health"] == "RED", "{health}");
    failure(
        &gw.get("/api/status").await?,
        500,
        "Unable to connect to Redis",
    )?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_that_times_out_is_polled_once() -> Result<()> {
    let mut bus = Bus::start("", "", 1).await?;
    bus.role("up", &[])?;
    // No waiting at all: every feed with a uuid returns a poll_id.
    let gw = Gateway::start(&mut bus, &[("SPINNERET_REST__FEED_WAIT", "0")]).await?;
    let r = gw
        .post_json(
            "/feed",
            &json!({"uuid": "later", "appid": "restapp", "stats": "spider"}),
        )
        .await?;
    ensure!(
        r.0 == 200 && r.1["data"] == json!({"poll_id": "later"}),
        "{r:?}"
    );
    let mut reply = None;
    for _ in 0..600 {
        let r = gw.post_json("/poll", &json!({"poll_id": "later"})).await?;
        if r.0 == 200 {
            reply = Some(r.1);
            break;
        }
        failure(&r, 404, "Could not find matching poll_id")?;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reply = reply.with_context(|| format!("the reply never reached /poll:\n{}", bus.logs()))?;
    ensure!(
        reply["data"]["uuid"] == "later" && reply["data"]["stats"] == "spider",
        "{reply}"
    );
    // Once.
    failure(
        &gw.post_json("/poll", &json!({"poll_id": "later"})).await?,
        404,
        "Could not find matching poll_id",
    )?;
    // Anything unexpected (here a stored reply that is not JSON) is a 500
    // with the contract's catch-all message.
    let mut c = bus.redis.connection()?;
    let _: () = redis::cmd("SET")
        .arg("{spinneret}:reply:broken")
        .arg("not json")
        .query(&mut c)?;
    failure(
        &gw.post_json("/poll", &json!({"poll_id": "broken"})).await?,
        500,
        "An error occurred while processing your request.",
    )?;
    Ok(())
}

/// `GET /` names the gateway by the id its heartbeat lists it under in
/// `rest` stats, so a monitoring client can match the two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateways_my_id_is_the_id_rest_stats_list() -> Result<()> {
    let mut bus = Bus::start("", "", 1).await?;
    bus.role("up", &[])?;
    let gw = Gateway::start(&mut bus, &[]).await?;
    let (_, h) = gw.get("/").await?;
    let my_id = h["my_id"].as_str().context("my_id")?.to_string();
    // The heartbeat comes each second: ask until the node is listed.
    let mut nodes = Value::Null;
    for i in 0..100 {
        let r = gw
            .post_json(
                "/feed",
                &json!({"uuid": format!("rest-nodes-{i}"), "appid": "restapp", "stats": "rest"}),
            )
            .await?;
        nodes = r.1["data"]["nodes"].clone();
        let listed = nodes
            .as_object()
            .into_iter()
            .flat_map(|m| m.values())
            .filter_map(Value::as_array)
            .flatten()
            .any(|id| id == my_id.as_str());
        if listed {
            let host = my_id.rsplit_once(':').map(|(h, _)| h).unwrap_or_default();
            ensure!(nodes[host].is_array(), "listed under its host: {nodes}");
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("my_id {my_id} not among the rest nodes {nodes}")
}
