//! The REST gateway against a real broker and a real Redis: every endpoint
//! and every error case of contract §5, feed-and-wait, feed-then-poll,
//! bearer tokens and the OpenAPI document, the status page and metrics,
//! and the gateway's bounds on its clients. Here: `Gateway`, a client of a
//! started `spinneret rest`.

mod clients;
mod endpoints;
mod monitoring;
mod tokens;

use crate::harness::free_port;
use crate::kafka::Bus;
use anyhow::{ensure, Context, Result};
use serde_json::Value;
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
