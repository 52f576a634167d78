//! The notifier: a crawl's events POSTed to its webhook, signed as
//! Standard Webhooks 1.0 says, through the fetcher (its address policy:
//! a private or refused address is never connected to; no redirect is
//! followed). Each endpoint has a queue of its own, delivered in order,
//! one at a time: a slow or failing endpoint delays only its own events.
//! A queue holds at most `webhooks.queue` events; its task ends once it
//! is empty, so endpoints no longer called cost nothing.
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
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

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
/// Endpoints remembered as disabled (410); past it the list starts
/// again, and a forgotten endpoint is disabled by its next 410.
const GONE: usize = 10_000;

pub struct Notifier {
    fetcher: Fetcher,
    secrets: HashMap<String, Secret>,
    timeout: Duration,
    retry: Vec<Duration>,
    dead: DeadLetters,
    /// Events waiting per endpoint, at most.
    queue: usize,
    /// Each endpoint with deliveries waiting, and them: its task delivers
    /// them in order, and removes the entry once it is empty.
    endpoints: Mutex<HashMap<String, VecDeque<Kept>>>,
    /// Endpoints that answered 410 Gone.
    gone: Mutex<HashSet<String>>,
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
    /// Each try waits `timeout`; `retry` are the waits between tries; at
    /// most `queue` events wait per endpoint.
    pub fn new(
        fetcher: Fetcher,
        secrets: HashMap<String, Secret>,
        (timeout, retry, queue): (Duration, Vec<Duration>, usize),
        dead: DeadLetters,
        outbox: Option<Arc<dyn Outbox>>,
    ) -> Arc<Notifier> {
        Arc::new(Notifier {
            fetcher,
            secrets,
            timeout,
            retry,
            queue,
            dead,
            outbox,
            held: Mutex::new(HashSet::new()),
            endpoints: Mutex::new(HashMap::new()),
            gone: Mutex::new(HashSet::new()),
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
        if !self.queue(delivery.clone()) {
            self.full(&delivery).await;
        }
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
                        // A full queue leaves it kept: claimed again
                        // after HOLD.
                        if self.queue(d.clone()) {
                            tracing::info!(webhook = %d.url, id = %d.id, attempts = d.attempts, "taking over a webhook delivery");
                        }
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

    /// Queue `delivery` on its endpoint's task (started if there is
    /// none); `false` if the endpoint's queue is full.
    fn queue(self: &Arc<Self>, delivery: Kept) -> bool {
        let mut endpoints = self.endpoints.lock();
        let key = delivery.key();
        match endpoints.get_mut(&delivery.url) {
            Some(waiting) if waiting.len() >= self.queue => return false,
            Some(waiting) => waiting.push_back(delivery),
            None => {
                let url = delivery.url.clone();
                endpoints.insert(url.clone(), VecDeque::from([delivery]));
                let mut tasks = self.tasks.lock();
                while tasks.try_join_next().is_some() {} // reap ended tasks
                tasks.spawn(self.clone().endpoint(url));
            }
        }
        self.held.lock().insert(key);
        true
    }

    /// `d` did not fit its endpoint's queue. Kept in an outbox, it waits
    /// there (taken up again once its hold passes); without one, it is
    /// dead-lettered: memory is not spent on an endpoint that is behind.
    async fn full(&self, d: &Kept) {
        if self.outbox.is_some() {
            tracing::warn!(webhook = %d.url, id = %d.id, queue = self.queue, "webhook endpoint behind; the delivery waits in the outbox");
        } else {
            let reason = format!(
                "the endpoint's queue is full ({} events waiting; webhooks.queue)",
                self.queue
            );
            self.dead(d, &reason).await;
        }
    }

    /// Deliver what is queued, waiting at most `grace` for retries; what
    /// is left then is dead-lettered (kept, with an outbox).
    pub async fn close(&self, grace: Duration) {
        let mut tasks = std::mem::take(&mut *self.tasks.lock());
        let all = async { while tasks.join_next().await.is_some() {} };
        tokio::pin!(all);
        if tokio::time::timeout(grace, &mut all).await.is_err() {
            self.closing.trigger();
            all.await;
        }
    }

    /// One endpoint's deliveries, in order, until none is waiting.
    async fn endpoint(self: Arc<Self>, url: String) {
        loop {
            let next = {
                let mut endpoints = self.endpoints.lock();
                let d = endpoints.get_mut(&url).and_then(|q| q.pop_front());
                if d.is_none() {
                    endpoints.remove(&url);
                }
                d
            };
            let Some(d) = next else { return };
            if self.gone.lock().contains(&url) {
                self.dead(&d, "the endpoint answered 410 Gone earlier: disabled")
                    .await;
                continue;
            }
            if self.deliver(&url, &d).await {
                let mut gone = self.gone.lock();
                if gone.len() >= GONE {
                    gone.clear();
                }
                gone.insert(url.clone());
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Kind;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A hostile receiver: `/slow` never answers, `/huge` answers 200 with
    /// a body that never ends, anything else 200 at once.
    async fn receiver() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let base = format!("http://{}", listener.local_addr().expect("an address"));
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let line = String::from_utf8_lossy(&head).to_string();
                    if line.contains(" /slow ") {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                    } else if line.contains(" /huge ") {
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                            .await;
                        let chunk = format!("10000\r\n{}\r\n", "x".repeat(0x10000));
                        while s.write_all(chunk.as_bytes()).await.is_ok() {}
                    } else {
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                            .await;
                    }
                });
            }
        });
        base
    }

    fn notifier(queue: usize) -> (Arc<Notifier>, Arc<Mutex<Vec<Undelivered>>>) {
        let crawl = crate::config::Crawl {
            allow_private: true,
            ..Default::default()
        };
        let secret =
            Secret::parse("whsec_c2VjcmV0LWtleS1vZi10aGUtdGVzdC1hcHAtMzI=").expect("a secret");
        let dead: Arc<Mutex<Vec<Undelivered>>> = Arc::default();
        let log = dead.clone();
        let n = Notifier::new(
            Fetcher::new(&crawl).expect("a fetcher"),
            [("app".to_string(), secret)].into(),
            (Duration::from_secs(60), vec![Duration::from_secs(5)], queue),
            Arc::new(move |u| log.lock().push(u)),
            None,
        );
        (n, dead)
    }

    fn hook(url: &str) -> Webhook {
        Webhook::parse(&serde_json::json!({ "url": url })).expect("a webhook")
    }

    async fn until(what: &str, mut ok: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !ok() {
            assert!(tokio::time::Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn a_slow_endpoint_fills_only_its_own_bounded_queue() {
        let base = receiver().await;
        let (n, dead) = notifier(3);
        let slow = hook(&format!("{base}/slow"));
        // Ten events for an endpoint that never answers: three wait (no
        // task ran yet), the rest are dead-lettered at once.
        for run in 1..=10 {
            n.notify(&Event::of(Kind::Completed, ("app", "c"), run), &slow)
                .await;
        }
        {
            let dead = dead.lock();
            assert_eq!(dead.len(), 7, "{dead:?}");
            assert!(dead[0].reason.contains("queue is full"), "{dead:?}");
        }
        // Another endpoint is served meanwhile, and its task ends once
        // its queue is empty; so does one whose answer never ends (read
        // up to 4 KiB).
        for path in ["fast", "huge"] {
            let url = format!("{base}/{path}");
            n.notify(&Event::of(Kind::Completed, ("app", path), 1), &hook(&url))
                .await;
            until(&format!("/{path} delivered"), || {
                !n.endpoints.lock().contains_key(&url) && n.held.lock().len() == 3
            })
            .await;
        }
        assert_eq!(dead.lock().len(), 7);
        assert!(n.endpoints.lock().contains_key(&slow.url.to_string()));
    }
}
