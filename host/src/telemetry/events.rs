//! Everything the process counts, as typed events. A call site says what
//! happened, `stats.emit(Event::Retried)`, and [`Stats::emit`] is the one
//! place that updates the counters (and writes the log line, for the
//! events that carry one). The progress line, the run summary, the
//! heartbeat and `/metrics` ([`super::prometheus`]) read the counters.
//!
//! This module sits below everything that emits: it imports no crawl,
//! render, scheduler, plugin, bus or gateway code, only the histogram.

use super::histogram::Histogram;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Log targets of the lines events write: the modules that wrote them
/// before, so `RUST_LOG` filters and the JSON `target` field stay as they
/// were.
const CRAWL: &str = "spinneret::crawl::page";
const RENDER: &str = "spinneret::render";

/// Something that happened, to be counted.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    // The crawl.
    /// A result was published: one `page crawled` line (contract §3, never
    /// the body). `failed`: the fetch failed (status 0, counted as an
    /// error too); `fetch`: how long the fetch took, if there was one.
    PageCrawled {
        status: u16,
        failed: bool,
        fetch: Option<Duration>,
        crawlid: &'a str,
        /// Already redacted.
        url: &'a str,
        spiderid: &'a str,
    },
    /// A spider's data record was published (`<prefix>.items`).
    RecordSent,
    /// A request put back to be fetched again later.
    Retried,
    /// A request put back because its site answered 429 or 503.
    Paused {
        status: u16,
    },
    /// Requests robots.txt refused (`requests` of them at once when
    /// children are filtered).
    RobotsDenied {
        requests: u64,
    },
    /// A request or a result dropped by a middleware or pipeline.
    Dropped,
    /// A request dropped because its crawl's expiry passed.
    Expired,
    /// A result that can never be delivered (reported as a dead letter):
    /// logged as an error.
    Undelivered {
        /// Already redacted.
        url: &'a str,
        crawlid: &'a str,
        reason: &'a str,
    },
    /// A lease given back unfinished (a stop, a store error).
    Released,
    /// A pop that leased nothing though work was queued (sites paused, at
    /// their in-flight cap or throttled).
    EmptyPop,
    /// A request sent to the cluster store (a pipeline counts once).
    StoreRoundTrip,

    // Plugins.
    PluginCall {
        plugin: &'a str,
        elapsed: Duration,
        failed: bool,
    },
    /// A fresh instance of a plugin.
    PluginInstantiated {
        plugin: &'a str,
    },
    /// An instance dropped (failed, or past its calls or memory).
    PluginRecycled {
        plugin: &'a str,
    },
    /// A hot reload of a plugin already serving: swapped in, or rejected
    /// (the old version keeps serving).
    PluginReloaded {
        ok: bool,
    },

    // Ingest.
    /// An inbound request rejected (dead-lettered); `reason` is its class
    /// (bounded).
    Rejected {
        reason: &'a str,
    },

    // Rendering.
    /// A page of a `render: auto` crawl, by whether it looked script-built.
    RenderAuto {
        rendered: bool,
    },
    /// A render began (it ends with `Rendered` or `RenderFailed`).
    RenderStarted,
    Rendered {
        elapsed: Duration,
    },
    RenderFailed {
        elapsed: Duration,
    },
    /// Sub-requests of a rendered page the address policy refused.
    RenderRefused {
        requests: u64,
    },
    /// The browser's usage after a render: its processes' memory (MiB) and
    /// CPU so far.
    BrowserUsage {
        rss_mb: u64,
        cpu: Duration,
    },
    BrowserRestarted(Restart),

    // The REST gateway.
    /// A request answered, by route and status code.
    RestAnswered {
        route: &'static str,
        status: u16,
    },
    /// A reply read from `outbound_firehose`.
    RestReplyRead,
}

/// Why the browser is restarted.
#[derive(Debug, Clone, Copy)]
pub enum Restart {
    /// It crashed or was killed (its last recorded usage stays counted).
    Gone,
    /// It passed `render.max_memory_mb` (`cpu`: its CPU so far).
    OverMemory {
        rss_mb: u64,
        limit: u64,
        cpu: Duration,
    },
}

/// A number only [`Stats::emit`] changes.
#[derive(Debug, Default)]
pub struct Count(AtomicU64);

impl Count {
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }

    fn add(&self, n: u64) {
        self.0.fetch_add(n, Relaxed);
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub struct PluginCalls {
    pub calls: u64,
    pub failures: u64,
    pub total: Duration,
    pub instances: u64,
    pub recycled: u64,
}

/// What the renderer did (zero on a worker that does not render).
#[derive(Debug, Default)]
pub struct RenderCounts {
    pub rendered: Count,
    pub failed: Count,
    /// `auto` pages that looked script-built (rendered) or not (kept plain).
    pub auto_rendered: Count,
    pub auto_plain: Count,
    pub restarts: Count,
    /// Sub-requests the address policy refused.
    pub refused: Count,
    pub in_flight: Count,
    pub latency: Histogram,
    /// CPU time of the browsers' processes so far (ms), and the most
    /// memory they held after a render (MiB).
    pub browser_cpu_ms: Count,
    pub browser_peak_rss_mb: Count,
    /// CPU of browsers already retired (ms).
    retired_cpu_ms: AtomicU64,
}

impl RenderCounts {
    /// The browser's latest usage: its CPU (on top of the restarted
    /// browsers') and its peak memory.
    fn browser_usage(&self, rss_mb: u64, cpu: Duration) {
        let cpu = cpu.as_millis() as u64;
        self.browser_cpu_ms
            .0
            .store(self.retired_cpu_ms.load(Relaxed) + cpu, Relaxed);
        self.browser_peak_rss_mb.0.fetch_max(rss_mb, Relaxed);
    }

    /// The browser restarted: why, and the CPU it had used.
    fn browser_restarted(&self, why: Restart) {
        self.restarts.add(1);
        match why {
            Restart::Gone => {
                self.retired_cpu_ms
                    .store(self.browser_cpu_ms.get(), Relaxed);
                tracing::warn!(target: RENDER, "the browser is gone; starting another");
            }
            Restart::OverMemory { rss_mb, limit, cpu } => {
                self.retired_cpu_ms
                    .fetch_add(cpu.as_millis() as u64, Relaxed);
                tracing::info!(
                    target: RENDER,
                    rss_mb,
                    limit,
                    "the browser passed render.max_memory_mb; it is restarted"
                );
            }
        }
    }

    /// A render ended after `elapsed`, counted in `result`.
    fn ended(&self, elapsed: Duration, result: &Count) {
        self.in_flight.0.fetch_sub(1, Relaxed);
        self.latency.observe(elapsed.as_secs_f64());
        result.add(1);
    }
}

/// When the process started (for the run summary's rate).
#[derive(Debug)]
struct Started(Instant);

impl Default for Started {
    fn default() -> Self {
        Started(Instant::now())
    }
}

/// What the crawl loop did: pages, their fates and fetch latency.
#[derive(Debug, Default)]
pub struct CrawlCounts {
    pub pages: Count,
    /// Spiders' data records published.
    pub records: Count,
    pub errors: Count,
    pub retries: Count,
    pub paused: Count,
    /// Of them, answered 429 (Too Many Requests).
    pub rate_limited: Count,
    pub robots_denied: Count,
    pub dropped: Count,
    pub expired: Count,
    pub undelivered: Count,
    pub released: Count,
    by_status: Mutex<BTreeMap<u16, u64>>,
    pub fetch_latency: Histogram,
}

/// The cluster store's work for this process.
#[derive(Debug, Default)]
pub struct StoreCounts {
    pub round_trips: Count,
    pub empty_pops: Count,
}

/// Plugins: calls, instances and reloads, and their own counters.
#[derive(Debug, Default)]
pub struct PluginCounts {
    pub reloads_ok: Count,
    pub reloads_failed: Count,
    calls: Mutex<HashMap<String, PluginCalls>>,
    latency: Mutex<HashMap<String, Arc<Histogram>>>,
    /// Plugins' own counters (the `count` host call).
    counters: Mutex<BTreeMap<(String, String), i64>>,
}

/// The REST gateway's work.
#[derive(Debug, Default)]
pub struct RestCounts {
    /// Requests answered, by route and status code.
    answered: Mutex<BTreeMap<(&'static str, u16), u64>>,
    pub replies_read: Count,
}

/// The process's counters, shared as `Arc<Stats>`, grouped by who emits
/// them: written by [`Stats::emit`] only, read by anyone.
#[derive(Debug, Default)]
pub struct Stats {
    started: Started,
    pub crawl: CrawlCounts,
    pub store: StoreCounts,
    pub plugins: PluginCounts,
    /// Inbound requests rejected, by reason.
    rejected: Mutex<BTreeMap<String, u64>>,
    pub render: RenderCounts,
    pub rest: RestCounts,
}

impl Stats {
    /// Count `event` (and log it, if it carries a log line).
    pub fn emit(&self, event: Event<'_>) {
        match event {
            Event::PageCrawled {
                status,
                failed,
                fetch,
                crawlid,
                url,
                spiderid,
            } => {
                let c = &self.crawl;
                c.pages.add(1);
                if failed {
                    c.errors.add(1);
                }
                *c.by_status.lock().entry(status).or_default() += 1;
                if let Some(took) = fetch {
                    c.fetch_latency.observe(took.as_secs_f64());
                }
                tracing::info!(target: CRAWL, crawlid = %crawlid, url = %url, status_code = status, spiderid = %spiderid, "page crawled");
            }
            Event::RecordSent => self.crawl.records.add(1),
            Event::Retried => self.crawl.retries.add(1),
            Event::Paused { status } => {
                self.crawl.paused.add(1);
                if status == 429 {
                    self.crawl.rate_limited.add(1);
                }
            }
            Event::RobotsDenied { requests } => self.crawl.robots_denied.add(requests),
            Event::Dropped => self.crawl.dropped.add(1),
            Event::Expired => self.crawl.expired.add(1),
            Event::Undelivered {
                url,
                crawlid,
                reason,
            } => {
                self.crawl.undelivered.add(1);
                tracing::error!(target: CRAWL, url = %url, crawlid = %crawlid, reason = %reason, "result cannot be delivered; reported as a dead letter");
            }
            Event::Released => self.crawl.released.add(1),
            Event::EmptyPop => self.store.empty_pops.add(1),
            Event::StoreRoundTrip => self.store.round_trips.add(1),
            Event::PluginCall {
                plugin,
                elapsed,
                failed,
            } => self.plugin_called(plugin, elapsed, failed),
            Event::PluginInstantiated { plugin } => self.plugin_tally(plugin, |p| p.instances += 1),
            Event::PluginRecycled { plugin } => self.plugin_tally(plugin, |p| p.recycled += 1),
            Event::PluginReloaded { ok: true } => self.plugins.reloads_ok.add(1),
            Event::PluginReloaded { ok: false } => self.plugins.reloads_failed.add(1),
            Event::Rejected { reason } => {
                *self.rejected.lock().entry(reason.to_string()).or_default() += 1;
            }
            Event::RenderAuto { rendered: true } => self.render.auto_rendered.add(1),
            Event::RenderAuto { rendered: false } => self.render.auto_plain.add(1),
            Event::RenderStarted => self.render.in_flight.add(1),
            Event::Rendered { elapsed } => self.render.ended(elapsed, &self.render.rendered),
            Event::RenderFailed { elapsed } => self.render.ended(elapsed, &self.render.failed),
            Event::RenderRefused { requests } => self.render.refused.add(requests),
            Event::BrowserUsage { rss_mb, cpu } => self.render.browser_usage(rss_mb, cpu),
            Event::BrowserRestarted(why) => self.render.browser_restarted(why),
            Event::RestAnswered { route, status } => {
                *self
                    .rest
                    .answered
                    .lock()
                    .entry((route, status))
                    .or_default() += 1;
            }
            Event::RestReplyRead => self.rest.replies_read.add(1),
        }
    }

    /// One plugin call: its latency, and its count in the plugin's tally.
    fn plugin_called(&self, plugin: &str, elapsed: Duration, failed: bool) {
        let h = self
            .plugins
            .latency
            .lock()
            .entry(plugin.to_string())
            .or_default()
            .clone();
        h.observe(elapsed.as_secs_f64());
        self.plugin_tally(plugin, |e| {
            e.calls += 1;
            e.total += elapsed;
            if failed {
                e.failures += 1;
            }
        });
    }

    /// Update the tally of `plugin`'s calls and instances.
    fn plugin_tally(&self, plugin: &str, update: impl FnOnce(&mut PluginCalls)) {
        update(
            self.plugins
                .calls
                .lock()
                .entry(plugin.to_string())
                .or_default(),
        );
    }

    pub fn elapsed(&self) -> Duration {
        self.started.0.elapsed()
    }

    /// Pages published, by status code.
    pub fn by_status(&self) -> BTreeMap<u16, u64> {
        self.crawl.by_status.lock().clone()
    }

    pub fn plugin_calls(&self) -> HashMap<String, PluginCalls> {
        self.plugins.calls.lock().clone()
    }

    /// Each plugin's call latency, by name.
    pub fn plugin_latencies(&self) -> Vec<(String, Arc<Histogram>)> {
        let mut v: Vec<_> = self
            .plugins
            .latency
            .lock()
            .iter()
            .map(|(k, h)| (k.clone(), h.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Inbound requests rejected, by reason.
    pub fn rejections(&self) -> BTreeMap<String, u64> {
        self.rejected.lock().clone()
    }

    /// The gateway's requests answered, by route and status code.
    pub fn answered(&self) -> BTreeMap<(&'static str, u16), u64> {
        self.rest.answered.lock().clone()
    }

    /// Add to a plugin's own counter (not an event: the plugin is told
    /// when it is refused); false (and nothing counted) when `name` is new
    /// and the plugin already has `max` counters.
    pub fn plugin_counter(&self, plugin: &str, name: &str, delta: i64, max: u64) -> bool {
        let mut counters = self.plugins.counters.lock();
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
}

#[cfg(test)]
mod tests {
    use super::{Event, Restart, Stats};
    use std::time::Duration;

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

    #[test]
    fn a_retired_browser_keeps_its_cpu_counted() {
        let s = Stats::default();
        let r = &s.render;
        let secs = Duration::from_secs;
        s.emit(Event::BrowserUsage {
            rss_mb: 300,
            cpu: secs(2),
        });
        s.emit(Event::BrowserRestarted(Restart::Gone));
        s.emit(Event::BrowserUsage {
            rss_mb: 100,
            cpu: secs(1),
        });
        assert_eq!(r.browser_cpu_ms.get(), 3000);
        s.emit(Event::BrowserRestarted(Restart::OverMemory {
            rss_mb: 2000,
            limit: 1024,
            cpu: secs(1),
        }));
        s.emit(Event::BrowserUsage {
            rss_mb: 200,
            cpu: secs(4),
        });
        assert_eq!(r.browser_cpu_ms.get(), 7000);
        assert_eq!(r.browser_peak_rss_mb.get(), 300);
        assert_eq!(r.restarts.get(), 2);
    }
}
