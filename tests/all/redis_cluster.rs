//! A real Redis Cluster on loopback for the tests: 3 masters and 3
//! replicas (`redis-server --cluster-enabled yes`, `redis-cli --cluster
//! create`), with a node timeout of 1 s so a replica takes over quickly.

use crate::harness::eventually;
use anyhow::{bail, Context, Result};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct RedisCluster {
    pub ports: Vec<u16>,
    _dir: tempfile::TempDir,
    children: Vec<Option<Child>>,
}

/// A free port whose cluster bus port (+10000) is free too.
fn free_pair() -> Result<u16> {
    for _ in 0..100 {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = l.local_addr()?.port();
        if port < 55_000 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free port pair for a cluster node")
}

fn info(port: u16, section: &str) -> Option<String> {
    let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .ok()?
        .get_connection()
        .ok()?;
    redis::cmd(section.split(' ').next()?)
        .arg(section.split(' ').skip(1).collect::<Vec<_>>())
        .query::<String>(&mut c)
        .ok()
}

impl RedisCluster {
    pub async fn start() -> Result<RedisCluster> {
        let dir = tempfile::tempdir()?;
        let mut ports = Vec::new();
        let mut children = Vec::new();
        for _ in 0..6 {
            let port = free_pair()?;
            let home = dir.path().join(port.to_string());
            std::fs::create_dir_all(&home)?;
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "1000"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(&home)
                .stdout(Stdio::null())
                .spawn()
                .context("starting redis-server (run scripts/setup --test)")?;
            ports.push(port);
            children.push(Some(child));
        }
        let cluster = RedisCluster {
            ports,
            _dir: dir,
            children,
        };
        for &p in &cluster.ports {
            eventually(Duration::from_secs(10), "a cluster node to answer", || {
                info(p, "PING")
            })
            .await?;
        }
        let nodes: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&nodes)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .context("running redis-cli --cluster create")?;
        anyhow::ensure!(
            out.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        for &p in &cluster.ports {
            eventually(Duration::from_secs(30), "the cluster to be ok", || {
                info(p, "CLUSTER INFO")
                    .filter(|i| i.contains("cluster_state:ok"))
                    .map(|_| ())
            })
            .await?;
        }
        // Every master has its replica attached and in sync.
        eventually(Duration::from_secs(30), "replicas in sync", || {
            let online = cluster
                .ports
                .iter()
                .filter_map(|&p| info(p, "INFO replication"))
                .filter(|i| i.contains("role:master") && i.contains("state=online"))
                .count();
            (online == 3).then_some(())
        })
        .await?;
        Ok(cluster)
    }

    /// Every node, as `--redis` takes a cluster.
    pub fn url(&self) -> String {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The index of the node that is master for `key`'s slot now.
    pub fn master_of(&self, key: &str) -> Result<usize> {
        let alive = self
            .ports
            .iter()
            .enumerate()
            .find(|(i, _)| self.children[*i].is_some())
            .map(|(_, p)| *p)
            .context("no node alive")?;
        let mut c = redis::Client::open(format!("redis://127.0.0.1:{alive}/"))?.get_connection()?;
        let slot: i64 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut c)?;
        let slots: Vec<(i64, i64, (String, i64))> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query::<Vec<redis::Value>>(&mut c)?
            .into_iter()
            .filter_map(|v| {
                let redis::Value::Array(parts) = v else {
                    return None;
                };
                let from: i64 = redis::from_redis_value(parts.first()?.clone()).ok()?;
                let to: i64 = redis::from_redis_value(parts.get(1)?.clone()).ok()?;
                let redis::Value::Array(master) = parts.get(2)? else {
                    return None;
                };
                let host: String = redis::from_redis_value(master.first()?.clone()).ok()?;
                let port: i64 = redis::from_redis_value(master.get(1)?.clone()).ok()?;
                Some((from, to, (host, port)))
            })
            .collect();
        let port = slots
            .iter()
            .find(|(from, to, _)| (*from..=*to).contains(&slot))
            .map(|(_, _, (_, p))| *p as u16)
            .context("slot not served")?;
        self.ports
            .iter()
            .position(|p| *p == port)
            .context("master not a node of ours")
    }

    /// Does `key` exist (asked of the master serving its slot)?
    pub fn exists(&self, key: &str) -> Result<bool> {
        let port = self.ports[self.master_of(key)?];
        let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?.get_connection()?;
        Ok(redis::cmd("EXISTS").arg(key).query::<i64>(&mut c)? == 1)
    }

    /// Kill node `i` at once (SIGKILL): what its clients and replica see
    /// when a machine dies.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill(i);
        }
    }
}
