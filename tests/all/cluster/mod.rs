//! Cluster mode: several real worker processes sharing one crawl through a
//! real `redis-server`. Here: `Cluster`, the workers on one Redis namespace
//! that the other modules (and `scale`, `render`, `politeness`) drive.

mod control;
mod recovery;
mod sharing;
mod shutdown;

use crate::harness::{eventually, read_results, RedisServer, Scratch, Site, SiteSpec};
use anyhow::Result;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::process::Child;

/// N `--serve` workers on one Redis namespace, each writing its own file.
pub(crate) struct Cluster {
    pub(crate) scratch: Scratch,
    /// The Redis namespace its workers share.
    pub(crate) ns: String,
    redis_url: String,
    workers: Vec<(Child, PathBuf)>,
}

impl Cluster {
    pub(crate) fn new(redis: &RedisServer, extra_config: &str) -> Result<Cluster> {
        Cluster::with_plugins(redis.url(), &[("link", "link")], extra_config)
    }

    /// Workers on `redis_url` (several nodes: a Redis Cluster).
    pub(crate) fn on(redis_url: String, extra_config: &str) -> Result<Cluster> {
        Cluster::with_plugins(redis_url, &[("link", "link")], extra_config)
    }

    fn with_plugins(
        redis_url: String,
        plugins: &[(&str, &str)],
        extra_config: &str,
    ) -> Result<Cluster> {
        let ns = format!("t{}", std::process::id() as u64 * 1000 + rand_suffix());
        let config = format!("[redis]\nnamespace = \"{ns}\"\n{extra_config}");
        Ok(Cluster {
            scratch: Scratch::new(plugins, &config)?,
            ns,
            redis_url,
            workers: Vec::new(),
        })
    }

    pub(crate) fn start_worker(&mut self) -> Result<()> {
        self.start_worker_with(&[])
    }

    /// A worker with these environment variables (settings: `SPINNERET_*`).
    pub(crate) fn start_worker_with(&mut self, env: &[(&str, &str)]) -> Result<()> {
        let out = self
            .scratch
            .path(&format!("worker-{}.jsonl", self.workers.len()));
        let err = std::fs::File::create(
            self.scratch
                .path(&format!("worker-{}.log", self.workers.len())),
        )?;
        let child = self
            .scratch
            .command("run")
            .args(["--serve", "--spider", "link", "--redis", &self.redis_url])
            .arg("--output")
            .arg(&out)
            .arg("--events")
            .arg(
                self.scratch
                    .path(&format!("worker-{}.events.jsonl", self.workers.len())),
            )
            .envs(env.iter().copied())
            .stderr(err)
            .spawn()?;
        self.workers.push((child, out));
        Ok(())
    }

    pub(crate) async fn submit(&self, args: &[&str]) -> Result<()> {
        let out = self
            .scratch
            .command("submit")
            .args(["--redis", &self.redis_url])
            .args(args)
            .output()
            .await?;
        anyhow::ensure!(
            out.status.success(),
            "submit failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    /// Run a control command (`info`, `stop`, `domain`, `stats`); its JSON reply.
    pub(crate) async fn control(&self, args: &[&str]) -> Result<Value> {
        let out = self
            .scratch
            .command(args[0])
            .args(["--redis", &self.redis_url])
            .args(&args[1..])
            .output()
            .await?;
        anyhow::ensure!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    /// The `spider` stats once the `link` spider's lifetime count of 200s
    /// is `ok` (workers write their status tally once a second).
    pub(crate) async fn spider_stats_with(&self, ok: u64) -> Result<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let stats = self.control(&["stats", "--type", "spider"]).await?;
            let spiders = stats["spiders"].clone();
            if spiders["link"]["200"]["lifetime"].as_u64() == Some(ok) {
                return Ok(spiders);
            }
            anyhow::ensure!(Instant::now() < deadline, "spider stats: {spiders}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub(crate) async fn until_done(&self, appid: &str, crawlid: &str) -> Result<Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let info = self
                .control(&["info", "--appid", appid, "--crawlid", crawlid])
                .await?;
            if info["done"] == true {
                return Ok(info);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "crawl {crawlid} not done: {info}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM to every worker, and wait (at most 30 s each) for it to
    /// exit: what it holds handed back, its archive sealed and uploaded.
    pub(crate) async fn stop_workers(&mut self) -> Result<()> {
        for i in 0..self.workers.len() {
            self.stop_worker(i).await?;
        }
        Ok(())
    }

    /// SIGTERM to worker `i`, and wait (at most 30 s) for it to exit.
    pub(crate) async fn stop_worker(&mut self, i: usize) -> Result<()> {
        let (child, _) = &mut self.workers[i];
        crate::harness::signal(child, "TERM")?;
        let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await??;
        anyhow::ensure!(status.success(), "a worker exited with {status}");
        Ok(())
    }

    /// SIGKILL to worker `i`: what it holds is left to expire.
    pub(crate) async fn kill_worker(&mut self, i: usize) -> Result<()> {
        let (child, _) = &mut self.workers[i];
        child.start_kill()?;
        child.wait().await?;
        Ok(())
    }

    /// Worker `i`'s process id, while it runs.
    pub(crate) fn worker_pid(&self, i: usize) -> Option<u32> {
        self.workers.get(i).and_then(|(c, _)| c.id())
    }

    /// What every worker has logged so far.
    pub(crate) fn logs(&self) -> String {
        (0..self.workers.len())
            .map(|i| {
                std::fs::read_to_string(self.scratch.path(&format!("worker-{i}.log")))
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Every result any worker has written so far.
    pub(crate) fn results(&self) -> Vec<Value> {
        self.workers
            .iter()
            .flat_map(|(_, out)| read_results(out).unwrap_or_default())
            .collect()
    }

    /// Every event any worker has written so far (`--events`).
    pub(crate) fn events(&self) -> Vec<Value> {
        (0..self.workers.len())
            .flat_map(|i| {
                read_results(&self.scratch.path(&format!("worker-{i}.events.jsonl")))
                    .unwrap_or_default()
            })
            .collect()
    }

    pub(crate) fn per_worker(&self) -> Vec<usize> {
        self.workers
            .iter()
            .map(|(_, out)| read_results(out).map(|r| r.len()).unwrap_or(0))
            .collect()
    }

    pub(crate) async fn until_all_of(
        &self,
        expected: &BTreeSet<String>,
        within: Duration,
    ) -> Result<Vec<Value>> {
        eventually(within, "every expected page from the cluster", || {
            let results = self.results();
            let got: BTreeSet<String> = results
                .iter()
                .filter_map(|r| r["url"].as_str().map(str::to_string))
                .collect();
            expected.is_subset(&got).then_some(results)
        })
        .await
    }
}

/// A private Redis, a site, and `workers` workers on `config`.
async fn cluster_of(
    spec: SiteSpec,
    workers: usize,
    config: &str,
) -> Result<(RedisServer, Site, Cluster)> {
    let redis = RedisServer::start().await?;
    let site = Site::start(spec).await?;
    let mut cluster = Cluster::new(&redis, config)?;
    for _ in 0..workers {
        cluster.start_worker()?;
    }
    Ok((redis, site, cluster))
}

pub(crate) fn spec(pages: usize, seed: u64) -> SiteSpec {
    SiteSpec {
        pages,
        hosts: 3,
        seed,
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn urls(results: &[Value]) -> Vec<String> {
    results
        .iter()
        .filter_map(|r| r["url"].as_str().map(str::to_string))
        .collect()
}

pub(crate) fn request(site: &Site, crawlid: &str, maxdepth: u32, extra: Value) -> String {
    let mut r = serde_json::json!({"url": site.seed_url(), "appid": "ops", "crawlid": crawlid, "maxdepth": maxdepth});
    if let (Some(r), Value::Object(extra)) = (r.as_object_mut(), extra) {
        r.extend(extra);
    }
    r.to_string()
}
