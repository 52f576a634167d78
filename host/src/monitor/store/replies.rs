//! Replies kept for the REST gateway's `/poll`: stored when a `/feed` gave
//! up waiting, taken once, dropped after `rest.poll_ttl`.

use super::MonitorStore;
use crate::store::{unavailable, StoreError};

impl MonitorStore {
    /// Keep a reply for `/poll` (every gateway stores it; the same value).
    pub async fn reply_put(&self, uuid: &str, json: &str, ttl_secs: u64) -> Result<(), StoreError> {
        let mut con = self.redis.con();
        let _: () = redis::cmd("SET")
            .arg(self.redis.key(&format!("reply:{uuid}")))
            .arg(json)
            .arg("EX")
            .arg(ttl_secs)
            .query_async(&mut con)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Take a stored reply: it is returned once.
    pub async fn reply_take(&self, uuid: &str) -> Result<Option<String>, StoreError> {
        let mut con = self.redis.con();
        redis::cmd("GETDEL")
            .arg(self.redis.key(&format!("reply:{uuid}")))
            .query_async(&mut con)
            .await
            .map_err(unavailable)
    }

    /// Is Redis answering?
    pub async fn ping(&self) -> bool {
        let mut con = self.redis.con();
        redis::cmd("PING")
            .query_async::<String>(&mut con)
            .await
            .is_ok()
    }
}
