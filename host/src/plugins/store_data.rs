//! What one plugin instance's store holds ([`StoreState`]): its WASI
//! context with the guests' clock and output, its resource table, its
//! memory cap and the current call's budget.

use crate::config::Limits;
use crate::telemetry::Stats;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};
use wasmtime::component::ResourceTable;
use wasmtime::ResourceLimiter;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Memory accounting and cap for one store: the cap is on the sum of
/// every linear memory in it (a component has one per core instance, and
/// a core module may have several), each growth counted by its delta.
pub struct MemoryCap {
    pub max_bytes: usize,
    pub current: usize,
    pub denied: bool,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = (self.current + desired).saturating_sub(current);
        if total > self.max_bytes {
            self.denied = true;
            return Ok(false);
        }
        self.current = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// Everything one plugin instance's store holds.
pub struct StoreState {
    pub(super) wasi: WasiCtx,
    pub(super) table: ResourceTable,
    pub(super) memory: MemoryCap,
    pub(super) plugin: Arc<str>,
    pub(super) rng: u64,
    pub(super) stats: Arc<Stats>,
    pub(super) limits: Limits,
    pub(super) budget: CallBudget,
}

/// What the current call may still do. [`Plugin::call`] resets it, and
/// fails a call that went over any of it even if the guest returned.
///
/// [`Plugin::call`]: super::plugin::Plugin
#[derive(Default)]
pub struct CallBudget {
    /// When the call's wall-time limit runs out: a guest's sleep (WASI
    /// clocks) is cut there, and the call then fails as timed out.
    pub deadline: Option<Instant>,
    pub overslept: bool,
    /// `log` calls and stdout/stderr lines, shared with the output streams.
    pub lines: Arc<AtomicU64>,
    /// The first cap the call went over.
    pub over: Option<String>,
}

impl CallBudget {
    pub fn start(&mut self, limit: Duration) {
        self.deadline = Some(Instant::now() + limit);
        self.overslept = false;
        self.lines.store(0, Ordering::Relaxed);
        self.over = None;
    }

    pub(super) fn exceed(&mut self, why: impl FnOnce() -> String) {
        if self.over.is_none() {
            self.over = Some(why());
        }
    }

    /// How long a sleep of `asked` may last: never past the deadline.
    pub fn sleep(&mut self, asked: Duration) -> Duration {
        let left = self
            .deadline
            .map_or(asked, |d| d.saturating_duration_since(Instant::now()));
        if asked > left {
            self.overslept = true;
        }
        asked.min(left)
    }
}

impl StoreState {
    pub fn new(plugin: Arc<str>, limits: Limits, seed: u64, stats: Arc<Stats>) -> Self {
        let budget = CallBudget::default();
        let out = GuestOutput {
            plugin: plugin.clone(),
            lines: budget.lines.clone(),
            max: limits.max_log_lines,
        };
        let wasi = WasiCtx::builder()
            .stdout(out.clone())
            .stderr(out)
            .monotonic_clock(Clock)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        StoreState {
            wasi,
            table: ResourceTable::new(),
            memory: MemoryCap {
                max_bytes: (limits.memory_mb as usize) << 20,
                current: 0,
                denied: false,
            },
            plugin,
            rng: seed | 1,
            stats,
            limits,
            budget,
        }
    }

    /// Count one log line; false once the call is over its cap (the call
    /// then fails when it returns: `Plugin::within_budget`).
    pub(super) fn log_line(&mut self) -> bool {
        self.budget.lines.fetch_add(1, Ordering::Relaxed) < self.limits.max_log_lines
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A guest's stdout/stderr: each line becomes a log event, up to the
/// call's `max_log_lines` (counted with its `log` calls).
#[derive(Clone)]
struct GuestOutput {
    plugin: Arc<str>,
    lines: Arc<AtomicU64>,
    max: u64,
}

impl wasmtime_wasi::cli::IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn wasmtime_wasi::p2::OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(tokio::io::sink())
    }
}

#[wasmtime_wasi::async_trait]
impl wasmtime_wasi::p2::Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl wasmtime_wasi::p2::OutputStream for GuestOutput {
    fn write(&mut self, bytes: bytes::Bytes) -> wasmtime_wasi::p2::StreamResult<()> {
        let text = String::from_utf8_lossy(&bytes);
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            // Past the cap the lines are dropped; the call fails when it
            // returns (the host sees the count).
            if self.lines.fetch_add(1, Ordering::Relaxed) < self.max {
                tracing::info!(plugin = %self.plugin, "{line}");
            }
        }
        Ok(())
    }
    fn flush(&mut self) -> wasmtime_wasi::p2::StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> wasmtime_wasi::p2::StreamResult<usize> {
        Ok(64 * 1024)
    }
}

/// The guests' monotonic clock: nanoseconds since the process started, so
/// `subscribe-instant` can be turned into a duration (`sleep.rs`).
pub struct Clock;

impl Clock {
    pub fn nanos() -> u64 {
        EPOCH.elapsed().as_nanos() as u64
    }
}

static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

impl wasmtime_wasi::HostMonotonicClock for Clock {
    fn resolution(&self) -> u64 {
        1
    }
    fn now(&self) -> u64 {
        Clock::nanos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_cap_is_on_the_sum_of_every_memory() {
        let mib = 1 << 20;
        let mut cap = MemoryCap {
            max_bytes: 10 * mib,
            current: 0,
            denied: false,
        };
        // Two memories of 4 MiB each, made (from 0), then one grown by 1.
        assert!(cap.memory_growing(0, 4 * mib, None).expect("no trap"));
        assert!(cap.memory_growing(0, 4 * mib, None).expect("no trap"));
        assert!(cap.memory_growing(4 * mib, 5 * mib, None).expect("no trap"));
        assert_eq!(cap.current, 9 * mib);
        // Each is under the cap alone; together they would pass it.
        assert!(!cap.memory_growing(4 * mib, 6 * mib, None).expect("no trap"));
        assert!(cap.denied);
        assert_eq!(cap.current, 9 * mib);
    }
}
