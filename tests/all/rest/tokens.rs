//! A bearer token guards the gateway (the status page takes it from its
//! URL), and the OpenAPI document lists exactly the routes served.

use super::{failure, Gateway};
use crate::kafka::Bus;
use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_guards_the_gateway_and_openapi_matches_the_routes() -> Result<()> {
    let mut bus = Bus::start("", "", 1).await?;
    bus.role("redis-monitor", &[])?;
    bus.role("kafka-monitor", &[])?;
    let gw = Gateway::start(&mut bus, &[("SPINNERET_REST__TOKEN", "s3cret")]).await?;
    tokens_guard_the_routes(&gw).await?;
    openapi_lists_the_served_routes(&gw).await
}

/// `s3cret` opens every route but health (open to load balancers); the
/// status page alone takes it from its URL.
async fn tokens_guard_the_routes(gw: &Gateway) -> Result<()> {
    let body = json!({"uuid": "tok", "appid": "restapp", "stats": "queue"}).to_string();
    failure(
        &gw.post("/feed", &body, "application/json", None).await?,
        401,
        "A valid bearer token is required.",
    )?;
    failure(
        &gw.post("/feed", &body, "application/json", Some("wrong"))
            .await?,
        401,
        "A valid bearer token is required.",
    )?;
    let r = gw
        .post("/feed", &body, "application/json", Some("s3cret"))
        .await?;
    ensure!(r.0 == 200 && r.1["data"]["uuid"] == "tok", "{r:?}");
    // A token in the URL is taken by the status page only.
    failure(
        &gw.post("/feed?token=s3cret", &body, "application/json", None)
            .await?,
        401,
        "A valid bearer token is required.",
    )?;
    // Two feeds waiting on one uuid both get the reply.
    let twin = json!({"uuid": "twin", "appid": "restapp", "stats": "queue"}).to_string();
    let (a, b) = tokio::join!(
        gw.post("/feed", &twin, "application/json", Some("s3cret")),
        gw.post("/feed", &twin, "application/json", Some("s3cret")),
    );
    for r in [a?, b?] {
        ensure!(r.0 == 200 && r.1["data"]["uuid"] == "twin", "{r:?}");
    }
    // Health stays open for load balancers.
    ensure!(gw.get("/").await?.0 == 200);
    // A crawl's events are guarded as the rest.
    failure(
        &gw.get("/api/events?appid=a&crawlid=c").await?,
        401,
        "A valid bearer token is required.",
    )?;
    // The status page takes the token from its URL (a browser sends no header).
    failure(
        &gw.get("/ui").await?,
        401,
        "A valid bearer token is required.",
    )?;
    let (code, page) = gw.get("/ui?token=s3cret").await?;
    ensure!(
        code == 200 && page.as_str().is_some_and(|p| p.contains("Spinneret")),
        "status page with ?token= gave {code}"
    );
    Ok(())
}

/// Every documented operation exists (answers something but the
/// unknown-route 404), and the routes that exist are documented.
async fn openapi_lists_the_served_routes(gw: &Gateway) -> Result<()> {
    let doc: Value = gw
        .http
        .get(format!("{}/openapi.json", gw.base))
        .bearer_auth("s3cret")
        .send()
        .await?
        .json()
        .await?;
    ensure!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{doc}"
    );
    let paths = doc["paths"].as_object().context("no paths")?;
    let mut documented = Vec::new();
    for (path, ops) in paths {
        for method in ops.as_object().context("path item")?.keys() {
            documented.push(format!("{method} {path}"));
            let req = match method.as_str() {
                "get" => gw.http.get(format!("{}{path}", gw.base)),
                "post" => gw
                    .http
                    .post(format!("{}{path}", gw.base))
                    .header("content-type", "application/json")
                    .body("{}"),
                other => anyhow::bail!("unexpected method {other}"),
            };
            let r = req.bearer_auth("s3cret").send().await?;
            let code = r.status().as_u16();
            let text = r.text().await?;
            ensure!(
                !(code == 404 && text.contains("The desired endpoint does not exist")),
                "documented {method} {path} is not served"
            );
        }
    }
    documented.sort();
    ensure!(
        documented
            == [
                "get /",
                "get /api/events",
                "get /api/status",
                "get /metrics",
                "get /openapi.json",
                "get /ui",
                "post /feed",
                "post /poll"
            ],
        "documented operations {documented:?} differ from the served ones"
    );
    Ok(())
}
