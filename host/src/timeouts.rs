//! Every fixed duration of the host in one table. What an operator may
//! want to change is a setting (`config.rs`); these are the rhythms and
//! patience of the code itself. docs/settings.md lists both.

use std::time::Duration;

/// Retry loops (a store or broker away, a result not written yet) start
/// here and double ([`crate::backoff::Backoff::standard`])...
pub const RETRY_FIRST: Duration = Duration::from_millis(200);
/// ...up to here.
pub const RETRY_MAX: Duration = Duration::from_secs(5);
/// How often a process checks the store for work queued by others, and
/// whether a `run` is done.
pub const IDLE_POLL: Duration = Duration::from_millis(200);
/// Longest an idle worker sleeps before it pops again (a wake-up comes
/// sooner when work is queued).
pub const IDLE_WAIT: Duration = Duration::from_secs(5);
/// Heartbeats, lease reclaim and the monitors' upkeep.
pub const UPKEEP: Duration = Duration::from_secs(1);
/// A worker's heartbeat (or a third of `stats.heartbeat_ttl`, if shorter).
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);
/// Longest an idle worker goes without upkeep (lease reclaim, expiry), and
/// without checking for work a lost wake-up may have hidden.
pub const IDLE_UPKEEP: Duration = Duration::from_secs(30);
/// The control plane's blocking read of the control stream.
pub const CONTROL_READ_BLOCK: Duration = Duration::from_secs(1);
/// Of `process.shutdown_grace`, what a stop keeps to release leases, flush
/// and exit (at most half the grace).
pub const STOP_MARGIN: Duration = Duration::from_secs(2);
/// After the work is done, how long the exit waits for blocking calls
/// (a plugin call past its deadline) before leaving them.
pub const EXIT_WAIT: Duration = Duration::from_secs(1);
/// Redis: connecting, and one answer on the shared connection...
pub const REDIS_CONNECT: Duration = Duration::from_secs(2);
pub const REDIS_RESPONSE: Duration = Duration::from_secs(5);
/// ...and on the connection of blocking reads (longer than their block).
pub const REDIS_BLOCKING_RESPONSE: Duration = Duration::from_secs(30);
/// Pruning old status-counter buckets.
pub const STATS_TRIM_EVERY: Duration = Duration::from_secs(60);
/// Kafka: topic creation, a producer flush on exit, a metadata request.
pub const KAFKA_ADMIN: Duration = Duration::from_secs(10);
pub const KAFKA_FLUSH: Duration = Duration::from_secs(10);
pub const KAFKA_METADATA: Duration = Duration::from_secs(10);
/// The health probe's metadata request (`GET /`).
pub const KAFKA_PROBE: Duration = Duration::from_secs(1);
/// A producer that failed a send is replaced at most this often.
pub const PRODUCER_RENEW_EVERY: Duration = Duration::from_secs(5);
/// A consumer error (the broker away) before reading again.
pub const CONSUMER_RETRY: Duration = Duration::from_millis(500);
/// How long `/feed` waits for the broker to take a request.
pub const FEED_SEND: Duration = Duration::from_secs(5);
/// How long `spinneret feed` waits for the broker's acknowledgement.
pub const CLI_FEED_ACK: Duration = Duration::from_secs(60);
/// The progress line and the gateway's pages/s sampling.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(1);
