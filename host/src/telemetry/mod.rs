//! What the process tells its operators: logs, and counts.
//!
//! - Logging ([`init`]): `tracing` to stderr, human text by default or
//!   JSON lines. `RUST_LOG` overrides the configured level.
//! - [`events`]: every count is a typed [`Event`] that call sites
//!   `emit` on the process's [`Stats`]; `emit` alone updates the counters
//!   (and writes the event's log line, where it has one).
//! - [`histogram`]: the latency histograms the events fill.
//! - [`prometheus`]: the one writer of Prometheus text from the counters,
//!   for the `/metrics` of workers and monitors (`crate::metrics`) and of
//!   the REST gateway.
//! - [`process_usage`]: CPU and memory, for the run summary.
//!
//! This module imports nothing of the crawl, rendering, scheduling,
//! plugins, bus or gateway: they all emit into it.

pub mod events;
pub mod histogram;
pub mod prometheus;

pub use events::{Event, Restart, Stats};
pub use histogram::Histogram;

use crate::config::{Log, LogFormat};
use std::time::Duration;
use tracing_subscriber::EnvFilter;

pub fn init(log: &Log) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "{},wasmtime=warn,cranelift=warn,hyper=warn,reqwest=warn",
            log.level
        ))
    });
    // Colours only for a person at a terminal, not in files and pipes.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match log.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.with_target(false).compact().try_init(),
    };
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
    // Without /proc (not Linux) the usage reads as zero: a report, not a failure.
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
