//! The ingest monitor (`spinneret kafka-monitor`): consumes the incoming
//! topic in a consumer group, validates every message, queues crawls, hands
//! the other kinds to the control plane, and dead-letters the rest.
//!
//! No loss, no double handling: a batch is handled in one atomic Redis step
//! per partition that also advances the partition's watermark (highest
//! offset and message timestamp handled), and offsets are committed only
//! after that step (and after the dead letters were acknowledged). A
//! message delivered again (after a crash or a rebalance) is at or below
//! the watermark and skipped; a topic that starts over has newer messages,
//! which are not.

use super::extra_kinds::MonitorPlugins;
use super::schema::{classify, dead_letter, ActionKind, ActionRequest, Inbound, Origin, Rejection};
use super::ControlRequest;
use crate::backoff::Backoff;
use crate::bus::kafka::{client_config, KafkaBus};
use crate::config::Settings;
use crate::monitor::store::MonitorStore;
use crate::monitor::store::{IngestEntry, IngestOutcome, Ingested};
use crate::shutdown::Shutdown;
use crate::timeouts;
use futures::FutureExt;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

pub struct IngestMonitor {
    store: MonitorStore,
    stats: Arc<crate::telemetry::Stats>,
    bus: Arc<KafkaBus>,
    settings: Arc<Settings>,
    plugins: MonitorPlugins,
    /// Since when the store has been failing, if it is.
    down_since: parking_lot::Mutex<Option<Instant>>,
}

/// Logs the group's partition assignments (operators, and tests, read it).
struct GroupLog;

impl rdkafka::ClientContext for GroupLog {}

impl ConsumerContext for GroupLog {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let parts = |l: &rdkafka::TopicPartitionList| -> Vec<i32> {
            l.elements().iter().map(|e| e.partition()).collect()
        };
        match rebalance {
            Rebalance::Assign(l) => tracing::info!(partitions = ?parts(l), "partitions assigned"),
            Rebalance::Revoke(l) => tracing::info!(partitions = ?parts(l), "partitions revoked"),
            Rebalance::Error(e) => tracing::warn!(error = %e, "consumer group rebalance failed"),
        }
    }
}

/// A classified batch: entries by partition, in offset order.
type Prepared = BTreeMap<i32, Vec<IngestEntry>>;

/// How one message was classified.
struct Handled {
    partition: i32,
    entry: IngestEntry,
}

impl Handled {
    /// Message `m`, handled as `what` under stats name `name`.
    fn of(m: &OwnedMessage, name: String, what: Ingested) -> Handled {
        Handled {
            partition: m.partition(),
            entry: IngestEntry {
                offset: m.offset(),
                timestamp: m.timestamp().to_millis().unwrap_or(-1),
                name,
                what,
            },
        }
    }
}

impl IngestMonitor {
    pub fn new(
        store: MonitorStore,
        bus: Arc<KafkaBus>,
        settings: Arc<Settings>,
        plugins: MonitorPlugins,
        stats: Arc<crate::telemetry::Stats>,
    ) -> IngestMonitor {
        IngestMonitor {
            store,
            stats,
            bus,
            settings,
            plugins,
            down_since: parking_lot::Mutex::new(None),
        }
    }

    fn store_failed(&self) {
        self.down_since.lock().get_or_insert_with(Instant::now);
    }

    fn store_answered(&self) {
        *self.down_since.lock() = None;
    }

    /// Has the store been failing for `rest.feed_wait` or longer?
    fn down_too_long(&self) -> bool {
        let wait = self.settings.rest.feed_wait;
        self.down_since.lock().is_some_and(|t| t.elapsed() >= wait)
    }

    /// The store has failed for `rest.feed_wait`: the batch's domain-config
    /// requests are answered now with an error and taken out of the batch,
    /// so they are never applied later and the ack is true. A client is
    /// answered within seconds instead of hearing nothing while Redis is
    /// away; it sends the change again. The rest of the batch waits for
    /// the store: crawl requests are never dropped.
    async fn refuse_domain_configs(&self, entries: &mut [IngestEntry]) {
        for e in entries.iter_mut() {
            let Ingested::Control(json) = &e.what else {
                continue;
            };
            let Ok(ControlRequest::DomainConfig(d)) = serde_json::from_str(json) else {
                continue;
            };
            let error = "the change could not be stored: Redis is unreachable; it was not applied, send it again";
            let ack = super::domain_ack(&d, crate::result::now_unix(), Some(error.into()));
            match self.bus.reply(&ack).await {
                // Answered: it must not be applied when the store is back.
                Ok(()) => e.what = Ingested::Fail,
                Err(err) => {
                    tracing::warn!(error = %err, "could not send a domain-config error ack; the change stays queued")
                }
            }
        }
    }

    fn consumer(&self) -> anyhow::Result<StreamConsumer<GroupLog>> {
        let k = &self.settings.kafka;
        let consumer: StreamConsumer<GroupLog> = client_config(k)
            .set("group.id", &k.group)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", k.commit_interval_ms.to_string())
            // Offsets are stored by hand, after a batch is durably handled.
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            .set("fetch.wait.max.ms", "50")
            .create_with_context(GroupLog)?;
        consumer.subscribe(&[k.incoming_topic.as_str()])?;
        Ok(consumer)
    }

    /// Consume until `stop`; batches already read are stored and their
    /// offsets committed first.
    pub async fn run(&self, stop: Shutdown) -> anyhow::Result<()> {
        self.bus.ensure_topics(&self.bus.standard_topics()).await?;
        let consumer = self.consumer()?;
        tracing::info!(topic = %self.settings.kafka.incoming_topic, group = %self.settings.kafka.group, "ingest monitor consuming");
        // The reader classifies batch N+1 while the writer stores batch N:
        // Redis works while we parse. One writer keeps batches in order.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Prepared>(2);
        let reader = async {
            let mut backoff = Backoff::standard();
            let mut last_beat: Option<Instant> = None;
            let batch_max = self.settings.kafka.batch;
            loop {
                if last_beat.is_none_or(|t| t.elapsed() >= timeouts::UPKEEP) {
                    last_beat = Some(Instant::now());
                    match self.store.heartbeat("kafka-monitor").await {
                        Ok(()) => self.store_answered(),
                        Err(e) => {
                            self.store_failed();
                            tracing::warn!(error = %e, "heartbeat failed; retrying");
                        }
                    }
                }
                let first = tokio::select! {
                    m = consumer.recv() => m.map(|m| m.detach()),
                    _ = tokio::time::sleep(timeouts::UPKEEP) => continue,
                    _ = stop.wait() => break,
                };
                let first = match first {
                    Ok(m) => {
                        backoff.reset();
                        m
                    }
                    Err(e) => {
                        let wait = backoff.next_delay();
                        tracing::warn!(error = %e, retry_in = ?wait, "Kafka consumer error, retrying");
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                };
                // Take whatever else is already fetched, up to a batch.
                let mut batch = vec![first];
                while batch.len() < batch_max {
                    match consumer.recv().now_or_never() {
                        Some(Ok(m)) => batch.push(m.detach()),
                        _ => break,
                    }
                }
                let prepared = self.prepare(&batch).await;
                if tx.send(prepared).await.is_err() {
                    break;
                }
            }
            drop(tx);
        };
        let writer = async {
            while let Some(prepared) = rx.recv().await {
                for (partition, offset) in self.store_batch(prepared).await {
                    // Stores offset + 1: the next message to read.
                    if let Err(e) = consumer.store_offset(
                        &self.settings.kafka.incoming_topic,
                        partition,
                        offset,
                    ) {
                        tracing::debug!(partition, error = %e, "offset not stored (partition moved to another monitor); the watermark covers it");
                    }
                }
            }
        };
        tokio::join!(reader, writer);
        if let Err(e) = consumer.commit_consumer_state(rdkafka::consumer::CommitMode::Sync) {
            tracing::debug!(error = %e, "final offset commit skipped");
        }
        Ok(())
    }

    /// One message's text (borrowed unless it is not UTF-8: validated once)
    /// and what it is, a domain-config request only if its app may send one.
    fn classify_payload<'a>(
        &self,
        payload: &'a [u8],
    ) -> (std::borrow::Cow<'a, str>, Result<Inbound, Rejection>) {
        match std::str::from_utf8(payload) {
            Ok(t) => (
                std::borrow::Cow::Borrowed(t),
                classify(t, self.settings.crawl.maxdepth_limit).and_then(|i| match i {
                    Inbound::DomainConfig(d) => {
                        d.permitted(&self.settings.throttle)?;
                        Ok(Inbound::DomainConfig(d))
                    }
                    other => Ok(other),
                }),
            ),
            Err(e) => (
                String::from_utf8_lossy(payload),
                Err(Rejection(format!("not UTF-8: {e}"))),
            ),
        }
    }

    /// Classify a batch and dead-letter its rejects (acknowledged by the
    /// broker before the batch is stored, so before its offsets are).
    async fn prepare(&self, batch: &[OwnedMessage]) -> Prepared {
        let mut handled = Vec::with_capacity(batch.len());
        let mut letters = Vec::new();
        for m in batch {
            let (text, outcome) = self.classify_payload(m.payload().unwrap_or_default());
            let (name, what) = match outcome {
                Ok(Inbound::Crawl(r)) if r.schedule.is_some() => {
                    self.keep_schedule(&r).await;
                    ("crawl".to_string(), Ingested::Kept)
                }
                Ok(Inbound::Crawl(r)) => (
                    "crawl".to_string(),
                    Ingested::Seed {
                        job: Box::new(r.into_seed()),
                        text: text.to_string(),
                    },
                ),
                Ok(Inbound::Action(a)) => ("action".into(), action(a)),
                Ok(Inbound::Stats(s)) => ("stats".into(), control(ControlRequest::Stats(s))),
                Ok(Inbound::DomainConfig(d)) => (
                    "domain-config".into(),
                    control(ControlRequest::DomainConfig(d)),
                ),
                Err(rejection) => match self.plugins.handle(&text).await {
                    Some(Ok((plugin, outputs))) => {
                        // A plugin's outputs share their message's offset,
                        // so the watermark takes or skips them together.
                        for what in outputs {
                            handled.push(Handled::of(m, plugin.clone(), what));
                        }
                        continue;
                    }
                    Some(Err(plugin_rejection)) => {
                        letters.push(self.letter(m, &plugin_rejection, &text));
                        ("fail".into(), Ingested::Fail)
                    }
                    None => {
                        letters.push(self.letter(m, &rejection, &text));
                        ("fail".into(), Ingested::Fail)
                    }
                },
            };
            handled.push(Handled::of(m, name, what));
        }
        // Dead letters first: once the batch is stored, its offsets may be
        // committed.
        self.send_letters(&letters).await;
        let mut by_partition: Prepared = BTreeMap::new();
        for h in handled {
            by_partition.entry(h.partition).or_default().push(h.entry);
        }
        by_partition
    }

    /// Keep a scheduled request in the schedule book, retrying until the
    /// store answers: its message's offset is committed only after. (A
    /// request kept already keeps its schedule's state.)
    async fn keep_schedule(&self, r: &crate::request::CrawlRequest) {
        use crate::scheduler::ScheduleBook;
        let key = crate::request::CrawlKey {
            appid: r.appid.clone(),
            crawlid: r.crawlid.clone(),
        };
        let json = serde_json::to_string(r).expect("plain struct serialises");
        let mut backoff = crate::backoff::Backoff::standard();
        while let Err(e) = self.store.keep(&key, &json, jiff::Timestamp::now()).await {
            tracing::warn!(error = %e, crawlid = %r.crawlid, "could not keep a schedule; retrying");
            backoff.wait().await;
        }
    }

    /// Store a classified batch, one atomic step per partition; returns the
    /// last offset handled per partition. Retries the store until it
    /// answers: a batch is never half done.
    async fn store_batch(&self, by_partition: Prepared) -> BTreeMap<i32, i64> {
        // Partitions are independent: their scripts go out together, so
        // Redis never waits for us between them.
        let steps = by_partition
            .into_iter()
            .map(|(partition, entries)| self.store_partition(partition, entries));
        futures::future::join_all(steps)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// One partition's part of a batch; its last offset.
    async fn store_partition(
        &self,
        partition: i32,
        mut entries: Vec<IngestEntry>,
    ) -> Option<(i32, i64)> {
        let id = format!("{}:{partition}", self.settings.kafka.incoming_topic);
        let mut backoff = Backoff::standard();
        loop {
            match self.store.ingest(&id, 'k', &entries).await {
                Ok(IngestOutcome { new, collided }) => {
                    self.store_answered();
                    self.refuse_collided(partition, &entries, &collided).await;
                    self.note_lives(&entries, &collided).await;
                    if new < entries.len() {
                        tracing::info!(
                            partition,
                            skipped = entries.len() - new,
                            "skipped messages handled before (redelivered)"
                        );
                    }
                    break;
                }
                Err(e) => {
                    self.store_failed();
                    if self.down_too_long() {
                        self.refuse_domain_configs(&mut entries).await;
                    }
                    // Short waits: a domain-config must be refused within
                    // about `rest.feed_wait` of the first failure.
                    let wait = backoff.next_delay().min(timeouts::UPKEEP);
                    tracing::warn!(error = %e, retry_in = ?wait, "Redis unavailable to the ingest monitor, retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
        entries
            .iter()
            .map(|e| e.offset)
            .max()
            .map(|o| (partition, o))
    }

    /// Note the crawls whose seeds were queued as in progress, so that a
    /// control plane tells their end (`runs/lives.rs`); retried until the
    /// store answers, before the batch's offsets are committed.
    async fn note_lives(&self, entries: &[IngestEntry], collided: &[usize]) {
        let mut seen = std::collections::BTreeSet::new();
        for (i, e) in entries.iter().enumerate() {
            let Ingested::Seed { job, text } = &e.what else {
                continue;
            };
            let key = job.crawl.key();
            if collided.contains(&i) || !seen.insert(key.clone()) {
                continue;
            }
            let request: serde_json::Value =
                serde_json::from_str(text).expect("a validated request's text reads as JSON");
            let webhook = request.get("webhook").filter(|w| !w.is_null());
            let mut backoff = Backoff::standard();
            while let Err(err) = self.store.note_alive(&key, webhook).await {
                tracing::warn!(error = %err, crawlid = %key.crawlid, "could not note a crawl in progress; retrying");
                backoff.wait().await;
            }
        }
    }

    /// Dead-letter the seeds the store refused because another crawl holds
    /// their crawl's key. This comes after the batch is stored (the store
    /// is what finds them) and before its offsets are: a crash in between
    /// loses only the notice of a refusal, for an event of odds 2^-64.
    async fn refuse_collided(&self, partition: i32, entries: &[IngestEntry], collided: &[usize]) {
        let reason = Rejection(crate::scheduler::StoreError::Collision.to_string());
        let letters: Vec<_> = collided
            .iter()
            .filter_map(|&i| entries.get(i))
            .filter_map(|e| match &e.what {
                Ingested::Seed { text, .. } => {
                    Some(self.letter_at(partition, e.offset, &reason, text))
                }
                _ => None,
            })
            .collect();
        self.send_letters(&letters).await;
    }

    async fn send_letters(&self, letters: &[serde_json::Value]) {
        for r in futures::future::join_all(letters.iter().map(|l| self.bus.dead_letter(l))).await {
            if let Err(e) = r {
                tracing::error!(error = %e, "dead letter refused by the broker");
            }
        }
        for l in letters {
            tracing::info!(reason = %l["error"].as_str().unwrap_or_default(), offset = %l["offset"], "request rejected");
        }
    }

    fn letter(&self, m: &OwnedMessage, rejection: &Rejection, text: &str) -> serde_json::Value {
        self.letter_at(m.partition(), m.offset(), rejection, text)
    }

    fn letter_at(
        &self,
        partition: i32,
        offset: i64,
        rejection: &Rejection,
        text: &str,
    ) -> serde_json::Value {
        self.stats.emit(crate::telemetry::Event::Rejected {
            reason: rejection.class(),
        });
        dead_letter(
            rejection,
            text,
            &Origin {
                topic: &self.settings.kafka.incoming_topic,
                partition,
                offset,
            },
            crate::result::now_unix(),
        )
    }
}

fn control(request: ControlRequest) -> Ingested {
    Ingested::Control(serde_json::to_string(&request).expect("a control request serialises"))
}

/// An info or stop request; a stop of one crawl is stored in order with
/// the seeds around it (see [`Ingested::Stop`]).
fn action(a: ActionRequest) -> Ingested {
    match (&a.action, &a.crawlid) {
        (ActionKind::Stop, Some(crawlid)) => Ingested::Stop {
            key: crate::request::CrawlKey {
                appid: a.appid.clone(),
                crawlid: crawlid.clone(),
            },
            json: serde_json::to_string(&ControlRequest::Action(a))
                .expect("a control request serialises"),
        },
        _ => control(ControlRequest::Action(a)),
    }
}
