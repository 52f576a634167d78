//! A `redis-server` for unit tests that need the real thing (the twins,
//! the monitors' bounds): started on a free loopback port, gone with the
//! value. `scripts/setup --test` installs it.

use std::time::Duration;

/// A `redis-server` of our own on a free loopback port, gone with it.
pub struct Server {
    child: std::process::Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Server {
    pub async fn start() -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = tempfile::tempdir().expect("tempdir");
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (scripts/setup --test installs it)");
        let url = format!("redis://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Server {
            child,
            url,
            _dir: dir,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Settings on this server under `namespace`, and a store on them.
    pub async fn store(
        &self,
        namespace: &str,
    ) -> (crate::config::Settings, std::sync::Arc<super::Redis>) {
        let mut s = crate::config::Settings::default();
        s.redis.url = self.url.clone();
        s.redis.namespace = namespace.into();
        let redis = super::Redis::connect(&s, Default::default())
            .await
            .expect("a store on the test's redis-server");
        (s, redis)
    }
}
