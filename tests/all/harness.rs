//! Test harness: the real `spinneret` binary in a scratch directory with its
//! own config and plugins, against a local [`Site`]. Nothing is shared
//! between tests, so they run in parallel.

use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

pub use spinneret_testsite::{Quirks, Site, SiteSpec};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The `spinneret` binary: `SPINNERET_BIN`, or next to this test binary's
/// `deps/` folder (target/<profile>/spinneret).
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("SPINNERET_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("current exe");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .join("spinneret");
    assert!(
        bin.exists(),
        "{} is missing: run `just build` (or `just test`)",
        bin.display()
    );
    bin
}

/// A built guest: `plugins/NAME.wasm`, `tests/fixtures/frozen/NAME.wasm`
/// (committed, never rebuilt) or `tests/fixtures/wasm/NAME.wasm`.
pub fn wasm(name: &str) -> PathBuf {
    for dir in ["plugins", "tests/fixtures/frozen"] {
        let built = repo().join(dir).join(format!("{name}.wasm"));
        if built.exists() {
            return built;
        }
    }
    let fixture = repo()
        .join("tests/fixtures/wasm")
        .join(format!("{name}.wasm"));
    assert!(
        fixture.exists(),
        "{} is missing: run `just guests`",
        fixture.display()
    );
    fixture
}

/// The compile cache the tests' processes share: `SPINNERET_TEST_CACHE`,
/// else a folder in the temp dir. `just test` compiles every guest into it
/// before the tests start, so no test waits on a cold compile while the
/// others load both cores.
pub fn test_cache() -> PathBuf {
    std::env::var_os("SPINNERET_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("spinneret-test-cache"))
}

/// Longest a test waits on a component's compile: Python and JavaScript
/// take seconds warm, and minutes cold on 2 busy cores.
pub const COMPILE_WAIT: Duration = Duration::from_secs(240);

/// Settings every test starts from: a fast throttle, loopback allowed, a
/// quick watcher. Tests append their own TOML.
pub const BASE_CONFIG: &str = r#"
[throttle]
hits = 1000
window = 1
moderated = false

[crawl]
allow_private = true
download_timeout = 5

[plugins]
watch_interval_ms = 50
"#;

/// A scratch directory with `config.toml` and `plugins/`.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    /// `plugins` are (file name in plugins/, guest to copy there).
    pub fn new(plugins: &[(&str, &str)], extra_config: &str) -> Result<Scratch> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir(dir.path().join("plugins"))?;
        for (as_name, guest) in plugins {
            std::fs::copy(
                wasm(guest),
                dir.path().join("plugins").join(format!("{as_name}.wasm")),
            )?;
        }
        // Later tables with the same name would be a TOML error, so extra
        // keys for a base table go into the same table.
        let config = merge_toml(BASE_CONFIG, extra_config)?;
        std::fs::write(dir.path().join("config.toml"), config)?;
        Ok(Scratch { dir })
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// A `spinneret` command with this scratch's config and plugins.
    pub fn command(&self, sub: &str) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(binary());
        cmd.arg(sub)
            .arg("--config")
            .arg(self.path("config.toml"))
            .arg("--plugins")
            .arg(self.path("plugins"))
            .env("XDG_CACHE_HOME", test_cache())
            .env_remove("RUST_LOG")
            .kill_on_drop(true)
            .stdin(Stdio::null());
        cmd
    }

    /// Run to the end; results from `--output`.
    /// `spinneret run` of `spider` from the site's seed to `depth`, with
    /// `extra` arguments; it must exit 0.
    pub async fn crawl(
        &self,
        spider: &str,
        site: &Site,
        depth: u32,
        extra: &[&str],
    ) -> Result<Run> {
        let (seed, depth) = (site.seed_url(), depth.to_string());
        let mut args = vec!["--spider", spider, "--seed", &seed, "--maxdepth", &depth];
        args.extend_from_slice(extra);
        self.run(&args).await?.ok()
    }

    /// `spinneret run` of `spider` from `seed` to `depth` in the
    /// background, results to `out.jsonl` and logs to `err.log` here.
    pub fn spawn_run(
        &self,
        spider: &str,
        seed: &str,
        depth: u32,
        extra: &[&str],
    ) -> Result<(tokio::process::Child, PathBuf, PathBuf)> {
        let (out, err) = (self.path("out.jsonl"), self.path("err.log"));
        let child = self
            .command("run")
            .args(["--spider", spider, "--seed", seed])
            .args(["--maxdepth", &depth.to_string()])
            .args(extra)
            .arg("--output")
            .arg(&out)
            .stderr(std::fs::File::create(&err)?)
            .spawn()?;
        Ok((child, out, err))
    }

    pub async fn run(&self, args: &[&str]) -> Result<Run> {
        let out_file = self.path(&format!("out-{}.jsonl", unique()));
        let output = self
            .command("run")
            .args(args)
            .arg("--output")
            .arg(&out_file)
            .output()
            .await
            .context("spawning spinneret")?;
        let results = read_results(&out_file)?;
        Ok(Run {
            code: output.status.code(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            results,
        })
    }
}

fn merge_toml(base: &str, extra: &str) -> Result<String> {
    let mut a: toml::Table = base.parse()?;
    let b: toml::Table = extra.parse()?;
    for (k, v) in b {
        match (a.get_mut(&k), v) {
            (Some(toml::Value::Table(t)), toml::Value::Table(u)) => t.extend(u),
            (_, v) => {
                a.insert(k, v);
            }
        }
    }
    Ok(toml::to_string(&a)?)
}

fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed).to_string()
}

pub struct Run {
    pub code: Option<i32>,
    pub stderr: String,
    pub results: Vec<Value>,
}

impl Run {
    pub fn ok(self) -> Result<Run> {
        if self.code != Some(0) {
            bail!("spinneret exited with {:?}:\n{}", self.code, self.stderr);
        }
        Ok(self)
    }

    pub fn urls(&self) -> Vec<String> {
        self.results
            .iter()
            .map(|r| r["url"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

/// Every JSON line of a results file written so far.
pub fn read_results(path: &Path) -> Result<Vec<Value>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    text.lines()
        .filter(|l| l.ends_with('}'))
        .map(|l| serde_json::from_str(l).with_context(|| format!("bad result line: {l}")))
        .collect()
}

/// Poll `check` until it returns `Some`, or fail after `deadline`.
pub async fn eventually<T>(
    deadline: Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
) -> Result<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return Ok(v);
        }
        if start.elapsed() > deadline {
            bail!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A private `redis-server` on a free loopback port, without persistence
/// (an explicit `restart` saves and reloads, like an operator's restart).
pub struct RedisServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl RedisServer {
    pub async fn start() -> Result<RedisServer> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut server = RedisServer {
            port,
            dir: tempfile::tempdir()?,
            child: None,
        };
        server.spawn().await?;
        Ok(server)
    }

    async fn spawn(&mut self) -> Result<()> {
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .spawn()
            .context("starting redis-server (run scripts/setup --test)")?;
        self.child = Some(child);
        let port = self.port;
        eventually(Duration::from_secs(10), "redis-server to answer", || {
            let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
                .ok()?
                .get_connection()
                .ok()?;
            redis::cmd("PING").query::<String>(&mut c).ok()
        })
        .await?;
        Ok(())
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn connection(&self) -> Result<redis::Connection> {
        Ok(redis::Client::open(self.url())?.get_connection()?)
    }

    /// Save, stop and start again on the same port with the saved data.
    pub async fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.resume().await
    }

    /// Save and stop: Redis is unreachable until [`Self::resume`].
    pub fn stop(&mut self) -> Result<()> {
        let mut c = self.connection()?;
        let _: redis::RedisResult<()> = redis::cmd("SHUTDOWN").arg("SAVE").query(&mut c);
        if let Some(mut child) = self.child.take() {
            child.wait()?;
        }
        Ok(())
    }

    /// Start again on the same port with the saved data.
    pub async fn resume(&mut self) -> Result<()> {
        self.spawn().await
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Where `scripts/setup` puts the tools it builds (the broker, the Python
/// Kafka client).
pub fn tools() -> PathBuf {
    std::env::var_os("SPINNERET_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/spinneret/tools")
        })
}

/// A private nisshi broker (Kafka protocol, in-memory storage) on a free
/// loopback port. A restart loses its topics, like a broker that lost its
/// disk; the harness creates them again.
pub struct Broker {
    pub port: u16,
    child: Option<std::process::Child>,
    topics: Vec<(String, i32)>,
}

impl Broker {
    pub async fn start() -> Result<Broker> {
        let port = free_port()?;
        let mut b = Broker {
            port,
            child: None,
            topics: Vec::new(),
        };
        b.spawn().await?;
        Ok(b)
    }

    async fn spawn(&mut self) -> Result<()> {
        let bin = tools().join("bin/nisshi");
        anyhow::ensure!(
            bin.exists(),
            "{} is missing: run scripts/setup --test",
            bin.display()
        );
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let child = std::process::Command::new(bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args([
                "--storage-engine",
                "memory://nisshi/",
                "--group-initial-rebalance-delay",
                "0s",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting nisshi")?;
        self.child = Some(child);
        let addr = format!("127.0.0.1:{}", self.port);
        eventually(Duration::from_secs(20), "the broker to listen", || {
            std::net::TcpStream::connect(&addr).ok()
        })
        .await?;
        let topics = std::mem::take(&mut self.topics);
        for (t, p) in &topics {
            self.create_topic(t, *p).await?;
        }
        Ok(())
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Create a topic (kept across restarts).
    pub async fn create_topic(&mut self, name: &str, partitions: i32) -> Result<()> {
        use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
        let admin: AdminClient<_> = self.client().create()?;
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let start = Instant::now();
        loop {
            let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
            match admin.create_topics([&topic], &opts).await {
                Ok(r) => {
                    match r.into_iter().next() {
                        Some(Ok(_)) | None => {}
                        Some(Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists))) => {}
                        Some(Err((t, code))) => bail!("creating topic {t}: {code}"),
                    }
                    break;
                }
                Err(e) if start.elapsed() < Duration::from_secs(20) => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => bail!("creating topic {name}: {e}"),
            }
        }
        self.topics.push((name.to_string(), partitions));
        Ok(())
    }

    pub fn client(&self) -> rdkafka::ClientConfig {
        let mut c = rdkafka::ClientConfig::new();
        c.set("bootstrap.servers", self.brokers())
            .set("log_level", "0");
        c
    }

    /// Produce messages (key, value) and wait for every acknowledgement.
    pub async fn produce(&self, topic: &str, messages: &[(String, String)]) -> Result<()> {
        use rdkafka::producer::{FutureProducer, FutureRecord};
        let p: FutureProducer = self.client().set("acks", "all").create()?;
        for (k, v) in messages {
            p.send(
                FutureRecord::to(topic).key(k).payload(v),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| anyhow::anyhow!("produce to {topic}: {e}"))?;
        }
        Ok(())
    }

    /// Read `topic` from the beginning in the background.
    pub fn collect(&self, topic: &str) -> Result<Collector> {
        use rdkafka::consumer::{Consumer, StreamConsumer};
        use rdkafka::Message;
        let consumer: StreamConsumer = self
            .client()
            .set("group.id", format!("test-{}", unique_id()))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", "20")
            .set("topic.metadata.refresh.interval.ms", "500")
            .create()?;
        consumer.subscribe(&[topic])?;
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let into = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                if let Ok(m) = consumer.recv().await {
                    let text =
                        String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
                    let key = m.key().map(|k| String::from_utf8_lossy(k).into_owned());
                    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
                    if let Ok(mut s) = into.lock() {
                        s.push(Received { key, value: v });
                    }
                }
            }
        });
        Ok(Collector { seen, task })
    }

    /// Kill and start again on the same port; topics are created again.
    pub async fn restart(&mut self) -> Result<()> {
        self.kill();
        self.spawn().await
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

#[derive(Debug, Clone)]
pub struct Received {
    pub key: Option<String>,
    pub value: Value,
}

/// Messages of one topic, read in the background.
pub struct Collector {
    seen: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Collector {
    pub fn all(&self) -> Vec<Received> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn values(&self) -> Vec<Value> {
        self.all().into_iter().map(|r| r.value).collect()
    }

    /// Wait until `pick` finds what it looks for among the values.
    pub async fn wait<T>(
        &self,
        deadline: Duration,
        what: &str,
        mut pick: impl FnMut(&[Value]) -> Option<T>,
    ) -> Result<T> {
        eventually(deadline, what, || pick(&self.values())).await
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Send `signal` (`TERM`, `INT`) to a running child.
pub fn signal(child: &tokio::process::Child, signal: &str) -> Result<()> {
    let pid = child.id().context("the process has exited")?;
    let sent = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()?;
    anyhow::ensure!(sent.success(), "kill -{signal} {pid} failed");
    Ok(())
}

pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Unique within this test process and across concurrent test processes.
pub fn unique_id() -> String {
    format!("{}-{}", std::process::id(), unique())
}
