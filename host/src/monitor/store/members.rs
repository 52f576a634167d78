//! Who is up: live workers (from their heartbeats, see
//! [`crate::scheduler::redis::WorkerCard`]) and the monitor roles'
//! processes, each announcing itself under its role.

use super::MonitorStore;
use crate::store::{unavailable, unix_now_ms, StoreError};
use serde_json::Value;
use std::collections::HashMap;

/// A worker with a heartbeat, as its details name it.
#[derive(Debug, Clone)]
pub struct LiveWorker {
    /// `host:pid`.
    pub id: String,
    pub host: String,
    pub spiders: Vec<String>,
    /// It renders (takes requests that need a browser).
    pub renders: bool,
}

impl MonitorStore {
    /// Live workers: id, host and spiders.
    pub async fn live_workers(&self) -> Result<Vec<LiveWorker>, StoreError> {
        let mut con = self.redis.con();
        let info: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.redis.key("hbinfo"))
            .query_async(&mut con)
            .await
            .map_err(unavailable)?;
        Ok(info
            .into_iter()
            .filter_map(|(id, json)| {
                let v: Value = serde_json::from_str(&json).ok()?;
                let host = v["host"].as_str()?.to_string();
                let spiders = v["spiders"]
                    .as_array()?
                    .iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect();
                let renders = v["render"].is_object();
                Some(LiveWorker {
                    id,
                    host,
                    spiders,
                    renders,
                })
            })
            .collect())
    }

    /// Announce this process in `role` (kafka-monitor, redis-monitor, rest)
    /// and drop silent nodes of that role.
    pub async fn heartbeat(&self, role: &str) -> Result<(), StoreError> {
        let key = self.redis.key(&format!("hb:{role}"));
        let now = unix_now_ms();
        let mut con = self.redis.con();
        let _: () = redis::pipe()
            .cmd("ZADD")
            .arg(&key)
            .arg(now)
            .arg(&*self.machine)
            .ignore()
            .cmd("ZREMRANGEBYSCORE")
            .arg(&key)
            .arg("-inf")
            .arg(now - self.heartbeat_ttl.as_millis() as i64)
            .ignore()
            .query_async(&mut con)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Ids (`host:pid`) of the live nodes of `role`.
    pub async fn nodes(&self, role: &str) -> Result<Vec<String>, StoreError> {
        let now = unix_now_ms();
        let mut con = self.redis.con();
        redis::cmd("ZRANGEBYSCORE")
            .arg(self.redis.key(&format!("hb:{role}")))
            .arg(now - self.heartbeat_ttl.as_millis() as i64)
            .arg("+inf")
            .query_async(&mut con)
            .await
            .map_err(unavailable)
    }
}
