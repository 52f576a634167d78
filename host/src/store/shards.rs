//! The frontier's shards. Queues, throttle state, leases and dedup are
//! split by registered domain over `redis.shards` hash tags, so a Redis
//! Cluster spreads them over its masters: shard 0 is `{ns}` (which also
//! holds the monitors' and stats' keys), shard k is `{ns/k}`. Each script
//! runs on one shard. A worker pops from the shards in turn, starting at a
//! different one each time, and skips for a while those that just had
//! nothing for it: a waiting one until its wait is over, an empty one
//! until a wake-up or [`IDLE_SKIP`].

use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// An empty shard is asked again after this long even without a wake-up
/// (one may have been lost).
const IDLE_SKIP: Duration = Duration::from_secs(30);

pub use crate::config::MAX_SHARDS;

pub(crate) struct Shards {
    tags: Vec<String>,
    skips: Mutex<Skips>,
    rotor: AtomicUsize,
}

#[derive(Default)]
struct Skips {
    /// Per shard: not asked before this instant; `true` if it was empty.
    until: Vec<Option<(Instant, bool)>>,
    /// Per shard: the wake-ups counted when its skip was last cleared.
    wakes: Vec<u64>,
}

/// What a shard said to a pop.
pub(crate) enum Reply {
    Empty,
    WaitFor(Duration),
}

impl Shards {
    /// `n` shards of namespace `ns` (the bare name).
    pub fn new(ns: &str, n: usize) -> Shards {
        let n = n.max(1);
        Shards {
            tags: (0..n)
                .map(|k| {
                    if k == 0 {
                        format!("{{{ns}}}")
                    } else {
                        format!("{{{ns}/{k}}}")
                    }
                })
                .collect(),
            skips: Mutex::new(Skips {
                until: vec![None; n],
                wakes: vec![0; n],
            }),
            rotor: AtomicUsize::new(std::process::id() as usize),
        }
    }

    pub fn len(&self) -> usize {
        self.tags.len()
    }

    pub fn all(&self) -> std::ops::Range<usize> {
        0..self.tags.len()
    }

    /// Shard k's hash tag: every key of the shard starts with it.
    pub fn tag(&self, k: usize) -> &str {
        &self.tags[k]
    }

    /// The shard of a registered domain.
    pub fn of_domain(&self, domain: &str) -> usize {
        if self.tags.len() == 1 {
            return 0;
        }
        (xxhash_rust::xxh3::xxh3_64(domain.as_bytes()) % self.tags.len() as u64) as usize
    }

    /// A lease's id: its number on shard k, and k.
    pub fn lease_id(&self, seq: u64, k: usize) -> u64 {
        seq * self.tags.len() as u64 + k as u64
    }

    /// The shard of a lease id, and the lease's number there.
    pub fn of_lease(&self, id: u64) -> (usize, u64) {
        let n = self.tags.len() as u64;
        ((id % n) as usize, id / n)
    }

    /// The shards a pop asks, in order, and how long until the first of
    /// those skipped because they are waiting is due. `wakes` is the
    /// wake-ups counted so far per shard: a new one clears its skip.
    pub fn to_ask(&self, wakes: &[u64]) -> (Vec<usize>, Option<Duration>) {
        let n = self.tags.len();
        let start = self.rotor.fetch_add(1, Ordering::Relaxed) % n;
        let now = Instant::now();
        let mut skips = self.skips.lock();
        for (k, &w) in wakes.iter().enumerate().take(n) {
            if skips.wakes[k] != w {
                skips.wakes[k] = w;
                skips.until[k] = None;
            }
        }
        let mut ask = Vec::with_capacity(n);
        let mut wait: Option<Duration> = None;
        for k in (start..start + n).map(|i| i % n) {
            match skips.until[k] {
                Some((at, empty)) if at > now => {
                    if !empty {
                        wait = Some(wait.map_or(at - now, |w| w.min(at - now)));
                    }
                }
                _ => ask.push(k),
            }
        }
        (ask, wait)
    }

    /// Shard k had nothing to lease: skip it for a while.
    pub fn asked(&self, k: usize, reply: Reply) {
        let now = Instant::now();
        self.skips.lock().until[k] = Some(match reply {
            Reply::Empty => (now + IDLE_SKIP, true),
            Reply::WaitFor(d) => (now + d, false),
        });
    }

    /// Work was queued on shard k (by this process, or seen in its counts).
    pub fn has_work(&self, k: usize) {
        self.skips.lock().until[k] = None;
    }
}

/// Replication marks per shard (Redis Cluster): the writes this process
/// made, and how many of them a replica has confirmed. One `WAIT` confirms
/// every write made before it was sent, so concurrent callers share it.
pub(crate) struct Marks {
    written: Vec<AtomicU64>,
    confirmed: Vec<AtomicU64>,
    turn: Vec<tokio::sync::Mutex<()>>,
}

impl Marks {
    pub fn new(n: usize) -> Marks {
        Marks {
            written: (0..n).map(|_| AtomicU64::new(0)).collect(),
            confirmed: (0..n).map(|_| AtomicU64::new(0)).collect(),
            turn: (0..n).map(|_| tokio::sync::Mutex::new(())).collect(),
        }
    }

    /// A write to shard k has returned: its mark.
    pub fn wrote(&self, k: usize) -> u64 {
        self.written[k].fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Writes on shard k up to `mark` are confirmed once this returns:
    /// by a `WAIT` (`wait`) sent after them, this caller's or another's.
    pub async fn confirm<E, F, Fut>(&self, k: usize, mark: u64, wait: F) -> Result<(), E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(), E>>,
    {
        if self.confirmed[k].load(Ordering::SeqCst) >= mark {
            return Ok(());
        }
        let _turn = self.turn[k].lock().await;
        if self.confirmed[k].load(Ordering::SeqCst) >= mark {
            return Ok(());
        }
        let upto = self.written[k].load(Ordering::SeqCst);
        wait().await?;
        self.confirmed[k].fetch_max(upto, Ordering::SeqCst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_shard_is_the_plain_namespace() {
        let s = Shards::new("spin", 1);
        assert_eq!(s.tag(0), "{spin}");
        assert_eq!(s.of_domain("example.com"), 0);
        assert_eq!(s.lease_id(41, 0), 41);
        assert_eq!(s.of_lease(41), (0, 41));
    }

    #[test]
    fn lease_ids_name_their_shard() {
        let s = Shards::new("spin", 16);
        assert_eq!(s.tag(3), "{spin/3}");
        for (seq, k) in [(1, 0), (7, 15), (u32::MAX as u64, 9)] {
            assert_eq!(s.of_lease(s.lease_id(seq, k)), (k, seq));
        }
        let used: std::collections::HashSet<usize> = (0..200)
            .map(|i| s.of_domain(&format!("site{i}.example")))
            .collect();
        assert_eq!(used.len(), 16, "200 domains reach every shard");
    }

    #[test]
    fn empty_shards_are_skipped_until_a_wake_up() {
        let s = Shards::new("spin", 3);
        s.asked(0, Reply::Empty);
        s.asked(1, Reply::WaitFor(Duration::from_secs(5)));
        let (ask, wait) = s.to_ask(&[0, 0, 0]);
        assert_eq!(ask, vec![2]);
        assert!(wait.is_some_and(|w| w <= Duration::from_secs(5)));
        s.has_work(1);
        assert_eq!(s.to_ask(&[0, 0, 0]).0.len(), 2);
        s.asked(1, Reply::Empty);
        let (mut ask, wait) = s.to_ask(&[1, 0, 0]);
        ask.sort();
        assert_eq!(
            (ask, wait),
            (vec![0, 2], None),
            "a wake-up clears its shard"
        );
    }

    #[tokio::test]
    async fn one_wait_confirms_every_write_before_it() {
        let m = Marks::new(2);
        let (a, b) = (m.wrote(1), m.wrote(1));
        let sent = AtomicU64::new(0);
        let wait = || async {
            sent.fetch_add(1, Ordering::SeqCst);
            Ok::<_, ()>(())
        };
        m.confirm(1, b, wait).await.expect("confirmed");
        m.confirm(1, a, wait).await.expect("confirmed");
        assert_eq!(
            sent.load(Ordering::SeqCst),
            1,
            "a, written before, was covered"
        );
        let c = m.wrote(1);
        m.confirm(1, c, wait).await.expect("confirmed");
        assert_eq!(sent.load(Ordering::SeqCst), 2);
    }
}
