//! The notifier: a crawl's events POSTed to its webhook, signed as
//! Standard Webhooks 1.0 says, through the fetcher (its address policy:
//! a private or refused address is never connected to; no redirect is
//! followed). Each endpoint has a queue of its own, delivered in order,
//! one at a time: a slow or failing endpoint delays only its own events.
//!
//! A failed delivery is tried again after each wait of `webhooks.retry`,
//! with the same `webhook-id` (a fresh timestamp and signature each
//! time); `429` waits its `Retry-After` if longer; `410 Gone` disables
//! the endpoint; the last failure goes to the dead letters. A 3xx is a
//! failure (redirects are not followed: the receiver's URL is the one the
//! client gave).
//!
//! With an [`Outbox`] (a cluster), every delivery is kept there until it
//! is done, and one a stopped or dead notifier held is taken over by the
//! next notifier that looks ([`Notifier::resume`]): a restart loses no
//! retry.

use super::outbox::{Kept, Outbox, HOLD};
use super::Webhook;
use crate::events::sign::{headers, Secret};
use crate::events::Event;
use crate::fetch::{FetchError, Fetcher, Outgoing};
use crate::shutdown::Shutdown;
use parking_lot::Mutex;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// A `Retry-After` longer than this is read as this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// Bytes of a receiver's answer read (its status is what counts).
const ANSWER_BYTES: usize = 4096;

/// An event that could not be delivered, for the dead letters.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Undelivered {
    pub webhook: String,
    pub id: String,
    pub event: String,
    pub appid: String,
    pub crawlid: String,
    pub attempts: usize,
    pub reason: String,
}

/// Where undelivered events go (embedded: a JSON line on stderr; in a
/// cluster, `<prefix>.errors`).
pub type DeadLetters = Arc<dyn Fn(Undelivered) + Send + Sync>;

/// Kept deliveries claimed per look.
const CLAIMED: usize = 100;
/// How often kept deliveries are looked for.
const LOOK: Duration = Duration::from_secs(5);

pub struct Notifier {
    fetcher: Fetcher,
    secrets: HashMap<String, Secret>,
    timeout: Duration,
    retry: Vec<Duration>,
    dead: DeadLetters,
    /// Each endpoint's queue (its task delivers them in order).
    endpoints: Mutex<HashMap<String, mpsc::UnboundedSender<Kept>>>,
    outbox: Option<Arc<dyn Outbox>>,
    /// Deliveries this notifier holds (queued or being tried), by key.
    held: Mutex<HashSet<String>>,
    tasks: Mutex<tokio::task::JoinSet<()>>,
    /// The process is stopping: no more waiting between tries.
    closing: Shutdown,
}

/// How one try went.
enum Try {
    Delivered,
    /// Try again, no sooner than this (a 429's `Retry-After`).
    Again(String, Option<Duration>),
    /// Never again to this endpoint (410).
    Gone,
    /// Never for this event (the address policy).
    Never(String),
}

impl Notifier {
    pub fn new(
        fetcher: Fetcher,
        secrets: HashMap<String, Secret>,
        timeout: Duration,
        retry: Vec<Duration>,
        dead: DeadLetters,
        outbox: Option<Arc<dyn Outbox>>,
    ) -> Arc<Notifier> {
        Arc::new(Notifier {
            fetcher,
            secrets,
            timeout,
            retry,
            dead,
            outbox,
            held: Mutex::new(HashSet::new()),
            endpoints: Mutex::new(HashMap::new()),
            tasks: Mutex::new(tokio::task::JoinSet::new()),
            closing: Shutdown::new(),
        })
    }

    /// Queue `event` for `webhook` if it asked for its kind. An app
    /// without a secret was refused when its request came; one seen here
    /// anyway is dead-lettered, never sent unsigned.
    pub async fn notify(self: &Arc<Self>, event: &Event, webhook: &Webhook) {
        if !webhook.wants(event.event) {
            return;
        }
        let mut value: Value =
            serde_json::from_slice(&event.json()).expect("an event reads back as JSON");
        if let Some(m) = &webhook.metadata {
            value["metadata"] = Value::Object(m.clone());
        }
        let delivery = Kept {
            url: webhook.url.to_string(),
            id: event.id(),
            appid: event.appid.clone(),
            crawlid: event.crawlid.clone(),
            event: event.event.name().into(),
            body: value.to_string(),
            attempts: 0,
        };
        self.keep(&delivery, Duration::ZERO).await;
        self.queue(delivery);
    }

    /// Take over kept deliveries no notifier holds (their notifier
    /// stopped or died), every few seconds until `stop`.
    pub async fn resume(self: &Arc<Self>, stop: Shutdown) {
        let Some(outbox) = &self.outbox else {
            return;
        };
        loop {
            let now = jiff::Timestamp::now().as_millisecond();
            let held: Vec<String> = self.held.lock().iter().cloned().collect();
            let looked = async {
                if !held.is_empty() {
                    outbox.hold(&held, now + HOLD.as_millis() as i64).await?;
                }
                outbox.claim(now, CLAIMED).await
            };
            match looked.await {
                Ok(kept) => {
                    for d in kept {
                        if self.held.lock().contains(&d.key()) {
                            continue;
                        }
                        tracing::info!(webhook = %d.url, id = %d.id, attempts = d.attempts, "taking over a webhook delivery");
                        self.queue(d);
                    }
                }
                // Kept there: the next look takes them.
                Err(e) => tracing::warn!(error = %e, "webhook outbox unavailable; retrying"),
            }
            tokio::select! {
                _ = tokio::time::sleep(LOOK) => {}
                _ = stop.wait() => return,
            }
        }
    }

    /// Keep `d` in the outbox, this notifier's until `wait` plus [`HOLD`]
    /// from now. An outbox that does not answer loses only the
    /// durability: the delivery goes on from memory.
    async fn keep(&self, d: &Kept, wait: Duration) {
        if let Some(outbox) = &self.outbox {
            let until = jiff::Timestamp::now().as_millisecond()
                + (wait + self.timeout + HOLD).as_millis() as i64;
            if let Err(e) = outbox.keep(d, until).await {
                tracing::warn!(webhook = %d.url, id = %d.id, error = %e, "webhook delivery not kept in the outbox; delivering from memory");
            }
        }
    }

    /// `d` is over (delivered or dead-lettered).
    async fn done(&self, d: &Kept) {
        self.held.lock().remove(&d.key());
        if let Some(outbox) = &self.outbox {
            if let Err(e) = outbox.done(d).await {
                // It comes back once HOLD passes, and is sent again with
                // the same id: the receiver drops it.
                tracing::warn!(webhook = %d.url, id = %d.id, error = %e, "webhook delivery not marked done");
            }
        }
    }

    /// Queue `delivery` on its endpoint's task.
    fn queue(self: &Arc<Self>, delivery: Kept) {
        self.held.lock().insert(delivery.key());
        let url = delivery.url.clone();
        let mut endpoints = self.endpoints.lock();
        let queue = endpoints.entry(url.clone()).or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            let me = self.clone();
            self.tasks.lock().spawn(me.endpoint(url, rx));
            tx
        });
        // The task ends only once its queue is closed (`close`).
        let _ = queue.send(delivery);
    }

    /// Deliver what is queued, waiting at most `grace` for retries; what
    /// is left then is dead-lettered.
    pub async fn close(&self, grace: Duration) {
        self.endpoints.lock().clear();
        let mut tasks = std::mem::take(&mut *self.tasks.lock());
        let all = async { while tasks.join_next().await.is_some() {} };
        tokio::pin!(all);
        if tokio::time::timeout(grace, &mut all).await.is_err() {
            self.closing.trigger();
            all.await;
        }
    }

    /// One endpoint's deliveries, in order.
    async fn endpoint(self: Arc<Self>, url: String, mut queue: mpsc::UnboundedReceiver<Kept>) {
        let mut gone = false;
        while let Some(d) = queue.recv().await {
            if gone {
                self.dead(&d, "the endpoint answered 410 Gone earlier: disabled")
                    .await;
                continue;
            }
            gone = self.deliver(&url, &d).await;
        }
    }

    /// Every try of one delivery; `true` if the endpoint is gone.
    async fn deliver(&self, url: &str, d: &Kept) -> bool {
        let mut d = d.clone();
        loop {
            d.attempts += 1;
            let (reason, asked) = match self.attempt(url, &d).await {
                Try::Delivered => {
                    self.done(&d).await;
                    return false;
                }
                Try::Gone => {
                    self.dead(&d, "410 Gone: the endpoint is disabled").await;
                    return true;
                }
                Try::Never(reason) => {
                    self.dead(&d, &reason).await;
                    return false;
                }
                Try::Again(reason, asked) => (reason, asked),
            };
            let Some(wait) = self.retry.get(d.attempts - 1) else {
                self.dead(&d, &reason).await;
                return false;
            };
            let wait = asked.map_or(*wait, |a| a.min(MAX_RETRY_AFTER).max(*wait));
            tracing::warn!(webhook = %url, id = %d.id, attempts = d.attempts, retry_in = ?wait, %reason, "webhook delivery failed; will retry");
            self.keep(&d, wait).await;
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.closing.wait() => {
                    if self.outbox.is_none() {
                        self.dead(&d, &format!("{reason} (the process stopped before the next try)")).await;
                    }
                    // Kept: another notifier, or this one restarted,
                    // takes it over.
                    return false;
                }
            }
        }
    }

    async fn attempt(&self, url: &str, d: &Kept) -> Try {
        let Some(secret) = self.secrets.get(&d.appid) else {
            return Try::Never(format!("no webhooks.secrets entry for app {}", d.appid));
        };
        let mut h: Vec<(String, String)> = headers(
            std::slice::from_ref(secret),
            &d.id,
            jiff::Timestamp::now().as_second(),
            d.body.as_bytes(),
        )
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        h.push(("Content-Type".into(), "application/json".into()));
        let out = Outgoing {
            url,
            method: "POST",
            headers: &h,
            body: Some(d.body.as_bytes()),
            follow_redirects: false,
            redirects: 0,
            truncate_at: Some(ANSWER_BYTES),
            budget: None,
        };
        let fetched = match tokio::time::timeout(self.timeout, self.fetcher.fetch(&out)).await {
            Err(_) => return Try::Again(format!("no answer within {:?}", self.timeout), None),
            Ok(Err(e @ (FetchError::Refused(_) | FetchError::InvalidUrl(_)))) => {
                return Try::Never(e.to_string())
            }
            Ok(Err(e)) => return Try::Again(e.to_string(), None),
            Ok(Ok(f)) => f,
        };
        match fetched.status {
            200..=299 => Try::Delivered,
            410 => Try::Gone,
            429 => {
                let asked = fetched
                    .header("retry-after")
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                Try::Again("429 Too Many Requests".into(), asked)
            }
            s => Try::Again(format!("the endpoint answered {s}"), None),
        }
    }

    async fn dead(&self, d: &Kept, reason: &str) {
        (self.dead)(Undelivered {
            webhook: d.url.clone(),
            id: d.id.clone(),
            event: d.event.clone(),
            appid: d.appid.clone(),
            crawlid: d.crawlid.clone(),
            attempts: d.attempts,
            reason: reason.into(),
        });
        self.done(d).await;
    }
}
