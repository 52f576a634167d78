//! This worker in the cluster: its card (id, host, spiders, plugins,
//! render counts), the heartbeat that publishes it, and the dropping of
//! workers that stopped beating.

use super::RedisFrontier;
use crate::store::{unavailable, unix_now_ms, StoreError};
use crate::telemetry::Stats;
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::sync::Arc;

/// What this worker tells the cluster about itself. The worker's wiring
/// owns it and updates spiders and plugins as they are hot-swapped; the
/// heartbeat publishes it.
pub struct WorkerCard {
    /// `host:pid`: this worker in heartbeats and stats.
    pub machine: String,
    pub host: String,
    /// It renders: its pops take requests that need a browser.
    pub renders: bool,
    spiders: Mutex<Vec<String>>,
    /// Plugins loaded (name, kind, version, hash), for the status page.
    plugins: Mutex<Vec<Value>>,
    /// Render counts come from here.
    stats: Arc<Stats>,
}

impl WorkerCard {
    pub fn new(renders: bool, stats: Arc<Stats>) -> WorkerCard {
        let (host, machine) = crate::store::this_machine();
        WorkerCard {
            machine,
            host,
            renders,
            spiders: Mutex::new(Vec::new()),
            plugins: Mutex::new(Vec::new()),
            stats,
        }
    }

    /// Name the spiders this worker runs, for the `spider` stats.
    pub fn set_spiders(&self, names: Vec<String>) {
        *self.spiders.lock() = names;
    }

    pub fn set_plugins(&self, plugins: Vec<Value>) {
        *self.plugins.lock() = plugins;
    }

    /// The details a heartbeat writes (rewritten only when they change).
    fn details(&self) -> String {
        json!({"host": self.host, "spiders": *self.spiders.lock(),
               "plugins": *self.plugins.lock(), "render": self.render_info()})
        .to_string()
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
}

impl RedisFrontier {
    /// This worker's heartbeat: its time, and its card when it changed.
    pub(super) async fn beat(&self) -> Result<(), StoreError> {
        let mut con = self.redis.con();
        let info = self.card.details();
        let mut pipe = redis::pipe();
        pipe.cmd("ZADD")
            .arg(self.redis.key("hb"))
            .arg(unix_now_ms())
            .arg(&self.card.machine)
            .ignore();
        if self.pace.info_changed(&info) {
            pipe.cmd("HSET")
                .arg(self.redis.key("hbinfo"))
                .arg(&self.card.machine)
                .arg(info)
                .ignore();
        }
        let _: () = pipe.query_async(&mut con).await.map_err(unavailable)?;
        Ok(())
    }

    /// Workers silent for longer than the heartbeat's life are dropped.
    pub(super) async fn drop_silent_workers(&self) -> Result<(), StoreError> {
        let mut con = self.redis.con();
        let silent_since = unix_now_ms() - self.lifetimes.heartbeat.as_millis() as i64;
        let stale: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(self.redis.key("hb"))
            .arg("-inf")
            .arg(silent_since)
            .query_async(&mut con)
            .await
            .map_err(unavailable)?;
        if stale.is_empty() {
            return Ok(());
        }
        let _: () = redis::pipe()
            .cmd("ZREM")
            .arg(self.redis.key("hb"))
            .arg(&stale)
            .ignore()
            .cmd("HDEL")
            .arg(self.redis.key("hbinfo"))
            .arg(&stale)
            .ignore()
            .query_async(&mut con)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
