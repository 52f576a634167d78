//! `Bus`: one Redis, one broker, a scratch config naming both, and the
//! binary's roles on them; the request and site helpers the Kafka-fed
//! modules share.

use crate::harness::{Broker, RedisServer, Scratch, Site, SiteSpec};
use anyhow::{ensure, Result};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;
use tokio::process::Child;

/// One Redis, one broker, a scratch config naming both, and role processes.
pub(crate) struct Bus {
    pub redis: RedisServer,
    pub broker: Broker,
    pub scratch: Scratch,
    pub roles: Vec<(Child, PathBuf)>,
}

impl Bus {
    /// `kafka_keys` go into the `[kafka]` table; `extra_config` after it.
    pub async fn start(kafka_keys: &str, extra_config: &str, partitions: i32) -> Result<Bus> {
        let redis = RedisServer::start().await?;
        let mut broker = Broker::start().await?;
        for t in [
            "demo.incoming",
            "demo.crawled_firehose",
            "demo.outbound_firehose",
            "demo.errors",
        ] {
            broker.create_topic(t, partitions).await?;
        }
        let config = format!(
            "[kafka]\nbrokers = \"{}\"\npartitions = {partitions}\n{kafka_keys}\n[redis]\nurl = \"{}\"\n{extra_config}",
            broker.brokers(),
            redis.url()
        );
        let scratch = Scratch::new(&[("link", "link"), ("seed-list", "seed-list")], &config)?;
        Ok(Bus {
            redis,
            broker,
            scratch,
            roles: Vec::new(),
        })
    }

    /// Start `spinneret <role> args...`, logging to a file.
    pub fn role(&mut self, role: &str, args: &[&str]) -> Result<()> {
        self.role_env(role, args, &[])
    }

    /// A role with extra environment (`SPINNERET_*` settings).
    pub fn role_env(&mut self, role: &str, args: &[&str], env: &[(&str, &str)]) -> Result<()> {
        let log = self
            .scratch
            .path(&format!("{role}-{}.log", self.roles.len()));
        let child = self
            .scratch
            .command(role)
            .args(args)
            .envs(env.iter().copied())
            .stderr(std::fs::File::create(&log)?)
            .stdout(std::process::Stdio::null())
            .spawn()?;
        self.roles.push((child, log));
        Ok(())
    }

    pub fn logs(&self) -> String {
        self.roles
            .iter()
            .map(|(_, p)| std::fs::read_to_string(p).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub(crate) async fn produce(&self, messages: &[String]) -> Result<()> {
        let keyed: Vec<(String, String)> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| (format!("k{i}"), m.clone()))
            .collect();
        self.broker.produce("demo.incoming", &keyed).await
    }

    /// `spinneret <args>` to the end; its stdout.
    pub async fn cli(&self, args: &[&str]) -> Result<String> {
        let out = self
            .scratch
            .command(args[0])
            .args(&args[1..])
            .output()
            .await?;
        ensure!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Poll `info` until the crawl reports `done`.
    pub async fn until_done(&self, appid: &str, crawlid: &str) -> Result<Value> {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        // `feed` returns once the broker has the request, maybe before the
        // ingest monitor stored it (on a loaded machine its consumer group
        // can take seconds to join); a crawl not stored yet reads as done
        // with nothing in it. So done counts once the crawl was seen with
        // work, or, for a crawl that never gets any, 5 s after the ingest
        // monitor was given its partitions.
        let mut seen = false;
        let mut assigned: Option<std::time::Instant> = None;
        loop {
            let out = self
                .cli(&["info", "--appid", appid, "--crawlid", crawlid])
                .await?;
            let info: Value = serde_json::from_str(&out)?;
            let work = ["crawled", "in_flight", "total_pending"]
                .iter()
                .any(|k| info[*k].as_u64().unwrap_or(0) > 0);
            seen |= work;
            if assigned.is_none() && self.logs().contains("partitions assigned") {
                assigned = Some(std::time::Instant::now());
            }
            let settled = assigned.is_some_and(|t| t.elapsed() > Duration::from_secs(5));
            if info["done"] == true && (seen || settled) {
                return Ok(info);
            }
            ensure!(
                std::time::Instant::now() < deadline,
                "crawl {crawlid} not done: {info}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub(crate) fn redis_int(&self, cmd: &[&str]) -> Result<i64> {
        let mut c = self.redis.connection()?;
        let mut q = redis::cmd(cmd[0]);
        for a in &cmd[1..] {
            q.arg(*a);
        }
        Ok(q.query::<Option<i64>>(&mut c)?.unwrap_or(0))
    }
}

/// A test site of `pages` pages on one host.
pub(crate) async fn one_host_site(pages: usize, seed: u64) -> Result<Site> {
    Ok(Site::start(SiteSpec {
        pages,
        hosts: 1,
        seed,
    })
    .await?)
}

pub(crate) fn crawl_request(url: &str, crawlid: &str, maxdepth: u32) -> String {
    json!({"url": url, "appid": "testapp", "crawlid": crawlid, "maxdepth": maxdepth}).to_string()
}
