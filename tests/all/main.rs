//! Black-box integration tests: the real `spinneret` binary, real HTTP from
//! the local test site, real WebAssembly guests. Build first: `just test`.

mod archive;
mod cluster;
mod conformance;
mod crawl;
mod delivery;
mod extract;
mod golden;
mod harness;
mod hostile;
mod kafka;
mod pace;
mod plugins;
mod politeness;
mod records;
mod recurring;
mod redis_cluster;
mod render;
mod rest;
mod s3;
mod scale;
mod security;
mod templates;
mod webhooks;
