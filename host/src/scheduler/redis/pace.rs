//! How often a worker touches Redis when there is little to do. A busy
//! worker runs upkeep every second; an idle one (nothing leased lately)
//! only when something falls due (a lease deadline, a crawl's expiry, an
//! idle crawl's cleanup) and at least every [`IDLE_UPKEEP`]; it beats
//! every [`crate::timeouts::HEARTBEAT_EVERY`] (or a third of the TTL) and
//! waits for work on pub/sub channels (`<shard>:wake`, published by the
//! scripts when a shard goes from empty to not) instead of polling.
//! An idle worker thus costs Redis well under one command a second.

use crate::timeouts::{HEARTBEAT_EVERY, IDLE_UPKEEP, UPKEEP};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// A worker that leased something this recently counts as busy.
const BUSY_FOR: Duration = Duration::from_secs(30);
/// The heartbeat's details (spiders, plugins) are written again at least
/// this often even if unchanged (another process may have dropped them).
const INFO_EVERY: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Times {
    next_upkeep: Option<Instant>,
    next_beat: Option<Instant>,
    last_lease: Option<Instant>,
    /// The heartbeat details last written, and when.
    info: Option<(String, Instant)>,
}

#[derive(Default)]
pub(super) struct Pace {
    times: Mutex<Times>,
    /// Set by the wake-up listener: new work came, so crawls that may
    /// expire soon came too; run upkeep at the next tick.
    upkeep_now: Arc<AtomicBool>,
    /// Wake-ups received so far per shard (a pop asks that shard again).
    wakes: Arc<Mutex<Vec<u64>>>,
    /// The wake-up signal, once a worker asked for it.
    wake: std::sync::OnceLock<Arc<Notify>>,
    /// Notified when a domain's limit was lifted (message "2"): workers
    /// waiting on a site look again, not only idle ones.
    lifted: Arc<Notify>,
}

impl Pace {
    pub fn leased(&self) {
        self.times.lock().last_lease = Some(Instant::now());
    }

    /// Is upkeep due now? If so, it counts as started.
    pub fn upkeep_due(&self) -> bool {
        let now = Instant::now();
        let forced = self.upkeep_now.swap(false, Ordering::Relaxed);
        let mut t = self.times.lock();
        if forced || t.next_upkeep.is_none_or(|n| now >= n) {
            t.next_upkeep = Some(now + UPKEEP);
            return true;
        }
        false
    }

    /// Upkeep ran; the store's next event is `next_due` from now (if any).
    pub fn upkeep_done(&self, next_due: Option<Duration>) {
        let now = Instant::now();
        let mut t = self.times.lock();
        let busy = t.last_lease.is_some_and(|l| now - l < BUSY_FOR);
        let wait = if busy {
            UPKEEP
        } else {
            next_due.unwrap_or(IDLE_UPKEEP).clamp(UPKEEP, IDLE_UPKEEP)
        };
        t.next_upkeep = Some(now + wait);
    }

    /// Is a heartbeat due (every `HEARTBEAT_EVERY`, or a third of `ttl`)?
    pub fn beat_due(&self, ttl: Duration) -> bool {
        let now = Instant::now();
        let mut t = self.times.lock();
        if t.next_beat.is_none_or(|n| now >= n) {
            t.next_beat = Some(now + HEARTBEAT_EVERY.min(ttl / 3));
            return true;
        }
        false
    }

    /// Should the heartbeat write `info` (changed, or not written lately)?
    pub fn info_changed(&self, info: &str) -> bool {
        let now = Instant::now();
        let mut t = self.times.lock();
        let same = t
            .info
            .as_ref()
            .is_some_and(|(i, at)| i == info && now - *at < INFO_EVERY);
        if !same {
            t.info = Some((info.to_string(), now));
        }
        !same
    }

    /// Notified when a domain's limit was lifted (`domain.lua`).
    pub fn lifted(&self) -> Arc<Notify> {
        self.lifted.clone()
    }

    /// Wake-ups received so far, per shard.
    pub fn wakes(&self) -> Vec<u64> {
        self.wakes.lock().clone()
    }

    /// The wake-up signal; the first call starts the listener on `channels`.
    pub fn wake_signal(&self, nodes: &[String], channels: Vec<String>) -> Arc<Notify> {
        self.wake
            .get_or_init(|| {
                let wake = Arc::new(Notify::new());
                *self.wakes.lock() = vec![0; channels.len()];
                tokio::spawn(listen(
                    nodes.to_vec(),
                    channels,
                    Woken {
                        wake: wake.clone(),
                        lifted: self.lifted.clone(),
                        upkeep_now: self.upkeep_now.clone(),
                        wakes: self.wakes.clone(),
                    },
                ));
                wake
            })
            .clone()
    }
}

/// Who a wake-up wakes.
struct Woken {
    wake: Arc<Notify>,
    lifted: Arc<Notify>,
    upkeep_now: Arc<AtomicBool>,
    wakes: Arc<Mutex<Vec<u64>>>,
}

impl Woken {
    /// Work on the shard of channel `i` (None: maybe on any).
    fn wake(&self, i: Option<usize>) {
        let mut wakes = self.wakes.lock();
        match i {
            Some(i) => wakes.iter_mut().skip(i).take(1).for_each(|w| *w += 1),
            None => wakes.iter_mut().for_each(|w| *w += 1),
        }
        self.wake.notify_one();
    }
}

/// Subscribe to the wake-up channels for good, reconnecting with backoff
/// (to the next node of a cluster, where a message published on any node
/// reaches every node). Each message (and each new subscription, since
/// messages sent while unsubscribed are lost) wakes one waiter.
async fn listen(nodes: Vec<String>, channels: Vec<String>, woken: Woken) {
    use futures::StreamExt;
    let mut backoff = crate::backoff::Backoff::standard();
    for node in nodes.iter().cycle() {
        let subscribed = async {
            let client = redis::Client::open(node.as_str())?;
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channels).await?;
            Ok::<_, redis::RedisError>(pubsub)
        }
        .await;
        match subscribed {
            Ok(mut pubsub) => {
                backoff.reset();
                woken.wake(None);
                let mut messages = pubsub.on_message();
                while let Some(m) = messages.next().await {
                    woken.upkeep_now.store(true, Ordering::Relaxed);
                    woken.wake(channels.iter().position(|c| c == m.get_channel_name()));
                    if m.get_payload::<String>().is_ok_and(|p| p == "2") {
                        woken.lifted.notify_one();
                    }
                }
                tracing::debug!("wake-up subscription ended; subscribing again");
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot subscribe to wake-ups; retrying (idle workers poll meanwhile)")
            }
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}
