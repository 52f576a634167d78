//! Counters, from typed events in one place: pages by status, errors,
//! retries, plugin calls and reloads, latencies, rejections. The progress
//! line, the run summary and `/metrics` read them.

use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

#[derive(Debug, Default, Clone, Copy)]
pub struct PluginCalls {
    pub calls: u64,
    pub failures: u64,
    pub total: Duration,
    pub instances: u64,
    pub recycled: u64,
}

pub struct Stats {
    started: Instant,
    pub pages: AtomicU64,
    pub errors: AtomicU64,
    pub retries: AtomicU64,
    /// Requests put back because their site answered 429 or 503.
    pub paused: AtomicU64,
    pub robots_denied: AtomicU64,
    pub dropped: AtomicU64,
    pub expired: AtomicU64,
    /// Results that could never be delivered (reported as dead letters).
    pub undelivered: AtomicU64,
    /// Leases given back unfinished (a stop, a store error).
    pub released: AtomicU64,
    pub reloads_ok: AtomicU64,
    pub reloads_failed: AtomicU64,
    /// Requests sent to the cluster store (a pipeline counts once).
    pub store_round_trips: AtomicU64,
    /// Pops that leased nothing though work was queued (sites paused, at
    /// their in-flight cap or throttled).
    pub empty_pops: AtomicU64,
    by_status: Mutex<BTreeMap<u16, u64>>,
    plugins: Mutex<HashMap<String, PluginCalls>>,
    counters: Mutex<BTreeMap<(String, String), i64>>,
    pub fetch_latency: crate::metrics::Histogram,
    plugin_latency: Mutex<HashMap<String, std::sync::Arc<crate::metrics::Histogram>>>,
    rejected: Mutex<BTreeMap<String, u64>>,
    /// The headless browser's renders (zero on a worker that does not
    /// render).
    pub render: crate::render::RenderStats,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            started: Instant::now(),
            pages: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            paused: AtomicU64::new(0),
            robots_denied: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            expired: AtomicU64::new(0),
            undelivered: AtomicU64::new(0),
            released: AtomicU64::new(0),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            store_round_trips: AtomicU64::new(0),
            empty_pops: AtomicU64::new(0),
            by_status: Mutex::new(BTreeMap::new()),
            plugins: Mutex::new(HashMap::new()),
            counters: Mutex::new(BTreeMap::new()),
            fetch_latency: Default::default(),
            plugin_latency: Mutex::new(HashMap::new()),
            rejected: Mutex::new(BTreeMap::new()),
            render: Default::default(),
        }
    }
}

impl Stats {
    pub fn page(&self, status: u16, error: bool) {
        self.pages.fetch_add(1, Relaxed);
        if error {
            self.errors.fetch_add(1, Relaxed);
        }
        *self.by_status.lock().entry(status).or_default() += 1;
    }

    pub fn by_status(&self) -> BTreeMap<u16, u64> {
        self.by_status.lock().clone()
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn plugin_call(&self, plugin: &str, took: Duration, ok: bool) {
        let h = self
            .plugin_latency
            .lock()
            .entry(plugin.to_string())
            .or_default()
            .clone();
        h.observe(took.as_secs_f64());
        let mut p = self.plugins.lock();
        let e = p.entry(plugin.to_string()).or_default();
        e.calls += 1;
        e.total += took;
        if !ok {
            e.failures += 1;
        }
    }

    pub fn plugin_instantiated(&self, plugin: &str) {
        self.plugins
            .lock()
            .entry(plugin.to_string())
            .or_default()
            .instances += 1;
    }

    pub fn plugin_recycled(&self, plugin: &str) {
        self.plugins
            .lock()
            .entry(plugin.to_string())
            .or_default()
            .recycled += 1;
    }

    pub fn plugin_calls(&self) -> HashMap<String, PluginCalls> {
        self.plugins.lock().clone()
    }

    /// Add to a plugin's counter; false (and nothing counted) when `name`
    /// is new and the plugin already has `max` counters.
    pub fn plugin_counter(&self, plugin: &str, name: &str, delta: i64, max: u64) -> bool {
        let mut counters = self.counters.lock();
        let key = (plugin.to_string(), name.to_string());
        if let Some(v) = counters.get_mut(&key) {
            *v += delta;
            return true;
        }
        let mine = counters.keys().filter(|(p, _)| p == plugin).count() as u64;
        if mine >= max {
            return false;
        }
        counters.insert(key, delta);
        true
    }

    pub fn plugin_latencies(&self) -> Vec<(String, std::sync::Arc<crate::metrics::Histogram>)> {
        let mut v: Vec<_> = self
            .plugin_latency
            .lock()
            .iter()
            .map(|(k, h)| (k.clone(), h.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// An inbound request was rejected; `reason` is its class (bounded).
    pub fn rejected(&self, reason: &str) {
        *self.rejected.lock().entry(reason.to_string()).or_default() += 1;
    }

    pub fn rejections(&self) -> BTreeMap<String, u64> {
        self.rejected.lock().clone()
    }

    pub fn plugin_reloaded(&self, ok: bool) {
        if ok {
            &self.reloads_ok
        } else {
            &self.reloads_failed
        }
        .fetch_add(1, Relaxed);
    }
}

/// CPU time and peak memory of this process, from /proc (Linux).
#[derive(Debug, Default, Clone, Copy)]
pub struct Usage {
    pub cpu: Duration,
    pub peak_rss_bytes: u64,
}

pub fn process_usage() -> Usage {
    // /proc/self/stat fields 14 and 15 are utime and stime in clock ticks
    // (USER_HZ, 100 on Linux).
    let cpu = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let after = &s[s.rfind(')')? + 2..];
            let f: Vec<&str> = after.split_whitespace().collect();
            let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
            Some(Duration::from_millis(ticks * 10))
        })
        .unwrap_or_default();
    let peak_rss_bytes = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
            line.split_whitespace()
                .nth(1)?
                .parse::<u64>()
                .ok()
                .map(|kb| kb * 1024)
        })
        .unwrap_or(0);
    Usage {
        cpu,
        peak_rss_bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::Stats;

    #[test]
    fn a_plugin_cannot_make_more_counters_than_its_cap() {
        let s = Stats::default();
        assert!((0..3).all(|i| s.plugin_counter("p", &format!("c{i}"), 1, 3)));
        assert!(
            !s.plugin_counter("p", "c3", 1, 3),
            "a fourth name is refused"
        );
        assert!(s.plugin_counter("p", "c0", 1, 3), "known names still count");
        assert!(s.plugin_counter("q", "c3", 1, 3), "the cap is per plugin");
    }
}
