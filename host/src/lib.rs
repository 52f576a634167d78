//! Spinneret: a distributed on-demand crawler whose spiders, middlewares and
//! pipelines are WebAssembly components.
//!
//! A request's path through the modules:
//!
//! - [`request`]: a client's crawl request, validated against the contract,
//!   becomes a [`request::Job`] (the seed of a crawl).
//! - [`scheduler`]: the frontier (per-domain priority queues, ready-domain
//!   index, leases) and the dedup store (seen fingerprints, page caps). Each
//!   is a trait with an embedded twin.
//! - [`throttle`]: per-domain politeness, consulted on every pop.
//! - [`schedule`]: when a recurring crawl's runs fall due.
//! - [`crawl`]: workers lease a job, then run it through robots, downloader
//!   middlewares, [`fetch`], the spider, pipelines and the [`bus`] sink, and
//!   ack the lease only after the result is delivered.
//! - [`result`]: the crawl result and its contract JSON, below both the
//!   crawl loop that builds it and the sinks that write it.
//! - [`fetch`]: HTTP (reqwest, rustls), the address policy, robots.txt.
//! - [`links`]: native link extraction offered to spiders as a host import.
//! - [`extract`]: CSS selectors over a page, offered to spiders the same way.
//! - [`plugins`]: the wasmtime runtime: world detection, limits, instance
//!   pools, hot swap.
//! - [`monitor`]: the inbound request kinds of the contract, validated.
//! - [`rest`]: the REST gateway (contract §5).
//! - [`config`], [`telemetry`]: settings; logs, and counters as typed
//!   events with the one writer of `/metrics` text ([`metrics`] serves a
//!   worker's).
//! - [`cli`]: the `spinneret` command.

pub mod archive;
pub mod backoff;
pub mod bus;
pub mod cli;
pub mod config;
pub mod crawl;
pub mod events;
pub mod extract;
pub mod fetch;
pub mod links;
pub mod metrics;
pub mod monitor;
pub mod notify;
pub mod objects;
pub mod plugins;
pub mod politeness;
pub mod render;
pub mod request;
pub mod rest;
pub mod result;
pub mod revisit;
pub mod runs;
pub mod schedule;
pub mod scheduler;
pub mod shutdown;
pub mod store;
pub mod telemetry;

pub mod timeouts;
