//! The Kafka side of the cluster: one idempotent producer (`acks=all`) per
//! process for results, replies and dead letters, topic creation, and the
//! consumer settings the monitors and `dump` share. Sends retry until the
//! broker acknowledges them, so a broker outage delays work but loses none.

use super::{fit, ResultSink, SinkError};
use crate::backoff::Backoff;
use crate::config;
use crate::objects::Objects;
use crate::result::CrawlResult;
use crate::timeouts;
use async_trait::async_trait;
use parking_lot::Mutex;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use rdkafka::ClientConfig;
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum BusError {
    #[error("cannot start a Kafka client for {brokers}: {source}")]
    Client { brokers: String, source: KafkaError },
    #[error("cannot create Kafka topic {topic}: {reason}")]
    Topic { topic: String, reason: String },
    #[error("message of {size} bytes for {topic} is over the broker's limit")]
    TooLarge { topic: String, size: usize },
    #[error("Kafka did not acknowledge within {0:?}")]
    Timeout(Duration),
}

/// Client settings every Kafka client of ours starts from.
pub fn client_config(cfg: &config::Kafka) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers)
        .set("client.id", "spinneret")
        // Reconnect quickly after a broker restart, but do not hammer it.
        .set("reconnect.backoff.ms", "100")
        .set("reconnect.backoff.max.ms", "2000")
        .set("topic.metadata.refresh.interval.ms", "5000")
        .set("log_level", "3");
    c
}

/// A Kafka topic name from arbitrary text (an appid): invalid characters
/// become `_`.
pub fn topic_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

pub struct KafkaBus {
    /// Rebuilt after a failed send: an idempotent producer can stay wedged
    /// after a broker restart that forgot its producer id.
    producer: parking_lot::RwLock<(FutureProducer, std::time::Instant)>,
    admin: AdminClient<DefaultClientContext>,
    pub cfg: config::Kafka,
    /// Topics known to exist (created or found), so each is created once.
    known: Mutex<HashSet<String>>,
    /// Whether the producer is idempotent (see [`KafkaBus::connect_once`]).
    idempotent: bool,
}

impl KafkaBus {
    /// A bus for a long-running role: an idempotent producer, so a retried
    /// batch never writes a result twice.
    pub fn connect(cfg: &config::Kafka) -> Result<Arc<KafkaBus>, BusError> {
        Self::connect_with(cfg, true)
    }

    /// A bus for a one-shot command (`spinneret feed`). An idempotent
    /// producer spends its first second getting a producer id (two 500 ms
    /// timers in librdkafka), which would be most of the command's time.
    /// Without it a send retried after a lost acknowledgement may be
    /// written twice: a request sent twice, which ingest treats as a
    /// resubmission of the same crawl.
    pub fn connect_once(cfg: &config::Kafka) -> Result<Arc<KafkaBus>, BusError> {
        Self::connect_with(cfg, false)
    }

    fn connect_with(cfg: &config::Kafka, idempotent: bool) -> Result<Arc<KafkaBus>, BusError> {
        let err = |source| BusError::Client {
            brokers: cfg.brokers.clone(),
            source,
        };
        let producer = Self::producer(cfg, idempotent).map_err(err)?;
        let admin = client_config(cfg).create().map_err(err)?;
        Ok(Arc::new(KafkaBus {
            producer: parking_lot::RwLock::new((producer, std::time::Instant::now())),
            admin,
            cfg: cfg.clone(),
            known: Mutex::new(HashSet::new()),
            idempotent,
        }))
    }

    fn producer(cfg: &config::Kafka, idempotent: bool) -> Result<FutureProducer, KafkaError> {
        client_config(cfg)
            .set("enable.idempotence", idempotent.to_string())
            .set("acks", "all")
            .set("compression.type", &cfg.compression)
            .set("linger.ms", cfg.linger_ms.to_string())
            // Give up on one attempt after 10 s; `send` then tries again.
            .set("message.timeout.ms", "10000")
            .set(
                "message.max.bytes",
                (cfg.max_message_bytes + 64 * 1024)
                    .max(1_000_000)
                    .to_string(),
            )
            .create()
    }

    /// Start a fresh producer (at most every 5 s), for after a failed send.
    fn renew_producer(&self) {
        let mut p = self.producer.write();
        if p.1.elapsed() < timeouts::PRODUCER_RENEW_EVERY {
            return;
        }
        match Self::producer(&self.cfg, self.idempotent) {
            Ok(fresh) => {
                tracing::info!("Kafka producer restarted after a failed send");
                *p = (fresh, std::time::Instant::now());
            }
            Err(e) => tracing::warn!(error = %e, "cannot restart the Kafka producer"),
        }
    }

    /// `<prefix>.<suffix>`.
    pub fn topic(&self, suffix: &str) -> String {
        format!("{}.{suffix}", self.cfg.topic_prefix)
    }

    /// The topics every role uses, created if missing.
    pub fn standard_topics(&self) -> Vec<String> {
        vec![
            self.cfg.incoming_topic.clone(),
            self.topic(CRAWLED.0),
            self.topic(ITEMS.0),
            self.topic(OUTBOUND.0),
            self.topic("errors"),
        ]
    }

    /// Create the topics that do not exist yet (with `kafka.partitions`),
    /// retrying while the broker is unreachable.
    pub async fn ensure_topics(&self, names: &[String]) -> Result<(), BusError> {
        let missing: Vec<&String> = {
            let known = self.known.lock();
            names.iter().filter(|n| !known.contains(*n)).collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        let new: Vec<NewTopic> = missing
            .iter()
            .map(|n| {
                NewTopic::new(
                    n,
                    self.cfg.partitions,
                    TopicReplication::Fixed(self.cfg.replication),
                )
            })
            .collect();
        let opts = AdminOptions::new().operation_timeout(Some(timeouts::KAFKA_ADMIN));
        let mut backoff = Backoff::standard();
        loop {
            match self.admin.create_topics(&new, &opts).await {
                Ok(results) => {
                    for r in results {
                        match r {
                            Ok(name) => {
                                self.known.lock().insert(name);
                            }
                            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                                self.known.lock().insert(name);
                            }
                            Err((topic, code)) => {
                                return Err(BusError::Topic {
                                    topic,
                                    reason: code.to_string(),
                                })
                            }
                        }
                    }
                    return Ok(());
                }
                Err(e) => {
                    let wait = backoff.next_delay();
                    tracing::warn!(brokers = %self.cfg.brokers, error = %e, retry_in = ?wait, "Kafka unreachable while creating topics, retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Forget that topics exist (after the broker lost them), so the next
    /// send creates them again.
    fn forget(&self, topic: &str) {
        self.known.lock().remove(topic);
    }

    /// Send one message and wait for the broker's acknowledgement. Retries
    /// (with a log line) until it is acknowledged; only a message the broker
    /// can never take (too large) is an error.
    pub async fn send(&self, topic: &str, key: &str, payload: &[u8]) -> Result<(), BusError> {
        self.send_with(topic, key, payload, &[]).await
    }

    /// [`Self::send`] with message headers.
    pub async fn send_with(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
        headers: &[(&str, String)],
    ) -> Result<(), BusError> {
        let mut backoff = Backoff::standard();
        loop {
            let mut record = FutureRecord::to(topic).key(key).payload(payload);
            if !headers.is_empty() {
                let h = headers.iter().fold(OwnedHeaders::new(), |h, (k, v)| {
                    h.insert(Header {
                        key: k,
                        value: Some(v.as_str()),
                    })
                });
                record = record.headers(h);
            }
            let producer = self.producer.read().0.clone();
            match producer.send(record, Timeout::Never).await {
                Ok(_) => return Ok(()),
                Err((
                    KafkaError::MessageProduction(
                        RDKafkaErrorCode::MessageSizeTooLarge
                        | RDKafkaErrorCode::InvalidMessageSize,
                    ),
                    _,
                )) => {
                    return Err(BusError::TooLarge {
                        topic: topic.into(),
                        size: payload.len(),
                    })
                }
                Err((e, _)) => {
                    if matches!(
                        e,
                        KafkaError::MessageProduction(
                            RDKafkaErrorCode::UnknownTopicOrPartition
                                | RDKafkaErrorCode::UnknownTopic
                        )
                    ) {
                        self.forget(topic);
                        self.ensure_topics(&[topic.to_string()]).await?;
                    }
                    let wait = backoff.next_delay();
                    tracing::warn!(%topic, error = %e, retry_in = ?wait, "Kafka did not acknowledge a message, retrying");
                    self.renew_producer();
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Send a JSON object (keys sorted) to the topic every app shares
    /// (`<prefix>.<shared>`) and, with `appid_topics`, to its per-app twin
    /// (`<prefix>.<per_app>_<appid>`). The shared copy is what the contract
    /// guarantees, so its outcome is the result; a per-app copy that cannot
    /// be sent (its topic cannot be created) comes back as the topic and
    /// why, for the caller to dead-letter.
    async fn send_fanned(
        &self,
        (shared, per_app): (&str, &str),
        key: &str,
        appid: Option<&str>,
        payload: &[u8],
    ) -> (Result<(), BusError>, Option<(String, BusError)>) {
        let firehose = self.topic(shared);
        let per_app = async {
            let app = appid.filter(|_| self.cfg.appid_topics)?;
            let topic = self.topic(&format!("{per_app}_{}", topic_safe(app)));
            let sent = async {
                self.ensure_topics(std::slice::from_ref(&topic)).await?;
                self.send(&topic, key, payload).await
            };
            sent.await.err().map(|e| (topic, e))
        };
        tokio::join!(self.send(&firehose, key, payload), per_app)
    }

    /// A control-plane reply on `outbound_firehose` (and `outbound_<appid>`),
    /// keyed by its uuid. One too large for the topic is replaced by an
    /// error reply.
    pub async fn reply(&self, reply: &Map<String, Value>) -> Result<(), BusError> {
        let payload = fit::fit_reply(reply, self.cfg.max_message_bytes);
        let key = reply.get("uuid").and_then(Value::as_str).unwrap_or("");
        let appid = reply.get("appid").and_then(Value::as_str);
        let (sent, per_app) = self.send_fanned(OUTBOUND, key, appid, &payload).await;
        if let Some((topic, e)) = per_app {
            let letter = serde_json::json!({
                "error": format!("per-app copy not delivered to {topic}: {e}"),
                "payload": String::from_utf8_lossy(&payload),
                "topic": topic,
                "server_time": crate::result::now_unix(),
            });
            self.dead_letter(&letter).await?;
        }
        sent
    }

    /// A lifecycle event on `<prefix>.events` (and, with `appid_topics`,
    /// `<prefix>.events_<appid>`), keyed by its crawl, with CloudEvents
    /// binary-mode headers; its JSON is what existing consumers read.
    pub async fn event(&self, event: &crate::events::Event) -> Result<(), BusError> {
        let headers = event.cloudevents(&self.cfg.topic_prefix);
        let (payload, key) = (event.json(), format!("{}/{}", event.appid, event.crawlid));
        let mut topics = vec![self.topic("events")];
        if self.cfg.appid_topics {
            topics.push(self.topic(&format!("events_{}", topic_safe(&event.appid))));
        }
        for topic in &topics {
            self.ensure_topics(std::slice::from_ref(topic)).await?;
            self.send_with(topic, &key, &payload, &headers).await?;
        }
        Ok(())
    }

    /// A rejected input on `<prefix>.errors` (contract §2.5).
    pub async fn dead_letter(&self, letter: &Value) -> Result<(), BusError> {
        let payload = serde_json::to_vec(letter).expect("a JSON value serialises");
        self.send(&self.topic("errors"), "", &payload).await
    }

    /// [`Self::send`], giving up after `limit` (the REST gateway answers
    /// its client instead of waiting for the broker forever).
    pub async fn send_within(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
        limit: Duration,
    ) -> Result<(), BusError> {
        tokio::time::timeout(limit, self.send(topic, key, payload))
            .await
            .map_err(|_| BusError::Timeout(limit))?
    }

    /// Does a broker answer a metadata request within a second?
    pub async fn connected(&self) -> bool {
        let producer = self.producer.read().0.clone();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, timeouts::KAFKA_PROBE)
                .is_ok()
        })
        .await
        .unwrap_or(false)
    }

    /// Produce raw text to the incoming topic (`spinneret feed`).
    pub async fn feed(&self, text: &str) -> Result<(), BusError> {
        self.send(&self.cfg.incoming_topic, "", text.as_bytes())
            .await
    }

    pub fn flush(&self) {
        let producer = self.producer.read().0.clone();
        if let Err(e) = producer.flush(Timeout::After(timeouts::KAFKA_FLUSH)) {
            tracing::warn!(error = %e, "Kafka producer flush failed");
        }
    }
}

/// The topics of each kind of message (shared, per-app prefix).
const CRAWLED: (&str, &str) = ("crawled_firehose", "crawled");
const ITEMS: (&str, &str) = ("items", "items");
const OUTBOUND: (&str, &str) = ("outbound_firehose", "outbound");

/// Crawl results on `crawled_firehose` (and `crawled_<appid>`), and
/// spiders' data records on `items` (and `items_<appid>`), keyed by
/// crawlid. A result too large for a message has its body stored in the
/// object store when there is one (`body_ref` in its place); without one
/// it is sent without its body and with an `error`. One too large even
/// so, or a per-app copy whose topic cannot exist, is a dead letter on
/// `<prefix>.errors`: never silently dropped.
pub struct KafkaSink {
    bus: Arc<KafkaBus>,
    base64_body: bool,
    objects: Option<Arc<Objects>>,
    /// A body was dropped for want of a store: said once.
    told: std::sync::atomic::AtomicBool,
}

impl KafkaSink {
    pub fn new(bus: Arc<KafkaBus>, base64_body: bool, objects: Option<Arc<Objects>>) -> KafkaSink {
        KafkaSink {
            bus,
            base64_body,
            objects,
            told: false.into(),
        }
    }

    /// A data record's message: it has no body to leave out, so one too
    /// large for a message can never be sent.
    fn record(&self, record: &CrawlResult) -> Result<Vec<u8>, SinkError> {
        let (out, limit) = (record.json(false).to_vec(), self.bus.cfg.max_message_bytes);
        if out.len() > limit {
            return Err(SinkError::Undeliverable(format!(
                "a record of {} bytes is larger than kafka.max_message_bytes ({limit})",
                out.len()
            )));
        }
        Ok(out)
    }

    /// The message for `result`: by claim check when its body makes it too
    /// large and a store is there to take the body.
    async fn payload(&self, result: &CrawlResult) -> Result<Vec<u8>, SinkError> {
        let limit = self.bus.cfg.max_message_bytes;
        let mut json = result.json(self.base64_body);
        let full = json.to_vec();
        let body = result
            .fetched
            .as_ref()
            .filter(|f| !f.body.is_empty() && !result.fields.contains_key("body"));
        let (Some(objects), Some(fetched)) = (&self.objects, body) else {
            if full.len() > limit && !self.told.swap(true, std::sync::atomic::Ordering::Relaxed) {
                tracing::warn!(bytes = full.len(), limit, "a result too large for kafka.max_message_bytes goes out without its body: set output.objects.url to keep bodies of any size");
            }
            return fit::shrink(json, full, limit).map_err(SinkError::Undeliverable);
        };
        if full.len() <= objects.offload_bytes.min(limit) {
            return Ok(full);
        }
        let content_type = fetched
            .header("content-type")
            .unwrap_or("application/octet-stream");
        let stored = objects
            .put_body(&result.appid, &fetched.body, content_type)
            .await
            .map_err(|e| SinkError::Unavailable(e.to_string()))?;
        json.offload(&stored);
        let out = json.to_vec();
        if out.len() <= limit {
            return Ok(out);
        }
        let what = "body stored (body_ref), headers, links and attrs dropped";
        fit::without_extras(json, full.len(), limit, what).map_err(SinkError::Undeliverable)
    }
}

fn undeliverable(e: BusError) -> SinkError {
    SinkError::Undeliverable(e.to_string())
}

#[async_trait]
impl crate::events::EventSink for KafkaBus {
    async fn send(&self, event: &crate::events::Event) -> std::io::Result<()> {
        self.event(event).await.map_err(std::io::Error::other)
    }
}

#[async_trait]
impl ResultSink for KafkaSink {
    async fn publish(&self, result: &CrawlResult) -> Result<(), SinkError> {
        let (payload, topics) = match result.record {
            true => (self.record(result)?, ITEMS),
            false => (self.payload(result).await?, CRAWLED),
        };
        let (sent, per_app) = self
            .bus
            .send_fanned(topics, &result.crawlid, Some(&result.appid), &payload)
            .await;
        if let Some((topic, e)) = per_app {
            self.undeliverable(
                result,
                &format!("per-app copy not delivered to {topic}: {e}"),
            )
            .await?;
        }
        sent.map_err(undeliverable)
    }

    async fn undeliverable(&self, result: &CrawlResult, reason: &str) -> Result<(), SinkError> {
        let letter = serde_json::json!({
            "error": reason,
            "result": result.summary(),
            "topic": self.bus.topic(if result.record { ITEMS.0 } else { CRAWLED.0 }),
            "server_time": crate::result::now_unix(),
        });
        self.bus.dead_letter(&letter).await.map_err(undeliverable)
    }

    async fn flush(&self) -> Result<(), SinkError> {
        self.bus.flush();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appids_become_topic_names() {
        assert_eq!(topic_safe("my app/1"), "my_app_1");
        assert_eq!(topic_safe("ok.app-1_x"), "ok.app-1_x");
    }
}
