//! The webhook outbox on Redis (shard 0): each kept delivery's JSON in
//! the hash `wh` and the time after which another notifier may take it
//! over in the zset `whdue`, both by [`Kept::key`]. A claim is
//! `outbox.lua`: due ones, moved on by `HOLD`, in one step, so two
//! notifiers never claim the same one at once.

use super::MonitorStore;
use crate::notify::{Kept, Outbox, OutboxError, HOLD};
use crate::store::corrupt;
use async_trait::async_trait;

impl MonitorStore {
    fn outbox_key(&self, name: &str) -> String {
        format!("{}:{name}", self.redis.shards().tag(0))
    }
}

#[async_trait]
impl Outbox for MonitorStore {
    async fn keep(&self, kept: &Kept, until: i64) -> Result<(), OutboxError> {
        let json = serde_json::to_string(kept).expect("a kept delivery serialises");
        let key = kept.key();
        redis::pipe()
            .atomic()
            .cmd("HSET")
            .arg(self.outbox_key("wh"))
            .arg(&key)
            .arg(json)
            .ignore()
            .cmd("ZADD")
            .arg(self.outbox_key("whdue"))
            .arg(until)
            .arg(&key)
            .ignore()
            .query_async::<()>(&mut self.redis.con())
            .await
            .map_err(unanswered)
    }

    async fn hold(&self, keys: &[String], until: i64) -> Result<(), OutboxError> {
        let mut cmd = redis::cmd("ZADD");
        cmd.arg(self.outbox_key("whdue")).arg("XX").arg("GT");
        for k in keys {
            cmd.arg(until).arg(k);
        }
        cmd.query_async::<()>(&mut self.redis.con())
            .await
            .map_err(unanswered)
    }

    async fn done(&self, kept: &Kept) -> Result<(), OutboxError> {
        let key = kept.key();
        redis::pipe()
            .atomic()
            .cmd("HDEL")
            .arg(self.outbox_key("wh"))
            .arg(&key)
            .ignore()
            .cmd("ZREM")
            .arg(self.outbox_key("whdue"))
            .arg(&key)
            .ignore()
            .query_async::<()>(&mut self.redis.con())
            .await
            .map_err(unanswered)
    }

    async fn claim(&self, now: i64, n: usize) -> Result<Vec<Kept>, OutboxError> {
        let claimed: Vec<String> = self
            .redis
            .call(&self.scripts.outbox, 0)
            .arg(now)
            .arg(HOLD.as_millis() as i64)
            .arg(n)
            .invoke_async(&mut self.redis.con())
            .await
            .map_err(unanswered)?;
        Ok(claimed
            .iter()
            .filter_map(|j| match serde_json::from_str(j) {
                Ok(k) => Some(k),
                Err(e) => {
                    // Not written by `keep`: left for a person to look at.
                    tracing::error!(error = %corrupt(e), kept = %j, "a kept webhook delivery does not read; skipped");
                    None
                }
            })
            .collect())
    }
}

fn unanswered(e: redis::RedisError) -> OutboxError {
    OutboxError(e.to_string())
}
