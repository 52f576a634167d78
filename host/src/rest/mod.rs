//! The REST gateway (`spinneret rest`, contract §5): health, `/feed` (with
//! a wait for the reply by uuid), `/poll`, the OpenAPI document and
//! `/metrics`. Replies are read from `outbound_firehose` by a consumer of
//! this gateway's own; a `/feed` waiting for one gets it through a oneshot
//! channel, and a reply nobody waits for is kept in Redis for `/poll`.

use crate::bus::kafka::{client_config, KafkaBus};
use crate::config::Settings;
use crate::monitor::store::MonitorStore;
use crate::shutdown::Shutdown;
use crate::telemetry::{Event, Stats};
use crate::timeouts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use parking_lot::Mutex;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::oneshot;

mod guard;
mod routes;

pub use routes::OPENAPI;

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
                .ok_or_else(|| anyhow::anyhow!("the broker tells nothing of topic {topic}"))?
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
    let header_timeout = rest.header_timeout;
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

/// The envelope of every response but `GET /`.
pub(super) fn envelope(
    status: StatusCode,
    data: Value,
    error: Option<(&str, Option<String>)>,
) -> Response {
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

pub(super) fn fail(status: StatusCode, message: &str, cause: Option<String>) -> Response {
    envelope(status, Value::Null, Some((message, cause)))
}
