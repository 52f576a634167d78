//! A throwaway `redis-server` for the cluster benchmarks, and the figures
//! read from it (INFO commandstats, used_memory).

use anyhow::{Context, Result};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Redis {
    pub port: u16,
    child: Child,
    _dir: std::path::PathBuf,
}

impl Redis {
    /// `None` when redis-server is not installed (`scripts/setup --test` installs it).
    pub fn start(work: &std::path::Path) -> Result<Option<Redis>> {
        Redis::start_as(work, "redis", &[])
    }

    /// A server with its files in `work/name` and extra arguments.
    fn start_as(work: &std::path::Path, name: &str, extra: &[&str]) -> Result<Option<Redis>> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = work.join(name);
        std::fs::create_dir_all(&dir)?;
        let child = match Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(extra)
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .spawn()
        {
            Ok(c) => c,
            Err(_) => return Ok(None),
        };
        let redis = Redis {
            port,
            child,
            _dir: dir,
        };
        let started = Instant::now();
        while redis.query(&["PING"]).is_err() {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Some(redis))
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn query(&self, args: &[&str]) -> Result<String> {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()?;
        anyhow::ensure!(out.status.success(), "redis-cli failed");
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Script invocations (EVALSHA and EVAL): one round trip each.
    pub fn script_calls(&self) -> Result<u64> {
        let info = self.query(&["INFO", "commandstats"])?;
        Ok(info
            .lines()
            .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
            .filter_map(|l| {
                l.split("calls=")
                    .nth(1)?
                    .split(',')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum())
    }

    /// Calls and microseconds per command name (INFO commandstats).
    pub fn command_stats(&self) -> Result<std::collections::BTreeMap<String, (u64, u64)>> {
        let info = self.query(&["INFO", "commandstats"])?;
        Ok(info
            .lines()
            .filter_map(|l| {
                let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
                let field = |k: &str| -> Option<u64> {
                    rest.split(',')
                        .find_map(|f| f.strip_prefix(k))?
                        .parse()
                        .ok()
                };
                Some((name.to_string(), (field("calls=")?, field("usec=")?)))
            })
            .collect())
    }

    /// Commands the server has run (scripts' inner calls included), not
    /// counting the INFO that asks.
    pub fn commands(&self) -> Result<u64> {
        let info = self.query(&["INFO", "stats"])?;
        let n = info
            .lines()
            .find_map(|l| l.strip_prefix("total_commands_processed:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .context("no total_commands_processed in INFO stats")?;
        Ok(n.saturating_sub(1))
    }

    /// CPU seconds the server has used (user + system).
    pub fn cpu_seconds(&self) -> Result<f64> {
        let info = self.query(&["INFO", "cpu"])?;
        Ok(info
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                matches!(k, "used_cpu_sys" | "used_cpu_user")
                    .then(|| v.trim().parse::<f64>().ok())?
            })
            .sum())
    }

    pub fn used_memory(&self) -> Result<u64> {
        let info = self.query(&["INFO", "memory"])?;
        info.lines()
            .find_map(|l| l.strip_prefix("used_memory:")?.trim().parse().ok())
            .context("no used_memory in INFO")
    }

    /// Bytes and members of the seen-URL sets (`{ns}:s:*` and the other
    /// shards' `{ns/k}:s:*`), from MEMORY USAGE and SCARD of every bucket.
    pub fn seen_sets(&self, namespace: &str) -> Result<(u64, u64)> {
        let keys = self.query(&["--scan", "--pattern", &format!("{{{namespace}*:s:*")])?;
        let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
        let mut script = String::new();
        for k in &keys {
            script.push_str(&format!("MEMORY USAGE \"{k}\" SAMPLES 0\nSCARD \"{k}\"\n"));
        }
        let mut child = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        use std::io::Write;
        child
            .stdin
            .take()
            .context("redis-cli stdin")?
            .write_all(script.as_bytes())?;
        let out = String::from_utf8_lossy(&child.wait_with_output()?.stdout).into_owned();
        let nums: Vec<u64> = out.lines().filter_map(|l| l.trim().parse().ok()).collect();
        let bytes = nums.iter().step_by(2).sum();
        let members = nums.iter().skip(1).step_by(2).sum();
        Ok((bytes, members))
    }

    pub fn flush(&self) -> Result<()> {
        self.query(&["FLUSHALL"])?;
        Ok(())
    }
}

/// A Redis Cluster of three masters with a replica each, as it would run
/// in production (writes the crawl relies on wait for the replica).
pub struct Cluster {
    pub nodes: Vec<Redis>,
}

impl Cluster {
    pub fn start(work: &std::path::Path) -> Result<Option<Cluster>> {
        let mut nodes = Vec::new();
        for i in 0..6 {
            let args = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
            ];
            match Redis::start_as(work, &format!("redis-cluster-{i}"), &args)? {
                Some(r) => nodes.push(r),
                None => return Ok(None),
            }
        }
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let started = Instant::now();
        let ready = |n: &Redis| {
            let ok = n
                .query(&["CLUSTER", "INFO"])
                .is_ok_and(|i| i.contains("cluster_state:ok"));
            let replication = n.query(&["INFO", "replication"]).unwrap_or_default();
            ok && (replication.contains("role:master")
                || replication.contains("master_link_status:up"))
        };
        while !nodes.iter().all(ready) {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(20),
                "the Redis Cluster did not come up"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Some(Cluster { nodes }))
    }

    /// The nodes that are masters now.
    pub fn masters(&self) -> Vec<&Redis> {
        self.nodes
            .iter()
            .filter(|n| n.query(&["ROLE"]).is_ok_and(|r| r.starts_with("master")))
            .collect()
    }

    /// Every node, as `--redis` takes a cluster.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port))
            .collect();
        nodes.join(",")
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
