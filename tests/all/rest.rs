//! The REST gateway against a real broker and a real Redis: every endpoint
//! and every error case of contract §5, feed-and-wait, feed-then-poll,
//! bearer tokens and the OpenAPI document.

use crate::harness::free_port;
use crate::kafka::{crawl_request, Bus};
use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};
use std::time::Duration;

struct Gateway {
    base: String,
    http: reqwest::Client,
}

impl Gateway {
    /// Start `spinneret rest` in `bus` with extra settings; wait until it
    /// answers and says GREEN.
    async fn start(bus: &mut Bus, env: &[(&str, &str)]) -> Result<Gateway> {
        let port = free_port()?;
        bus.role_env("rest", &["--port", &port.to_string()], env)?;
        let gw = Gateway {
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        let mut last = Value::Null;
        for _ in 0..600 {
            if let Ok((200, h)) = gw.get("/").await {
                if h["node_health"] == "GREEN" {
                    return Ok(gw);
                }
                last = h;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("gateway never GREEN ({last}):\n{}", bus.logs())
    }

    async fn get(&self, path: &str) -> Result<(u16, Value)> {
        let r = self.http.get(format!("{}{path}", self.base)).send().await?;
        let code = r.status().as_u16();
        let text = r.text().await?;
        Ok((
            code,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    async fn post(
        &self,
        path: &str,
        body: &str,
        content_type: &str,
        token: Option<&str>,
    ) -> Result<(u16, Value)> {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", content_type)
            .body(body.to_string());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await?;
        let code = r.status().as_u16();
        Ok((code, r.json().await.context("response is not JSON")?))
    }

    async fn post_json(&self, path: &str, body: &Value) -> Result<(u16, Value)> {
        self.post(path, &body.to_string(), "application/json", None)
            .await
    }
}

/// A FAILURE envelope with exactly this message.
fn failure(r: &(u16, Value), code: u16, message: &str) -> Result<()> {
    let (c, v) = r;
    ensure!(
        *c == code
            && v["status"] == "FAILURE"
            && v["error"]["message"] == message
            && v["data"].is_null(),
        "expected {code} {message:?}, got {c} {v}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_and_error_case_of_the_gateway() -> Result<()> {
    let mut bus = Bus::start("", "", 2).await?;
    bus.role("up", &["--workers", "4"])?;
    let gw = Gateway::start(&mut bus, &[]).await?;

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

    // Metrics count what was served.
    let (code, m) = gw.get("/metrics").await?;
    let m = m.as_str().unwrap_or_default().to_string();
    ensure!(
        code == 200 && m.contains("spinneret_rest_requests_total{route=\"/feed\",code=\"400\"} 3"),
        "{m}"
    );

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_guards_the_gateway_and_openapi_matches_the_routes() -> Result<()> {
    let mut bus = Bus::start("", "", 1).await?;
    bus.role("redis-monitor", &[])?;
    bus.role("kafka-monitor", &[])?;
    let gw = Gateway::start(&mut bus, &[("SPINNERET_REST__TOKEN", "s3cret")]).await?;
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

    // Every documented operation exists (answers something but the
    // unknown-route 404), and the routes that exist are documented.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_exposes_prometheus_metrics() -> Result<()> {
    let site = crate::harness::Site::start(crate::harness::SiteSpec {
        pages: 20,
        hosts: 1,
        seed: 9,
    })
    .await?;
    let mut bus = Bus::start("", "", 1).await?;
    let port = free_port()?.to_string();
    bus.role_env("up", &[], &[("SPINNERET_STATS__METRICS_PORT", &port)])?;
    let results = bus.broker.collect("demo.crawled_firehose")?;
    bus.cli(&["feed", &crawl_request(&site.url(0), "metrics", 1)])
        .await?;
    bus.broker
        .produce("demo.incoming", &[("k".into(), "{not json".into())])
        .await?;
    results
        .wait(Duration::from_secs(60), "some results", |v| {
            (v.len() >= 3).then_some(())
        })
        .await
        .with_context(|| bus.logs())?;
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/metrics");
    let mut text = String::new();
    for _ in 0..400 {
        text = match http.get(&url).send().await {
            Ok(r) => r.text().await?,
            Err(_) => String::new(),
        };
        if text.contains("spinneret_rejected_total{reason=\"not_json\"} 1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for needle in [
        "spinneret_pages_total{status=\"200\"}",
        "spinneret_fetch_seconds_count ",
        "spinneret_plugin_call_seconds_bucket{plugin=\"link\",le=\"+Inf\"}",
        "spinneret_rejected_total{reason=\"not_json\"} 1",
        "spinneret_plugin_reloads_total{result=\"ok\"}",
        "spinneret_queue_depth",
        "spinneret_leases_in_flight ",
    ] {
        ensure!(text.contains(needle), "no {needle} in:\n{text}");
    }
    let fetched: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("spinneret_fetch_seconds_count "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    ensure!(fetched >= 3, "fetch histogram counted {fetched}");
    Ok(())
}

/// Chromium (headless) renders `url` after `budget_ms` of page time; the DOM.
async fn render(url: &str, budget_ms: u32, extra: &[&str]) -> Result<String> {
    let profile = tempfile::tempdir()?;
    let out = tokio::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--virtual-time-budget={budget_ms}"))
        .args(extra)
        .arg(url)
        .kill_on_drop(true)
        .output()
        .await
        .context("running chromium (scripts/setup --test installs it)")?;
    ensure!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The `crawled` count the page shows for `crawlid`, if it shows the crawl.
fn crawled_on_page(dom: &str, crawlid: &str) -> Option<u64> {
    let row = &dom[dom.find(&format!("data-crawl=\"{crawlid}\""))?..];
    // Chromium writes the attribute as `data-crawled=""`.
    let attr = &row[row.find("data-crawled")?..];
    let cell = &attr[attr.find('>')? + 1..];
    cell[..cell.find('<')?].trim().parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_a_crawl_live_in_a_browser() -> Result<()> {
    let site = crate::harness::Site::start(crate::harness::SiteSpec {
        pages: 80,
        hosts: 1,
        seed: 21,
    })
    .await?;
    // Slow enough that the counts move between two looks.
    let mut bus = Bus::start(
        "",
        "[throttle]\nhits = 4\nwindow = 1\nmoderated = true\n",
        1,
    )
    .await?;
    bus.role("up", &["--workers", "4"])?;
    let gw = Gateway::start(&mut bus, &[]).await?;
    let results = bus.broker.collect("demo.crawled_firehose")?;
    bus.cli(&["feed", &crawl_request(&site.url(0), "live-crawl", 2)])
        .await?;
    results
        .wait(Duration::from_secs(60), "the first results", |v| {
            (v.len() >= 2).then_some(())
        })
        .await
        .with_context(|| bus.logs())?;

    let page = format!("{}/ui", gw.base);
    let first_dom = render(&page, 3000, &["--dump-dom"]).await?;
    let first = crawled_on_page(&first_dom, "live-crawl")
        .with_context(|| format!("the page does not show the crawl:\n{first_dom}"))?;
    ensure!(
        first_dom.contains("running"),
        "the crawl is not shown as running"
    );
    ensure!(
        first_dom.contains("link"),
        "no spider or plugin `link` on the page"
    );
    // Wait until the cluster has crawled more, then look again.
    let mut later = first;
    for _ in 0..600 {
        let (_, s) = gw.get("/api/status").await?;
        later = s["crawls"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["crawlid"] == "live-crawl"))
            .and_then(|c| c["crawled"].as_u64())
            .unwrap_or(0);
        if later >= first + 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ensure!(
        later >= first + 3,
        "the crawl did not progress ({first} -> {later})"
    );
    let second_dom = render(&page, 3000, &["--dump-dom"]).await?;
    let second = crawled_on_page(&second_dom, "live-crawl").context("crawl gone from the page")?;
    ensure!(
        second > first,
        "the page did not update: crawled {first} then {second}"
    );
    for section in [
        "Crawls",
        "Queues by domain",
        "Workers",
        "Plugins",
        "pages/s",
    ] {
        ensure!(second_dom.contains(section), "no {section} on the page");
    }

    // A screenshot for people: target/test-artifacts/status-page.png.
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| crate::harness::repo().join("target"))
        .join("test-artifacts");
    std::fs::create_dir_all(&dir)?;
    let shot = dir.join("status-page.png");
    render(
        &page,
        3000,
        &[
            "--window-size=1280,1100",
            &format!("--screenshot={}", shot.display()),
        ],
    )
    .await?;
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    ensure!(
        size > 10_000,
        "screenshot {} is {size} bytes",
        shot.display()
    );
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

/// The gateway bounds its clients: past `rest.max_connections` a new
/// connection is closed at once, and a client that does not finish its
/// headers within `rest.header_timeout` is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_caps_connections_and_drops_slow_clients() -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut bus = Bus::start("", "", 1).await?;
    let env = [
        ("SPINNERET_REST__MAX_CONNECTIONS", "4"),
        ("SPINNERET_REST__HEADER_TIMEOUT", "3"),
    ];
    let gw = Gateway::start(&mut bus, &env).await?;
    let addr = gw.base.trim_start_matches("http://").to_string();
    // Until the end of its first read: EOF (or an error) means closed.
    async fn closed_within(s: &mut tokio::net::TcpStream, within: Duration) -> bool {
        let mut buf = [0u8; 1024];
        loop {
            match tokio::time::timeout(within, s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    }
    // Six at once, watched at once for well under the header timeout: only
    // a connection over the cap is closed this soon.
    let mut watching = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let mut s = tokio::net::TcpStream::connect(&addr).await?;
        watching.spawn(async move { closed_within(&mut s, Duration::from_millis(1500)).await });
    }
    let mut refused = 0;
    while let Some(closed) = watching.join_next().await {
        refused += usize::from(closed?);
    }
    ensure!(
        (2..=3).contains(&refused),
        "{refused} of 6 connections over a cap of 4 were closed at once"
    );
    let mut slow = tokio::net::TcpStream::connect(&addr).await?;
    slow.write_all(b"GET / HTTP/1.1\r\nHost: gw\r\n").await?;
    ensure!(
        closed_within(&mut slow, Duration::from_secs(20)).await,
        "a client that never finished its headers was kept"
    );
    Ok(())
}

/// A client whose request body drips is answered 408 and cut off once
/// `rest.body_timeout` has passed, however slowly it keeps sending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_that_drips_is_cut_off() -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut bus = Bus::start("", "", 1).await?;
    let env = [("SPINNERET_REST__BODY_TIMEOUT", "1")];
    let gw = Gateway::start(&mut bus, &env).await?;
    let addr = gw.base.trim_start_matches("http://").to_string();
    let mut s = tokio::net::TcpStream::connect(&addr).await?;
    s.write_all(b"POST /feed HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
        .await?;
    let started = std::time::Instant::now();
    let (mut read, mut write) = s.into_split();
    // A byte every 200 ms: never idle, never done.
    let drip = tokio::spawn(async move {
        while write.write_all(b" ").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(20), read.read(&mut buf)).await? {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    drip.abort();
    let answer = String::from_utf8_lossy(&answer);
    ensure!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    ensure!(answer.contains("rest.body_timeout"), "{answer}");
    ensure!(
        started.elapsed() < Duration::from_secs(10),
        "cut off after {:?}",
        started.elapsed()
    );
    Ok(())
}
