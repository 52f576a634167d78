//! Webhooks: a crawl's events POSTed to a receiver in the test, which
//! checks each signature with its own implementation of Standard
//! Webhooks 1.0 (HMAC-SHA256 over `id.timestamp.body`).

use crate::harness::{Scratch, Site, SiteSpec};
use anyhow::Result;
use base64::Engine as _;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The app's secret: `whsec_` and base64 of 32 bytes.
const SECRET: &str = "whsec_c2VjcmV0LWtleS1vZi10aGUtdGVzdC1hcHAtMzI=";

/// One POST the receiver took.
#[derive(Debug, Clone)]
struct Posted {
    path: String,
    id: String,
    signed: bool,
    body: Value,
}

/// Standard Webhooks' check, written here from the specification.
fn verify(secret: &str, id: &str, ts: &str, body: &[u8], signatures: &str) -> bool {
    let Some(key) = secret
        .strip_prefix("whsec_")
        .and_then(|k| base64::engine::general_purpose::STANDARD.decode(k).ok())
    else {
        return false;
    };
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).expect("any key");
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body);
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    signatures
        .split(' ')
        .any(|s| s.strip_prefix("v1,") == Some(expected.as_str()))
}

/// A receiver on loopback: `/flaky` answers 500 twice per event then 200,
/// `/gone` always 410, anything else 200.
async fn receiver() -> Result<(String, Arc<Mutex<Vec<Posted>>>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let posted: Arc<Mutex<Vec<Posted>>> = Arc::default();
    let log = posted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let log = log.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let log = log.clone();
                    async move {
                        let path = req.uri().path().to_string();
                        let header = |n: &str| {
                            req.headers()
                                .get(n)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default()
                                .to_string()
                        };
                        let (id, ts, sig) = (
                            header("webhook-id"),
                            header("webhook-timestamp"),
                            header("webhook-signature"),
                        );
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let signed = verify(SECRET, &id, &ts, &body, &sig);
                        let body: Value = serde_json::from_slice(&body).unwrap_or_default();
                        let tries = {
                            let mut l = log.lock().expect("log");
                            l.push(Posted {
                                path: path.clone(),
                                id: id.clone(),
                                signed,
                                body,
                            });
                            l.iter().filter(|p| p.id == id && p.path == path).count()
                        };
                        let status = match path.as_str() {
                            "/flaky" if tries <= 2 => 500,
                            "/gone" => 410,
                            _ => 200,
                        };
                        Ok::<_, std::convert::Infallible>(
                            Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::new()))
                                .expect("response"),
                        )
                    }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, svc)
                    .await;
            });
        }
    });
    Ok((base, posted))
}

#[tokio::test(flavor = "multi_thread")]
async fn webhooks_are_signed_retried_disabled_by_410_and_kept_off_private_addresses() -> Result<()>
{
    let site = Site::start(SiteSpec {
        pages: 10,
        hosts: 1,
        seed: 5,
    })
    .await?;
    let (base, posted) = receiver().await?;
    let config = format!(
        "[crawl]\nallow_private = false\nallow_networks = [\"127.0.0.0/8\"]\n\n[webhooks]\nretry = [0.2, 0.2, 0.2]\n\n[webhooks.secrets]\ntestapp = \"{SECRET}\"\n"
    );
    let s = Scratch::new(&[("link", "link")], &config)?;
    let request = |crawlid: &str, webhook: Value| {
        json!({"url": site.seed_url(), "appid": "testapp", "crawlid": crawlid, "maxdepth": 1,
               "webhook": webhook})
        .to_string()
    };
    let lines = [
        request(
            "flaky",
            json!({"url": format!("{base}/flaky"), "events": ["crawl.completed"], "metadata": {"team": "pricing"}}),
        ),
        request("gone", json!({"url": format!("{base}/gone")})),
        request("private", json!({"url": "http://10.255.255.1:9/hook"})),
    ];
    std::fs::write(s.path("requests.jsonl"), lines.join("\n"))?;
    let requests = s.path("requests.jsonl");
    let run = s
        .run(&[
            "--spider",
            "link",
            "--requests",
            requests.to_str().unwrap_or_default(),
        ])
        .await?
        .ok()?;

    let posted = posted.lock().expect("log").clone();
    assert!(
        posted.iter().all(|p| p.signed),
        "a signature did not verify: {posted:?}"
    );
    let to = |path: &str| -> Vec<&Posted> { posted.iter().filter(|p| p.path == path).collect() };
    // 500, 500, 200: the third try delivers, with the same id each time.
    let flaky = to("/flaky");
    assert_eq!(flaky.len(), 3, "{flaky:?}");
    assert!(flaky
        .iter()
        .all(|p| p.id == flaky[0].id && p.id.starts_with("evt_")));
    assert_eq!(flaky[0].body["event"], "crawl.completed");
    assert_eq!(flaky[0].body["crawlid"], "flaky");
    assert_eq!(flaky[0].body["metadata"], json!({"team": "pricing"}));
    assert!(flaky[0].body["stats"]["pages"].as_u64() > Some(0));
    // 410 on the first event: nothing more is sent there.
    assert_eq!(to("/gone").len(), 1, "{posted:?}");
    assert!(to("/hook").is_empty());
    let dead: Vec<Value> = run
        .stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v.get("undelivered_event").cloned())
        .collect();
    let reasons: HashMap<String, Vec<String>> = dead.iter().fold(HashMap::new(), |mut m, d| {
        m.entry(d["crawlid"].as_str().unwrap_or_default().to_string())
            .or_default()
            .push(d["reason"].as_str().unwrap_or_default().to_string());
        m
    });
    let gone = &reasons["gone"];
    assert!(gone[0].contains("410"), "{gone:?}");
    assert!(
        gone.len() >= 3,
        "the later events are dead-lettered too: {gone:?}"
    );
    let private = &reasons["private"];
    assert!(
        private
            .iter()
            .all(|r| r.contains("not allowed") || r.contains("private") || r.contains("refused")),
        "{private:?}"
    );
    assert!(dead
        .iter()
        .filter(|d| d["crawlid"] == "private")
        .all(|d| d["attempts"] == 1));
    Ok(())
}

/// A worker that is killed (SIGKILL) while a delivery waits for its next
/// try leaves it kept in Redis: the next worker up takes it over once
/// its hold lapses, and it goes out with the same `webhook-id`.
#[tokio::test(flavor = "multi_thread")]
async fn a_delivery_outlives_its_notifier_killed_mid_retry() -> Result<()> {
    use crate::cluster::{request, Cluster};
    let redis = crate::harness::RedisServer::start().await?;
    let site = Site::start(SiteSpec {
        pages: 6,
        hosts: 1,
        seed: 8,
    })
    .await?;
    let (base, posted) = receiver().await?;
    let config = format!(
        "[crawl]\nallow_private = false\nallow_networks = [\"127.0.0.0/8\"]\n\n[webhooks]\ntimeout = 2\nretry = [3, 0.5]\n\n[webhooks.secrets]\nops = \"{SECRET}\"\n"
    );
    let mut cluster = Cluster::new(&redis, &config)?;
    cluster.start_worker()?;
    let r = request(
        &site,
        "kept",
        1,
        json!({"schedule": {"every": 3600},
               "webhook": {"url": format!("{base}/flaky"), "events": ["crawl.completed"]}}),
    );
    cluster.submit(&["--request", &r]).await?;
    let tries = |n: usize| {
        let posted = posted.clone();
        move || {
            let p = posted.lock().expect("log").clone();
            (p.len() >= n).then_some(p)
        }
    };
    let within = std::time::Duration::from_secs(60);
    crate::harness::eventually(within, "the first try", tries(1))
        .await
        .map_err(|e| anyhow::anyhow!("{e}\n{}", cluster.logs()))?;
    cluster.kill_worker(0).await?;
    cluster.start_worker()?;
    let all = crate::harness::eventually(within, "the delivery after the restart", tries(3))
        .await
        .map_err(|e| anyhow::anyhow!("{e}\n{}", cluster.logs()))?;
    assert!(all.iter().all(|p| p.signed && p.id == all[0].id), "{all:?}");
    assert_eq!(all[0].body["event"], "crawl.completed");
    assert!(
        cluster.logs().contains("taking over a webhook delivery"),
        "the second worker took it over"
    );
    Ok(())
}
