//! A fixed-bucket latency histogram, lock-free: the latency events fill
//! it, `/metrics` and the run summary read it.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Latency buckets, in seconds.
const BOUNDS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BOUNDS.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    /// Only events observe (see [`super::events::Stats::emit`]).
    pub(super) fn observe(&self, seconds: f64) {
        for (b, bound) in self.buckets.iter().zip(BOUNDS) {
            if seconds <= bound {
                b.fetch_add(1, Relaxed);
            }
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_us.fetch_add((seconds * 1e6) as u64, Relaxed);
    }

    /// Each bucket's upper bound (seconds) and how many observations were
    /// at most that (cumulative), smallest bound first; `+Inf` is
    /// [`Histogram::count`].
    pub fn buckets(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        self.buckets
            .iter()
            .zip(BOUNDS)
            .map(|(b, bound)| (bound, b.load(Relaxed)))
    }

    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    /// The sum of what was observed, in seconds (to the microsecond).
    pub fn sum_seconds(&self) -> f64 {
        self.sum_us.load(Relaxed) as f64 / 1e6
    }

    /// The mean of what was observed (0 if nothing was).
    pub fn mean_seconds(&self) -> f64 {
        let n = self.count();
        if n == 0 {
            return 0.0;
        }
        self.sum_seconds() / n as f64
    }
}
