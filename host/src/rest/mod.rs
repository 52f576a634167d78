//! The REST gateway (`spinneret rest`, contract §5): health, `/feed` (with
//! a wait for the reply by uuid), `/poll`, the OpenAPI document and
//! `/metrics`. Replies are read from `outbound_firehose` by a consumer of
//! this gateway's own; a `/feed` waiting for one gets it through a oneshot
//! channel, and a reply nobody waits for is kept in Redis for `/poll`.

use crate::bus::kafka::{client_config, KafkaBus};
use crate::config::Settings;
use crate::monitor::schema::classify;
use crate::monitor::store::MonitorStore;
use crate::shutdown::Shutdown;
use crate::telemetry::prometheus::{counters, gauge, Scope};
use crate::telemetry::{Event, Stats};
use crate::timeouts;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use parking_lot::Mutex;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
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

pub struct Gateway {
    bus: Arc<KafkaBus>,
    store: MonitorStore,
    settings: Arc<Settings>,
    /// `/feed` calls waiting for a reply, by uuid; several may wait on one.
    waiters: Mutex<Waiters>,
    next_waiter: std::sync::atomic::AtomicU64,
    started: Instant,
    my_id: String,
    kafka_up: AtomicBool,
    redis_up: AtomicBool,
    /// Requests answered and replies read (for /metrics).
    stats: Arc<Stats>,
    /// Pages crawled by the cluster, sampled each second for a rate.
    pages: Mutex<std::collections::VecDeque<(Instant, i64)>>,
}

/// The envelope of every response but `GET /`.
fn envelope(status: StatusCode, data: Value, error: Option<(&str, Option<String>)>) -> Response {
    let error = match error {
        None => Value::Null,
        Some((message, None)) => json!({"message": message}),
        Some((message, Some(cause))) => json!({"message": message, "cause": cause}),
    };
    let ok = error.is_null();
    let body =
        json!({"status": if ok { "SUCCESS" } else { "FAILURE" }, "data": data, "error": error});
    (status, Json(body)).into_response()
}

fn fail(status: StatusCode, message: &str, cause: Option<String>) -> Response {
    envelope(status, Value::Null, Some((message, cause)))
}

/// `/feed` calls waiting for a reply: uuid -> (feed id, channel).
type Waiters = HashMap<String, Vec<(u64, oneshot::Sender<Value>)>>;

impl Gateway {
    /// Stop waiting on `uuid` for this feed (`me`) only.
    fn forget_waiter(&self, uuid: &str, me: u64) {
        let mut waiters = self.waiters.lock();
        if let Some(list) = waiters.get_mut(uuid) {
            list.retain(|(id, _)| *id != me);
            if list.is_empty() {
                waiters.remove(uuid);
            }
        }
    }

    pub async fn start(
        settings: Arc<Settings>,
        bus: Arc<KafkaBus>,
        store: MonitorStore,
        stats: Arc<Stats>,
    ) -> anyhow::Result<Arc<Gateway>> {
        // The id its heartbeat lists it under in `rest` stats (`host:pid`,
        // every role's scheme), so a client can match the two.
        let my_id = store.machine().to_string();
        let gw = Arc::new(Gateway {
            bus,
            store,
            my_id,
            settings,
            waiters: Mutex::new(HashMap::new()),
            next_waiter: std::sync::atomic::AtomicU64::new(0),
            started: Instant::now(),
            kafka_up: AtomicBool::new(false),
            redis_up: AtomicBool::new(false),
            stats,
            pages: Mutex::new(std::collections::VecDeque::new()),
        });
        let consumer = gw.reply_consumer().await?;
        let me = gw.clone();
        tokio::spawn(async move { me.read_replies(consumer).await });
        let me = gw.clone();
        tokio::spawn(async move { me.watch_health().await });
        Ok(gw)
    }

    /// A consumer of `outbound_firehose` from its end, on every partition,
    /// with no group (each gateway sees every reply, with no rebalance).
    async fn reply_consumer(&self) -> anyhow::Result<StreamConsumer> {
        let topic = self.bus.topic("outbound_firehose");
        self.bus.ensure_topics(std::slice::from_ref(&topic)).await?;
        let consumer: StreamConsumer = client_config(&self.settings.kafka)
            .set("group.id", format!("spinneret-rest-{}", self.my_id))
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", "20")
            .create()?;
        let parts = {
            let c = &consumer;
            let t = topic.clone();
            tokio::task::block_in_place(|| c.fetch_metadata(Some(&t), timeouts::KAFKA_METADATA))?
                .topics()
                .first()
                .map(|t| t.partitions().len())
                .unwrap_or(0)
        };
        let mut tpl = TopicPartitionList::new();
        for p in 0..parts as i32 {
            tpl.add_partition_offset(&topic, p, Offset::End)?;
        }
        consumer.assign(&tpl)?;
        Ok(consumer)
    }

    async fn read_replies(self: Arc<Self>, consumer: StreamConsumer) {
        loop {
            let m = match consumer.recv().await {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "reading replies failed, retrying");
                    tokio::time::sleep(timeouts::CONSUMER_RETRY).await;
                    continue;
                }
            };
            let Ok(reply) = serde_json::from_slice::<Value>(m.payload().unwrap_or_default()) else {
                continue;
            };
            let Some(uuid) = reply
                .get("uuid")
                .and_then(Value::as_str)
                .map(str::to_string)
            else {
                continue;
            };
            self.stats.emit(Event::RestReplyRead);
            let waiting = self.waiters.lock().remove(&uuid).unwrap_or_default();
            // Every feed waiting on this uuid gets the reply; if none
            // could take it, it is kept for /poll.
            let mut taken = false;
            for (_, tx) in waiting {
                taken |= tx.send(reply.clone()).is_ok();
            }
            let unclaimed = (!taken).then_some(reply);
            if let Some(reply) = unclaimed {
                let ttl = self.settings.rest.poll_ttl;
                if let Err(e) = self.store.reply_put(&uuid, &reply.to_string(), ttl).await {
                    tracing::warn!(%uuid, error = %e, "cannot keep a reply for /poll");
                }
            }
        }
    }

    async fn watch_health(self: Arc<Self>) {
        loop {
            let (k, r) = tokio::join!(self.bus.connected(), self.store.ping());
            self.kafka_up.store(k, Ordering::Relaxed);
            self.redis_up.store(r, Ordering::Relaxed);
            if let Err(e) = self.store.heartbeat("rest").await {
                tracing::debug!(error = %e, "rest heartbeat failed");
            }
            if let Ok(n) = self.store.pages_total().await {
                let mut p = self.pages.lock();
                p.push_back((Instant::now(), n));
                while p.len() > 6 {
                    p.pop_front();
                }
            }
            tokio::time::sleep(timeouts::PROGRESS_EVERY).await;
        }
    }

    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/", get(health))
            .route("/feed", post(feed))
            .route("/poll", post(poll))
            .route("/openapi.json", get(openapi))
            .route("/metrics", get(metrics))
            .route("/ui", get(ui))
            .route("/api/status", get(status))
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

/// Bearer-token check (when `rest.token` is set); health and metrics stay
/// open for load balancers and scrapers. The token is compared in constant
/// time, and taken from `?token=` only for the status page (a browser
/// opening a link sends no header; anywhere else a token in a URL ends up
/// in proxy logs).
async fn guard(State(gw): State<Arc<Gateway>>, req: Request, next: Next) -> Response {
    let token = &gw.settings.rest.token;
    let open = matches!(req.uri().path(), "/" | "/metrics");
    if !token.is_empty() && !open {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_string)
            .or_else(|| {
                (req.uri().path() == "/ui")
                    .then(|| req.uri().query())
                    .flatten()
                    .and_then(|q| {
                        q.split('&')
                            .find_map(|kv| kv.strip_prefix("token=").map(str::to_string))
                    })
            });
        if !given.is_some_and(|g| same_secret(g.as_bytes(), token.as_bytes())) {
            return fail(
                StatusCode::UNAUTHORIZED,
                "A valid bearer token is required.",
                None,
            );
        }
    }
    // The body is read here, whole and in time: a client that drips it
    // cannot hold a connection slot past `rest.body_timeout`.
    let (parts, body) = req.into_parts();
    let within = Duration::from_secs_f64(gw.settings.rest.body_timeout);
    let bytes = match tokio::time::timeout(within, axum::body::to_bytes(body, MAX_BODY)).await {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => {
            return fail(
                StatusCode::PAYLOAD_TOO_LARGE,
                "The request body is over 2 MiB, or was cut off.",
                None,
            )
        }
        Err(_) => {
            let mut r = fail(
                StatusCode::REQUEST_TIMEOUT,
                "The request body did not arrive within rest.body_timeout.",
                None,
            );
            r.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
            return r;
        }
    };
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}

/// The largest request body the gateway reads (axum's own default limit).
const MAX_BODY: usize = 2 * 1024 * 1024;

/// Equal, in time that does not depend on where they differ.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
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
    let wait = Duration::from_secs_f64(gw.settings.rest.feed_wait);
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

/// The status page's document (without the rate and time).
fn status_json(st: crate::monitor::store::Status) -> serde_json::Value {
    let crawls: Vec<serde_json::Value> = st
        .crawls
        .into_iter()
        .map(|c| {
            json!({"appid": c.appid, "crawlid": c.crawlid, "spiderid": c.spiderid,
                   "queued": c.queued, "in_flight": c.in_flight, "crawled": c.crawled,
                   "done": c.queued == 0 && c.in_flight == 0})
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

async fn no_route(State(gw): State<Arc<Gateway>>) -> Response {
    gw.count("(none)", StatusCode::NOT_FOUND);
    fail(StatusCode::NOT_FOUND, NO_ROUTE, None)
}

/// Serve until `stop` is notified, on `rest.bind` (loopback unless
/// configured), at most `rest.max_connections` connections at once (more
/// are closed on accept), each given `rest.header_timeout` to send a
/// request's headers (a slow or idle client cannot hold a connection).
pub async fn serve(gw: Arc<Gateway>, port: u16, stop: Shutdown) -> anyhow::Result<()> {
    let rest = &gw.settings.rest;
    let bind = rest.bind.clone();
    let listener = tokio::net::TcpListener::bind((bind.as_str(), port))
        .await
        .map_err(|e| {
            anyhow::anyhow!("cannot listen on {bind}:{port} (rest.bind, rest.port): {e}")
        })?;
    tracing::info!(%bind, port, "REST gateway listening");
    let slots = Arc::new(tokio::sync::Semaphore::new(rest.max_connections));
    let header_timeout = Duration::from_secs_f64(rest.header_timeout);
    let router = gw.router();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(timeouts::CONSUMER_RETRY).await;
                    continue;
                }
            },
            _ = stop.wait() => return Ok(()),
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!("rest.max_connections reached; connection closed");
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let served = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                tracing::debug!(error = %e, "connection ended");
            }
            drop(slot);
        });
    }
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
        s.emit(Event::Paused);
        assert_eq!(
            metrics_text(&s, 2, true, false),
            include_str!("../telemetry/testdata/gateway.prom")
        );
    }
}
