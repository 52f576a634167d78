//! Per-domain politeness: at most `hits` fetches per `window` seconds per
//! throttle key, optionally moderated (spaced `window/hits` apart).

use crate::config::Throttle as Settings;
use crate::store::StoreError;
use async_trait::async_trait;
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Go,
    Wait(Duration),
}

#[async_trait]
pub trait ThrottleStore: Send + Sync {
    /// Take one slot for `spider` to fetch from registered `domain` now, or
    /// say how long until one frees. The bucket follows the settings
    /// (split by spider, by egress identity).
    async fn acquire(&self, spider: &str, domain: &str) -> Result<Admission, StoreError>;
    /// Give back the latest slot of (`spider`, `domain`): it was taken for a
    /// request that was not fetched after all (robots.txt refused it).
    async fn refund(&self, spider: &str, domain: &str) -> Result<(), StoreError>;
}

/// Sliding-window log per key, in process.
pub struct EmbeddedThrottle {
    settings: Settings,
    hits: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl EmbeddedThrottle {
    pub fn new(settings: Settings) -> Self {
        EmbeddedThrottle {
            settings,
            hits: Mutex::new(HashMap::new()),
        }
    }

    fn decide(&self, log: &mut VecDeque<Instant>, now: Instant) -> Admission {
        let window = self.settings.window;
        while log
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            log.pop_front();
        }
        if log.len() >= self.settings.hits as usize {
            let oldest = log.front().copied().unwrap_or(now);
            return Admission::Wait((oldest + window).saturating_duration_since(now));
        }
        if self.settings.moderated {
            let gap = window / self.settings.hits;
            if let Some(last) = log.back() {
                let next = *last + gap;
                if next > now {
                    return Admission::Wait(next - now);
                }
            }
        }
        log.push_back(now);
        Admission::Go
    }
}

#[async_trait]
impl ThrottleStore for EmbeddedThrottle {
    async fn acquire(&self, spider: &str, domain: &str) -> Result<Admission, StoreError> {
        let key = throttle_key(&self.settings, spider, domain);
        let key = key.as_str();
        let now = Instant::now();
        let mut hits = self.hits.lock();
        if let Some(log) = hits.get_mut(key) {
            return Ok(self.decide(log, now));
        }
        let mut log = VecDeque::new();
        let a = self.decide(&mut log, now);
        hits.insert(key.to_string(), log);
        Ok(a)
    }

    async fn refund(&self, spider: &str, domain: &str) -> Result<(), StoreError> {
        let key = throttle_key(&self.settings, spider, domain);
        if let Some(log) = self.hits.lock().get_mut(&key) {
            log.pop_back();
        }
        Ok(())
    }
}

/// The throttle bucket a fetch of `domain` by `spider` counts against.
pub fn throttle_key(settings: &crate::config::Throttle, spider: &str, domain: &str) -> String {
    let mut key = String::with_capacity(domain.len() + spider.len() + 8);
    if settings.split_by_egress {
        key.push_str(&settings.egress_id);
        key.push('|');
    }
    if settings.split_by_spider {
        key.push_str(spider);
        key.push('|');
    }
    key.push_str(domain);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle(hits: u32, window: f64, moderated: bool) -> EmbeddedThrottle {
        EmbeddedThrottle::new(Settings {
            hits,
            window: Duration::from_secs_f64(window),
            moderated,
            ..Default::default()
        })
    }

    #[tokio::test(start_paused = true)]
    async fn at_most_hits_per_window() {
        let t = throttle(2, 2.0, false);
        assert_eq!(t.acquire("s", "a").await.expect("ok"), Admission::Go);
        assert_eq!(t.acquire("s", "a").await.expect("ok"), Admission::Go);
        assert_eq!(
            t.acquire("s", "a").await.expect("ok"),
            Admission::Wait(Duration::from_secs(2))
        );
        assert_eq!(t.acquire("s", "b").await.expect("ok"), Admission::Go);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(t.acquire("s", "a").await.expect("ok"), Admission::Go);
    }

    #[tokio::test(start_paused = true)]
    async fn moderated_spaces_fetches() {
        let t = throttle(4, 2.0, true);
        assert_eq!(t.acquire("s", "a").await.expect("ok"), Admission::Go);
        assert_eq!(
            t.acquire("s", "a").await.expect("ok"),
            Admission::Wait(Duration::from_millis(500))
        );
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(t.acquire("s", "a").await.expect("ok"), Admission::Go);
    }

    #[test]
    fn throttle_keys_split_as_configured() {
        let mut s = crate::config::Throttle::default();
        assert_eq!(throttle_key(&s, "link", "a.com"), "link|a.com");
        s.split_by_spider = false;
        s.split_by_egress = true;
        s.egress_id = "eu1".into();
        assert_eq!(throttle_key(&s, "link", "a.com"), "eu1|a.com");
    }
}
