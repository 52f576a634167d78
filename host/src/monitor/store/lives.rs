//! Crawls that are not scheduled, queued on the cluster and not yet told
//! over (shard 0, hash `live`: cref -> `[since ms, appid, crawlid,
//! webhook]`): whoever queues one notes it after its seed is queued (the
//! ingest monitor, `submit`, `run`), and every process that drives runs
//! looks at them each second, tells `crawl.accepted` the first time, and
//! `crawl.completed` once nothing of the crawl is open: the `HDEL` that
//! removes it is the claim, so one process tells it.

use super::MonitorStore;
use crate::request::CrawlKey;
use crate::scheduler::Life;
use crate::store::{crawl_ref, unavailable, StoreError};
use serde_json::{json, Value};
use std::collections::HashMap;

/// Crawls noted at most: past it, new ones are not told (and say so).
pub const MAX_LIVES: usize = 100_000;

impl MonitorStore {
    fn lives_key(&self) -> String {
        format!("{}:live", self.redis.shards().tag(0))
    }

    /// Note a crawl as queued (kept as it was if it is noted already).
    pub async fn note_alive(
        &self,
        key: &CrawlKey,
        webhook: Option<&Value>,
    ) -> Result<(), StoreError> {
        let mut con = self.redis.con();
        let noted: usize = redis::cmd("HLEN")
            .arg(self.lives_key())
            .query_async(&mut con)
            .await
            .map_err(unavailable)?;
        if noted >= MAX_LIVES {
            tracing::warn!(appid = %key.appid, crawlid = %key.crawlid, "too many crawls in progress to tell this one's end");
            return Ok(());
        }
        let since = jiff::Timestamp::now().as_millisecond();
        let life = json!([since, key.appid, key.crawlid, webhook]);
        let _: i64 = redis::cmd("HSETNX")
            .arg(self.lives_key())
            .arg(crawl_ref(key))
            .arg(life.to_string())
            .query_async(&mut con)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Every crawl noted and not yet over.
    pub async fn noted_lives(&self) -> Result<Vec<Life>, StoreError> {
        let noted: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.lives_key())
            .query_async(&mut self.redis.con())
            .await
            .map_err(unavailable)?;
        Ok(noted
            .values()
            .filter_map(|v| {
                let v: Value = serde_json::from_str(v).ok()?;
                Some(Life {
                    since: v[0].as_i64()?,
                    key: CrawlKey {
                        appid: v[1].as_str()?.into(),
                        crawlid: v[2].as_str()?.into(),
                    },
                    webhook: Some(v[3].clone()).filter(|w| !w.is_null()),
                })
            })
            .collect())
    }

    /// Take a crawl's end (or forget it, stopped or expired): whether
    /// this caller took it.
    pub async fn take_end(&self, key: &CrawlKey) -> Result<bool, StoreError> {
        let removed: i64 = redis::cmd("HDEL")
            .arg(self.lives_key())
            .arg(crawl_ref(key))
            .query_async(&mut self.redis.con())
            .await
            .map_err(unavailable)?;
        Ok(removed == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_server::Server;

    #[tokio::test]
    async fn past_its_bound_a_crawl_is_not_noted() {
        let server = Server::start().await;
        let (s, redis) = server.store("lives").await;
        let store = MonitorStore::new(redis, &s);
        let key = |i: usize| CrawlKey {
            appid: "app".into(),
            crawlid: format!("c{i}"),
        };
        store.note_alive(&key(0), None).await.expect("noted");
        // Fill the hash to its bound, as a flood of crawls would.
        let mut pipe = redis::pipe();
        for i in 1..MAX_LIVES {
            pipe.cmd("HSET")
                .arg(store.lives_key())
                .arg(format!("filler{i}"))
                .arg("[]")
                .ignore();
        }
        pipe.query_async::<()>(&mut store.redis.con())
            .await
            .expect("filled");
        store.note_alive(&key(1), None).await.expect("not noted");
        let lives = store.noted_lives().await.expect("lives");
        // The fillers do not read as lives; the first crawl does, the one
        // past the bound does not.
        assert_eq!(
            lives
                .iter()
                .map(|l| l.key.crawlid.as_str())
                .collect::<Vec<_>>(),
            ["c0"]
        );
        let n: usize = redis::cmd("HLEN")
            .arg(store.lives_key())
            .query_async(&mut store.redis.con())
            .await
            .expect("HLEN");
        assert_eq!(n, MAX_LIVES);
        assert!(store.take_end(&key(0)).await.expect("taken"));
        assert!(!store.take_end(&key(0)).await.expect("once"));
    }
}
