//! The gateway's routes (contract §5): the envelope every answer but
//! `GET /` comes in, and one handler per endpoint.

use super::guard::guard;
use super::{envelope, fail, Gateway};
use crate::monitor::schema::classify;
use crate::telemetry::prometheus::{counters, gauge, Scope};
use crate::telemetry::{Event, Stats};
use crate::timeouts;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::oneshot;

/// The contract's error messages (clients match on them).
const NOT_JSON: &str = "The payload must be valid JSON.";
const INVALID: &str = "JSON did not validate against schema.";
const NO_ROUTE: &str = "The desired endpoint does not exist";
const NO_POLL: &str = "Could not find matching poll_id";
const NO_KAFKA: &str = "Unable to connect to Kafka";
const NO_REDIS: &str = "Unable to connect to Redis";
const UNEXPECTED: &str = "An error occurred while processing your request.";

/// The OpenAPI document of the routes below (checked against them by a test).
pub const OPENAPI: &str = include_str!("openapi.json");

impl Gateway {
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/", get(health))
            .route("/feed", post(feed))
            .route("/poll", post(poll))
            .route("/openapi.json", get(openapi))
            .route("/metrics", get(metrics))
            .route("/ui", get(ui))
            .route("/api/status", get(status))
            .route("/api/events", get(events))
            .fallback(no_route)
            .method_not_allowed_fallback(no_route)
            .layer(axum::middleware::from_fn_with_state(self.clone(), guard))
            .with_state(self.clone())
    }

    fn count(&self, route: &'static str, status: StatusCode) {
        self.stats.emit(Event::RestAnswered {
            route,
            status: status.as_u16(),
        });
    }

    /// Prometheus text for the gateway.
    fn render_metrics(&self) -> String {
        metrics_text(
            &self.stats,
            self.waiters.lock().len(),
            self.kafka_up.load(Ordering::Relaxed),
            self.redis_up.load(Ordering::Relaxed),
        )
    }
}

/// The gateway's counters, then what it reads at scrape time: feeds
/// waiting, and whether Kafka and Redis answer.
fn metrics_text(stats: &Stats, waiting: usize, kafka: bool, redis: bool) -> String {
    let mut out = counters(stats, Scope::Gateway);
    gauge(
        &mut out,
        "spinneret_rest_waiting",
        "Feeds waiting for their reply.",
        waiting,
    );
    for (name, up) in [("kafka", kafka), ("redis", redis)] {
        gauge(
            &mut out,
            &format!("spinneret_rest_{name}_connected"),
            &format!("1 when {name} answers."),
            u8::from(up),
        );
    }
    out
}

async fn health(State(gw): State<Arc<Gateway>>) -> Response {
    let (k, r) = (
        gw.kafka_up.load(Ordering::Relaxed),
        gw.redis_up.load(Ordering::Relaxed),
    );
    let node_health = match (k, r) {
        (true, true) => "GREEN",
        (false, false) => "RED",
        _ => "YELLOW",
    };
    gw.count("/", StatusCode::OK);
    Json(json!({
        "kafka_connected": k, "redis_connected": r,
        "uptime_sec": gw.started.elapsed().as_secs(), "my_id": gw.my_id,
        "node_health": node_health,
    }))
    .into_response()
}

/// The body as JSON, if it was sent as JSON.
fn json_body(headers: &HeaderMap, body: &[u8]) -> Option<(String, Value)> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let text = std::str::from_utf8(body).ok().filter(|_| is_json);
    text.and_then(|t| {
        serde_json::from_str::<Value>(t)
            .ok()
            .map(|v| (t.to_string(), v))
    })
}

async fn feed(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let r = feed_inner(&gw, &headers, &body).await;
    gw.count("/feed", r.status());
    r
}

async fn feed_inner(gw: &Arc<Gateway>, headers: &HeaderMap, body: &[u8]) -> Response {
    let Some((text, value)) = json_body(headers, body) else {
        return fail(StatusCode::BAD_REQUEST, NOT_JSON, None);
    };
    if let Err(reason) = classify(&text, gw.settings.crawl.maxdepth_limit) {
        return fail(StatusCode::BAD_REQUEST, INVALID, Some(reason.0));
    }
    let uuid = value
        .get("uuid")
        .and_then(Value::as_str)
        .map(str::to_string);
    // Wait before sending, so a quick reply cannot slip past.
    let me = gw.next_waiter.fetch_add(1, Ordering::Relaxed);
    let rx = uuid.as_ref().map(|u| {
        let (tx, rx) = oneshot::channel();
        gw.waiters
            .lock()
            .entry(u.clone())
            .or_default()
            .push((me, tx));
        rx
    });
    let limit = timeouts::FEED_SEND;
    let topic = &gw.settings.kafka.incoming_topic;
    if let Err(e) = gw.bus.send_within(topic, "", text.as_bytes(), limit).await {
        if let Some(u) = &uuid {
            gw.forget_waiter(u, me);
        }
        return fail(
            StatusCode::INTERNAL_SERVER_ERROR,
            NO_KAFKA,
            Some(e.to_string()),
        );
    }
    let (Some(uuid), Some(rx)) = (uuid, rx) else {
        return envelope(StatusCode::OK, Value::Null, None);
    };
    let wait = gw.settings.rest.feed_wait;
    match tokio::time::timeout(wait, rx).await {
        Ok(Ok(reply)) => envelope(StatusCode::OK, reply, None),
        _ => {
            // From now on a reply goes to Redis for /poll.
            gw.forget_waiter(&uuid, me);
            envelope(StatusCode::OK, json!({"poll_id": uuid}), None)
        }
    }
}

async fn poll(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let r = poll_inner(&gw, &headers, &body).await;
    gw.count("/poll", r.status());
    r
}

async fn poll_inner(gw: &Arc<Gateway>, headers: &HeaderMap, body: &[u8]) -> Response {
    let Some((_, value)) = json_body(headers, body) else {
        return fail(StatusCode::BAD_REQUEST, NOT_JSON, None);
    };
    let id = match value.as_object() {
        Some(o) if o.len() == 1 => o.get("poll_id").and_then(Value::as_str),
        _ => None,
    };
    let Some(id) = id.filter(|i| (1..=40).contains(&i.chars().count())) else {
        return fail(
            StatusCode::BAD_REQUEST,
            INVALID,
            Some(
                "a poll request is {\"poll_id\": \"<uuid of the fed request, 1-40 chars>\"}".into(),
            ),
        );
    };
    match gw.store.reply_take(id).await {
        Ok(Some(text)) => match serde_json::from_str::<Value>(&text) {
            Ok(reply) => envelope(StatusCode::OK, reply, None),
            Err(_) => fail(StatusCode::INTERNAL_SERVER_ERROR, UNEXPECTED, None),
        },
        Ok(None) => fail(StatusCode::NOT_FOUND, NO_POLL, None),
        Err(e) => fail(
            StatusCode::INTERNAL_SERVER_ERROR,
            NO_REDIS,
            Some(e.to_string()),
        ),
    }
}

async fn openapi(State(gw): State<Arc<Gateway>>) -> Response {
    gw.count("/openapi.json", StatusCode::OK);
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn metrics(State(gw): State<Arc<Gateway>>) -> Response {
    gw.count("/metrics", StatusCode::OK);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        gw.render_metrics(),
    )
        .into_response()
}

/// The status page: static HTML that polls `/api/status`.
async fn ui(State(gw): State<Arc<Gateway>>) -> Response {
    gw.count("/ui", StatusCode::OK);
    axum::response::Html(include_str!("ui.html")).into_response()
}

/// An origin holding a crawl back: its pause, the rate it allows (the
/// slowest of its learned rate, Crawl-delay and adaptive spacing), its
/// slow-downs.
fn held_back_json(h: &crate::monitor::store::HeldBack) -> serde_json::Value {
    let tenth = |x: f64| (x * 10.0).round() / 10.0;
    json!({"origin": h.origin, "queued": h.queued,
           "paused_for": h.pace.paused_for.map(|d| tenth(d.as_secs_f64())),
           "rate": h.pace.per_sec().map(tenth), "learned_rate": h.pace.rate.map(tenth),
           "slow_downs": h.pace.slow_downs})
}

/// The status page's document (without the rate and time).
fn status_json(st: crate::monitor::store::Status) -> serde_json::Value {
    let crawls: Vec<serde_json::Value> = st
        .crawls
        .into_iter()
        .map(|c| {
            let now_minute = crate::result::now_unix().div_euclid(60);
            // Pages per minute over the last ten, oldest first, for the chart.
            let minutes: Vec<u64> = (now_minute - 9..=now_minute)
                .map(|m| c.figures.minutes.get(&m).copied().unwrap_or(0))
                .collect();
            let mut v = json!({"appid": c.appid, "crawlid": c.crawlid, "spiderid": c.spiderid,
                   "queued": c.queued, "in_flight": c.in_flight, "crawled": c.crawled,
                   "done": c.queued == 0 && c.in_flight == 0,
                   "stats": c.figures.stats, "pages_per_minute": minutes, "events": c.events,
                   "held_back": c.held_back.iter().map(held_back_json).collect::<Vec<_>>()});
            if let Some(row) = &c.schedule {
                v["schedule"] = crate::monitor::info::schedule_json(row);
            }
            v
        })
        .collect();
    let workers: Vec<serde_json::Value> = st
        .workers
        .into_iter()
        .map(|w| {
            json!({"id": w.id, "heartbeat_age_ms": w.heartbeat_age_ms,
                   "spiders": w.spiders, "plugins": w.plugins, "render": w.render})
        })
        .collect();
    let secs = |d: std::time::Duration| (d.as_secs_f64() * 10.0).round() / 10.0;
    let sites = json!({
        "paused": st.sites.paused,
        "paused_for": st.sites.paused_for.iter()
            .map(|(d, left)| json!({"domain": d, "seconds": secs(*left)})).collect::<Vec<_>>(),
        "adaptive": st.sites.adaptive.iter()
            .map(|(d, gap)| json!({"domain": d, "rate": (1.0 / gap.as_secs_f64().max(0.001) * 10.0).round() / 10.0}))
            .collect::<Vec<_>>(),
        "learned": st.sites.learned.iter()
            .map(|(d, rate, cuts)| json!({"domain": d, "rate": (rate * 10.0).round() / 10.0, "slow_downs": cuts}))
            .collect::<Vec<_>>(),
    });
    json!({"crawls": crawls, "workers": workers, "pages_total": st.pages_total,
           "queues": crate::monitor::stats::queues_json(&st.queues), "sites": sites})
}

/// What the status page shows, in one JSON document (no envelope).
async fn status(State(gw): State<Arc<Gateway>>) -> Response {
    let r = match gw.store.status(50).await {
        Ok(st) => {
            let mut s = status_json(st);
            let rate = {
                let p = gw.pages.lock();
                match (p.front(), p.back()) {
                    (Some(a), Some(b)) if b.0 > a.0 => {
                        (b.1 - a.1) as f64 / (b.0 - a.0).as_secs_f64()
                    }
                    _ => 0.0,
                }
            };
            s["pages_per_sec"] = json!((rate * 10.0).round() / 10.0);
            s["server_time"] = json!(crate::result::now_unix());
            Json(s).into_response()
        }
        Err(e) => fail(
            StatusCode::INTERNAL_SERVER_ERROR,
            NO_REDIS,
            Some(e.to_string()),
        ),
    };
    gw.count("/api/status", r.status());
    r
}

/// A crawl's latest events, the newest first (`?appid=&crawlid=`, and
/// `limit`, at most 50): what a client that was not listening missed.
async fn events(
    State(gw): State<Arc<Gateway>>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    let field = |k: &str| {
        q.get(k)
            .filter(|v| (1..=40).contains(&v.chars().count()))
            .cloned()
    };
    let limit = q.get("limit").map_or(Ok(50), |l| l.parse::<usize>());
    let r = match (field("appid"), field("crawlid"), limit) {
        (Some(appid), Some(crawlid), Ok(n)) => {
            let key = crate::request::CrawlKey { appid, crawlid };
            match gw.store.recent_events(&key, n).await {
                Ok(events) => Json(json!({"appid": key.appid, "crawlid": key.crawlid,
                                          "events": events}))
                .into_response(),
                Err(e) => fail(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    NO_REDIS,
                    Some(e.to_string()),
                ),
            }
        }
        _ => fail(
            StatusCode::BAD_REQUEST,
            INVALID,
            Some("give ?appid=&crawlid= (1-40 chars each) and optionally limit=N".into()),
        ),
    };
    gw.count("/api/events", r.status());
    r
}

async fn no_route(State(gw): State<Arc<Gateway>>) -> Response {
    gw.count("(none)", StatusCode::NOT_FOUND);
    fail(StatusCode::NOT_FOUND, NO_ROUTE, None)
}

#[cfg(test)]
mod tests {
    use super::metrics_text;
    use crate::telemetry::{Event, Stats};

    /// The text is what the gateway's `/metrics` showed before its counters
    /// became events (names, labels, order).
    #[test]
    fn the_gateway_families_are_unchanged() {
        let s = Stats::default();
        for (route, status, n) in [
            ("/feed", 400, 3),
            ("/feed", 200, 1),
            ("/metrics", 200, 1),
            ("(none)", 404, 2),
            ("/", 200, 1),
        ] {
            for _ in 0..n {
                s.emit(Event::RestAnswered { route, status });
            }
        }
        for _ in 0..5 {
            s.emit(Event::RestReplyRead);
        }
        // Not the gateway's.
        s.emit(Event::Paused { status: 429 });
        assert_eq!(
            metrics_text(&s, 2, true, false),
            include_str!("../telemetry/testdata/gateway.prom")
        );
    }
}
