//! This worker in the cluster: its heartbeat and details, the live
//! workers, and the upkeep every worker shares (silent workers dropped,
//! expired crawls stopped, old stats trimmed).

use super::{unavailable, unix_now_ms, RedisStore};
use crate::scheduler::StoreError;
use serde_json::{json, Value};
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

impl RedisStore {
    /// Name the spiders this worker runs, for the `spider` stats.
    pub fn set_spiders(&self, names: Vec<String>) {
        *self.spiders.lock() = names;
    }

    /// The plugins this worker has loaded (name, kind, version, hash), shown
    /// on the status page.
    pub fn set_plugins(&self, plugins: Vec<Value>) {
        *self.plugins.lock() = plugins;
    }

    /// What the heartbeat says of rendering: false, or this worker's
    /// render counts (they change only when it renders, so an idle
    /// worker's details stay unchanged and are not rewritten).
    fn render_info(&self) -> Value {
        if !self.renders {
            return Value::Bool(false);
        }
        let r = &self.stats.render;
        json!({"rendered": r.rendered.get(), "failed": r.failed.get(),
               "restarts": r.restarts.get()})
    }

    /// Live workers: id, host and spiders.
    pub(super) async fn live_workers(&self) -> Result<Vec<LiveWorker>, StoreError> {
        let mut con = self.con();
        let info: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.key("hbinfo"))
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

    /// This worker's heartbeat: its time, and its details (spiders,
    /// plugins) when they changed.
    pub(super) async fn beat(&self) -> Result<(), StoreError> {
        let mut con = self.con();
        let info = json!({"host": self.host, "spiders": *self.spiders.lock(), "plugins": *self.plugins.lock(), "render": self.render_info()})
            .to_string();
        let mut pipe = redis::pipe();
        pipe.cmd("ZADD")
            .arg(self.key("hb"))
            .arg(unix_now_ms())
            .arg(&self.machine)
            .ignore();
        if self.pace.info_changed(&info) {
            pipe.cmd("HSET")
                .arg(self.key("hbinfo"))
                .arg(&self.machine)
                .arg(info)
                .ignore();
        }
        let _: () = pipe.query_async(&mut con).await.map_err(unavailable)?;
        Ok(())
    }

    /// Silent workers dropped, expired crawls stopped, old stats trimmed
    /// (by one worker a minute, cluster-wide).
    pub(super) async fn upkeep(&self) -> Result<(), StoreError> {
        let mut con = self.con();
        let now = unix_now_ms();
        let stale: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(self.key("hb"))
            .arg("-inf")
            .arg(now - self.heartbeat_ttl_ms as i64)
            .query_async(&mut con)
            .await
            .map_err(unavailable)?;
        if !stale.is_empty() {
            let _: () = redis::pipe()
                .cmd("ZREM")
                .arg(self.key("hb"))
                .arg(&stale)
                .ignore()
                .cmd("HDEL")
                .arg(self.key("hbinfo"))
                .arg(&stale)
                .ignore()
                .query_async(&mut con)
                .await
                .map_err(unavailable)?;
        }
        // The `expired` replies go out through the control stream.
        for e in self.expire_due().await? {
            tracing::info!(appid = %e.appid, crawlid = %e.crawlid, purged = e.purged, "crawl expired");
        }
        let mine: Option<String> = redis::cmd("SET")
            .arg(self.key("trimmed"))
            .arg(&self.machine)
            .arg("NX")
            .arg("PX")
            .arg(crate::timeouts::STATS_TRIM_EVERY.as_millis() as u64)
            .query_async(&mut con)
            .await
            .map_err(unavailable)?;
        if mine.is_some() {
            self.trim_stats().await?;
        }
        Ok(())
    }
}
