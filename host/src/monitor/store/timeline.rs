//! Each crawl's latest events, kept in Redis (shard 0, `ev:<cref>`, the
//! newest first) for the status page and REST's `/api/events`: the
//! events topic is for consumers that keep up; this is for a person who
//! looks in later. Bounded: [`KEPT`] per crawl, gone a week after the
//! last.

use super::MonitorStore;
use crate::events::{Event, EventSink};
use crate::request::CrawlKey;
use crate::store::{crawl_ref, unavailable, StoreError};
use async_trait::async_trait;
use serde_json::Value;

/// Events kept per crawl.
pub const KEPT: usize = 50;
/// A crawl's events go this long after its last.
const KEEP_SECS: u64 = 7 * 86_400;

impl MonitorStore {
    /// The crawl's latest `n` events (at most [`KEPT`]), the newest first.
    pub async fn recent_events(&self, key: &CrawlKey, n: usize) -> Result<Vec<Value>, StoreError> {
        let kept: Vec<String> = redis::cmd("LRANGE")
            .arg(self.events_key(key))
            .arg(0)
            .arg(n.clamp(1, KEPT) - 1)
            .query_async(&mut self.redis.con())
            .await
            .map_err(unavailable)?;
        // Written by `send` below; anything else is skipped.
        Ok(kept
            .iter()
            .filter_map(|e| serde_json::from_str(e).ok())
            .collect())
    }

    fn events_key(&self, key: &CrawlKey) -> String {
        format!("{}:ev:{}", self.redis.shards().tag(0), crawl_ref(key))
    }
}

#[async_trait]
impl EventSink for MonitorStore {
    async fn send(&self, event: &Event) -> std::io::Result<()> {
        let key = self.events_key(&CrawlKey {
            appid: event.appid.clone(),
            crawlid: event.crawlid.clone(),
        });
        let json = String::from_utf8_lossy(&event.json()).into_owned();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("LPUSH")
            .arg(&key)
            .arg(json)
            .ignore()
            .cmd("LTRIM")
            .arg(&key)
            .arg(0)
            .arg(KEPT - 1)
            .ignore()
            .cmd("EXPIRE")
            .arg(&key)
            .arg(KEEP_SECS)
            .ignore();
        pipe.query_async::<()>(&mut self.redis.con())
            .await
            .map_err(std::io::Error::other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Kind;
    use crate::store::test_server::Server;

    #[tokio::test]
    async fn a_crawl_keeps_its_latest_events_only() {
        let server = Server::start().await;
        let (s, redis) = server.store("timeline").await;
        let store = MonitorStore::new(redis, &s);
        for run in 1..=(KEPT as u32 + 30) {
            let e = Event::of(Kind::Completed, ("app", "busy"), run);
            store.send(&e).await.expect("kept");
        }
        let key = CrawlKey {
            appid: "app".into(),
            crawlid: "busy".into(),
        };
        let kept = store.recent_events(&key, 10_000).await.expect("read");
        assert_eq!(kept.len(), KEPT);
        assert_eq!(kept[0]["run"], KEPT + 30, "the newest first");
        assert_eq!(kept[KEPT - 1]["run"], 31);
        let ttl: i64 = redis::cmd("TTL")
            .arg(store.events_key(&key))
            .query_async(&mut store.redis.con())
            .await
            .expect("TTL");
        assert!(ttl > 0 && ttl <= KEEP_SECS as i64, "{ttl}");
    }
}
