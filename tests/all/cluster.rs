//! Cluster mode: several real worker processes sharing one crawl through a
//! real `redis-server`.

use crate::harness::{
    eventually, read_results, signal, Quirks, RedisServer, Scratch, Site, SiteSpec, COMPILE_WAIT,
};
use anyhow::Result;
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
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

    /// Every result any worker has written so far.
    pub(crate) fn results(&self) -> Vec<Value> {
        self.workers
            .iter()
            .flat_map(|(_, out)| read_results(out).unwrap_or_default())
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

/// A worker starts crawling before its plugins finish compiling: here the
/// Python spider compiles cold (an empty cache) in the background while the
/// worker already pops its pages. Those pages wait for the first compile
/// instead of failing with "no spider loaded".
#[tokio::test(flavor = "multi_thread")]
async fn pages_of_a_spider_on_its_first_compile_wait_for_it() -> Result<()> {
    let redis = RedisServer::start().await?;
    let site = Site::start(spec(120, 5)).await?;
    let cache = tempfile::tempdir()?;
    let mut cluster = Cluster::with_plugins(
        redis.url(),
        &[("link", "link"), ("py-link", "py-link")],
        &format!("[plugins]\ncache_dir = {:?}\n", cache.path()),
    )?;
    cluster.start_worker()?;
    cluster
        .submit(&[
            "--spider",
            "py-link",
            "--seed",
            &site.seed_url(),
            "--maxdepth",
            "1",
        ])
        .await?;
    let expected = site.expected(0, Some(1));
    let results = cluster.until_all_of(&expected, COMPILE_WAIT).await?;
    let failed: Vec<_> = results
        .iter()
        .filter(|r| r.get("error").is_some())
        .collect();
    assert!(failed.is_empty(), "pages failed: {failed:?}");
    let log = std::fs::read_to_string(cluster.scratch.path("worker-0.log"))?;
    assert!(
        log.lines().any(|l| l.contains("plugin loaded")
            && l.contains("py-link")
            && l.contains("compiled")),
        "py-link should have compiled in the background:\n{log}"
    );
    Ok(())
}

async fn workers_share_a_crawl(n: usize) -> Result<()> {
    // ~45 pages/s in all: slow enough that every worker gets some.
    let (_redis, site, cluster) =
        cluster_of(spec(300, 21), n, "[throttle]\nhits = 15\nwindow = 1\n").await?;
    let expected = site.expected(0, Some(2));
    cluster
        .submit(&["--seed", &site.seed_url(), "--maxdepth", "2"])
        .await?;
    let results = cluster
        .until_all_of(&expected, Duration::from_secs(90))
        .await?;
    let got = urls(&results);
    let unique: BTreeSet<String> = got.iter().cloned().collect();
    assert_eq!(unique, expected);
    assert_eq!(got.len(), unique.len(), "no duplicates without failures");
    let per_worker = cluster.per_worker();
    assert!(
        per_worker.iter().all(|n| *n > 0),
        "every worker should take part: {per_worker:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn two_workers_share_one_crawl() -> Result<()> {
    workers_share_a_crawl(2).await
}

#[tokio::test(flavor = "multi_thread")]
async fn three_workers_share_one_crawl() -> Result<()> {
    workers_share_a_crawl(3).await
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_worker_loses_nothing() -> Result<()> {
    let redis = RedisServer::start().await?;
    // 1 s per page: each worker holds about a dozen leases at any moment,
    // so the victim dies holding some.
    let site = Site::start_slow(
        SiteSpec {
            pages: 300,
            hosts: 3,
            seed: 22,
        },
        Duration::from_millis(1000),
    )
    .await?;
    let expected = site.expected(0, Some(2));
    let mut cluster = Cluster::new(
        &redis,
        "[throttle]\nhits = 12\nwindow = 1\n[crawl]\nlease_ttl = 3\ndownload_timeout = 2\n",
    )?;
    // The victim works alone first, so it certainly holds leases (pages
    // take 1 s) when the survivors arrive and it is killed.
    cluster.start_worker()?;
    cluster
        .submit(&["--seed", &site.seed_url(), "--maxdepth", "2"])
        .await?;
    eventually(Duration::from_secs(30), "the victim to be busy", || {
        (cluster.per_worker()[0] >= 10).then_some(())
    })
    .await?;
    cluster.start_worker()?;
    cluster.start_worker()?;
    cluster.workers[0].0.start_kill()?; // SIGKILL: no chance to hand anything back
    cluster.workers[0].0.wait().await?;
    let results = cluster
        .until_all_of(&expected, Duration::from_secs(120))
        .await?;
    let unique: BTreeSet<String> = urls(&results).into_iter().collect();
    assert_eq!(
        unique, expected,
        "the killed worker's leased requests were crawled by the others"
    );
    // The victim may have written results it never acked: those leases
    // expire after lease_ttl and must be reclaimed by a survivor.
    let survivor_logs = || -> String {
        (1..3)
            .map(|i| {
                std::fs::read_to_string(cluster.scratch.path(&format!("worker-{i}.log")))
                    .unwrap_or_default()
            })
            .collect()
    };
    let reclaimed = eventually(
        Duration::from_secs(20),
        "a survivor to reclaim the victim's leases",
        || {
            survivor_logs()
                .contains("expired leases put back")
                .then_some(())
        },
    )
    .await;
    if let Err(e) = reclaimed {
        let notable: Vec<String> = survivor_logs()
            .lines()
            .filter(|l| !l.contains(" INFO "))
            .take(20)
            .map(str::to_string)
            .collect();
        anyhow::bail!("{e}; survivors logged: {notable:#?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn throttle_holds_across_workers() -> Result<()> {
    let (_redis, site, cluster) = cluster_of(
        spec(120, 23),
        3,
        "[throttle]\nhits = 2\nwindow = 2\nmoderated = false\n",
    )
    .await?;
    let expected = site.expected(0, Some(1));
    cluster
        .submit(&["--seed", &site.seed_url(), "--maxdepth", "1"])
        .await?;
    cluster
        .until_all_of(&expected, Duration::from_secs(120))
        .await?;
    // robots.txt is fetched outside the throttle (once per origin).
    let mut by_host: HashMap<usize, Vec<(Instant, String)>> = HashMap::new();
    for hit in site.hits().into_iter().filter(|h| h.path != "/robots.txt") {
        by_host
            .entry(hit.host)
            .or_default()
            .push((hit.at, hit.path));
    }
    // The throttle decides in Redis; arrival at the site adds scheduling
    // jitter (more on a loaded 2-core CI machine). A broken throttle shows
    // bursts within milliseconds, so 250 ms of slack still catches it.
    let span = Duration::from_millis(2000 - 250);
    for (host, mut hits) in by_host {
        hits.sort();
        assert!(
            hits.len() >= 3,
            "host {host} should have been fetched several times"
        );
        for w in hits.windows(3) {
            let paths: Vec<&str> = w.iter().map(|h| h.1.as_str()).collect();
            assert!(
                w[2].0 - w[0].0 >= span,
                "host {host}: 3 fetches within {:?}: {paths:?}",
                w[2].0 - w[0].0
            );
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_restart_mid_crawl_completes() -> Result<()> {
    let (mut redis, site, cluster) = cluster_of(
        spec(300, 24),
        2,
        "[throttle]\nhits = 12\nwindow = 1\n[crawl]\nlease_ttl = 3\ndownload_timeout = 2\n",
    )
    .await?;
    let expected = site.expected(0, Some(2));
    cluster
        .submit(&["--seed", &site.seed_url(), "--maxdepth", "2"])
        .await?;
    eventually(Duration::from_secs(30), "the crawl to be under way", || {
        (cluster.results().len() >= 20).then_some(())
    })
    .await?;
    redis.restart().await?;
    let results = cluster
        .until_all_of(&expected, Duration::from_secs(120))
        .await?;
    let unique: BTreeSet<String> = urls(&results).into_iter().collect();
    assert_eq!(unique, expected);
    Ok(())
}

pub(crate) fn request(site: &Site, crawlid: &str, maxdepth: u32, extra: Value) -> String {
    let mut r = serde_json::json!({"url": site.seed_url(), "appid": "ops", "crawlid": crawlid, "maxdepth": maxdepth});
    if let (Some(r), Value::Object(extra)) = (r.as_object_mut(), extra) {
        r.extend(extra);
    }
    r.to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn live_domain_config_changes_running_workers() -> Result<()> {
    let (_redis, site, cluster) =
        cluster_of(spec(300, 25), 2, "[throttle]\nhits = 20\nwindow = 1\n").await?;
    let expected = site.expected(0, Some(2));
    cluster
        .submit(&["--request", &request(&site, "live", 2, Value::Null)])
        .await?;
    eventually(Duration::from_secs(30), "the crawl to be under way", || {
        (cluster.results().len() >= 15).then_some(())
    })
    .await?;

    let (slow, banned) = (
        site.addrs()[1].ip().to_string(),
        site.addrs()[2].ip().to_string(),
    );
    cluster
        .control(&["domain", "update", &slow, "--hits", "1", "--window", "1"])
        .await?;
    cluster.control(&["domain", "blacklist", &banned]).await?;
    let changed = Instant::now();
    let settle = changed + Duration::from_secs(1); // "takes effect within 1 s"
    let after = |host: usize| -> Vec<Instant> {
        let mut t: Vec<Instant> = site
            .hits()
            .iter()
            .filter(|h| h.host == host && h.at > settle && h.path != "/robots.txt")
            .map(|h| h.at)
            .collect();
        t.sort();
        t
    };
    // Watch until the slowed domain has been fetched three times.
    let slow_times = eventually(
        Duration::from_secs(20),
        "three fetches of the slowed domain",
        || {
            let t = after(1);
            (t.len() >= 3).then_some(t)
        },
    )
    .await?;
    assert!(
        after(2).is_empty(),
        "a blacklisted domain was fetched after the change"
    );
    for w in slow_times.windows(2) {
        assert!(
            w[1] - w[0] >= Duration::from_millis(750),
            "1 hit/s not applied: gap {:?}",
            w[1] - w[0]
        );
    }
    // The blacklisted domain's queue was kept: lifting both finishes the crawl.
    cluster.control(&["domain", "remove", &slow]).await?;
    cluster.control(&["domain", "unblacklist", &banned]).await?;
    let results = cluster
        .until_all_of(&expected, Duration::from_secs(90))
        .await?;
    assert_eq!(
        urls(&results).into_iter().collect::<BTreeSet<_>>(),
        expected
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_purges_the_crawl_and_refuses_its_children() -> Result<()> {
    let (_redis, site, cluster) =
        cluster_of(spec(300, 26), 1, "[throttle]\nhits = 4\nwindow = 1\n").await?;
    let expected = site.expected(0, Some(2));
    cluster
        .submit(&["--request", &request(&site, "stopme", 2, Value::Null)])
        .await?;
    eventually(Duration::from_secs(30), "some results", || {
        (cluster.results().len() >= 5).then_some(())
    })
    .await?;
    let reply = cluster
        .control(&["stop", "--appid", "ops", "--crawlid", "stopme"])
        .await?;
    assert_eq!(reply["action"], "stop");
    assert!(reply["total_purged"].as_u64().unwrap_or(0) > 0, "{reply}");
    let info = cluster.until_done("ops", "stopme").await?;
    assert_eq!(info["total_pending"], 0);
    let after_stop = cluster.results().len();
    assert!(
        after_stop < expected.len(),
        "the stop came too late to purge anything"
    );

    // Same crawl again: its seed is crawled, none of its children.
    cluster
        .submit(&["--request", &request(&site, "stopme", 2, Value::Null)])
        .await?;
    eventually(Duration::from_secs(30), "the seed again", || {
        (cluster.results().len() > after_stop).then_some(())
    })
    .await?;
    cluster.until_done("ops", "stopme").await?;
    assert_eq!(
        cluster.results().len(),
        after_stop + 1,
        "a stopped crawl's children must be refused"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn expire_ends_a_crawl_at_its_time() -> Result<()> {
    let (_redis, site, cluster) =
        cluster_of(spec(300, 27), 1, "[throttle]\nhits = 4\nwindow = 1\n").await?;
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        + 3;
    cluster
        .submit(&[
            "--request",
            &request(&site, "brief", 2, serde_json::json!({"expires": expires})),
        ])
        .await?;
    let log = cluster.scratch.path("worker-0.log");
    eventually(Duration::from_secs(20), "the expiry", || {
        std::fs::read_to_string(&log)
            .ok()?
            .contains("crawl expired")
            .then_some(())
    })
    .await?;
    let info = cluster.until_done("ops", "brief").await?;
    assert_eq!(info["total_pending"], 0);
    let n = cluster.results().len();
    assert!(n > 0 && n < site.expected(0, Some(2)).len(), "{n} results");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn info_and_stats_describe_the_cluster() -> Result<()> {
    let (_redis, site, cluster) = cluster_of(spec(300, 28), 1, "").await?;
    let expected = site.expected(0, Some(1));
    cluster
        .submit(&["--request", &request(&site, "counted", 1, Value::Null)])
        .await?;
    cluster
        .until_all_of(&expected, Duration::from_secs(60))
        .await?;
    let info = cluster.until_done("ops", "counted").await?;
    assert_eq!(
        info["crawled"].as_u64(),
        Some(expected.len() as u64),
        "{info}"
    );
    assert_eq!(info["in_flight"], 0);

    let results = cluster.results();
    let ok = results.iter().filter(|r| r["status_code"] == 200).count() as u64;
    let spiders = cluster.spider_stats_with(ok).await?;
    assert_eq!(
        spiders["link"]["200"]["900"].as_u64(),
        Some(ok),
        "{spiders}"
    );
    assert_eq!(spiders["link"]["count"], 1);
    let machines = &cluster.control(&["stats", "--type", "machine"]).await?["machines"];
    assert_eq!(machines["count"], 1, "{machines}");
    let queues = &cluster.control(&["stats", "--type", "queue"]).await?["queues"];
    assert_eq!(queues["total_backlog"], 0, "{queues}");
    let app = cluster.control(&["info", "--appid", "ops"]).await?;
    assert_eq!(app["total_crawlids"], 1, "{app}");
    assert!(app["crawlids"]["counted"].is_object(), "{app}");
    Ok(())
}

/// SIGTERM to a worker mid-crawl: it takes no new work, gives back the
/// requests it holds once most of its grace is gone, and exits 0 within
/// `process.shutdown_grace`. Another worker crawls those requests at once,
/// not after `lease_ttl` (two minutes here), and the stopped worker's
/// output holds only whole results.
#[tokio::test(flavor = "multi_thread")]
async fn a_terminated_worker_hands_back_its_requests_at_once() -> Result<()> {
    let redis = RedisServer::start().await?;
    // Pages take 2.5 s: longer than the 1.5 s the stop gives them to end.
    let site = Site::start_slow(spec(120, 23), Duration::from_millis(2500)).await?;
    let expected = site.expected(0, Some(1));
    let mut cluster = Cluster::new(
        &redis,
        "[crawl]\nlease_ttl = 120\n[process]\nshutdown_grace = 3\n",
    )?;
    cluster.start_worker()?;
    cluster
        .submit(&["--seed", &site.seed_url(), "--maxdepth", "1"])
        .await?;
    // Once the seed is written its children are leased, each in flight
    // for 2.5 s.
    eventually(Duration::from_secs(30), "the seed's result", || {
        (cluster.per_worker()[0] >= 1).then_some(())
    })
    .await?;
    cluster.start_worker()?;
    let signalled = Instant::now();
    signal(&cluster.workers[0].0, "TERM")?;
    let status =
        tokio::time::timeout(Duration::from_secs(10), cluster.workers[0].0.wait()).await??;
    let took = signalled.elapsed();
    let log = std::fs::read_to_string(cluster.scratch.path("worker-0.log"))?;
    assert!(status.success(), "exit {status:?}:\n{log}");
    assert!(took < Duration::from_secs(3), "took {took:?}:\n{log}");
    assert!(
        log.contains("giving requests in flight back"),
        "the stop released leases:\n{log}"
    );
    let results = cluster
        .until_all_of(&expected, Duration::from_secs(60))
        .await?;
    let unique: BTreeSet<String> = urls(&results).into_iter().collect();
    assert_eq!(unique, expected);
    // Every line the stopped worker wrote is a whole result.
    let text = std::fs::read_to_string(&cluster.workers[0].1)?;
    for line in text.lines() {
        serde_json::from_str::<Value>(line).map_err(|e| {
            anyhow::anyhow!("torn line in the stopped worker's output: {e}: {line}")
        })?;
    }
    Ok(())
}

/// A live worker renews the leases it holds: a request whose robots.txt
/// takes 5 s (two slow hops) with `lease_ttl` at 3 s is not taken over by
/// the other worker, so the page is fetched exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_busy_past_its_lease_is_fetched_once() -> Result<()> {
    let redis = RedisServer::start().await?;
    let site = Site::start_with(
        spec(30, 24),
        Quirks {
            robots: Duration::from_millis(2500),
            ..Quirks::default()
        },
    )
    .await?;
    let mut cluster = Cluster::new(
        &redis,
        "[crawl]\nlease_ttl = 3\ndownload_timeout = 3\nobey_robots = true\n",
    )?;
    cluster.start_worker()?;
    cluster.start_worker()?;
    let seed = site.seed_url();
    let request = json!({"url": seed, "appid": "lease", "crawlid": "slow-robots", "maxdepth": 0});
    cluster.submit(&["--request", &request.to_string()]).await?;
    cluster.until_done("lease", "slow-robots").await?;
    let path = url::Url::parse(&seed)?.path().to_string();
    let fetches = site.hits().iter().filter(|h| h.path == path).count();
    let robots = site
        .hits()
        .iter()
        .filter(|h| h.path == "/robots.txt")
        .count();
    assert!(robots >= 2, "robots.txt took its two slow hops ({robots})");
    assert_eq!(fetches, 1, "the page was fetched {fetches} times");
    assert_eq!(cluster.results().len(), 1);
    Ok(())
}

/// A crawl submitted again with new attrs: the worker's cached spec is
/// replaced, so the resubmitted seed and the crawl's remaining pages carry
/// the new attrs.
#[tokio::test(flavor = "multi_thread")]
async fn a_resubmitted_crawl_takes_its_new_attrs_on_the_same_worker() -> Result<()> {
    let redis = RedisServer::start().await?;
    let site = Site::start(spec(120, 25)).await?;
    // Two pages per second per host: the crawl is still queued when the
    // second submission arrives.
    let mut cluster = Cluster::new(&redis, "[throttle]\nhits = 2\nwindow = 1\n")?;
    cluster.start_worker()?;
    let seed = site.seed_url();
    let submit = |v: u32| {
        json!({"url": seed, "appid": "attrs", "crawlid": "again", "maxdepth": 1, "attrs": {"v": v}})
            .to_string()
    };
    cluster.submit(&["--request", &submit(1)]).await?;
    eventually(Duration::from_secs(30), "the first results", || {
        (cluster.per_worker()[0] >= 2).then_some(())
    })
    .await?;
    cluster.submit(&["--request", &submit(2)]).await?;
    cluster.until_done("attrs", "again").await?;
    let results = cluster.results();
    let second_seed = results
        .iter()
        .enumerate()
        .filter(|(_, r)| r["url"] == seed.as_str())
        .nth(1)
        .map(|(i, _)| i)
        .expect("the seed is crawled again when resubmitted");
    let after: Vec<&Value> = results[second_seed..].iter().collect();
    assert!(
        after.len() >= 3,
        "pages left after the resubmission: {}",
        after.len()
    );
    for r in after {
        assert_eq!(r["attrs"], json!({"v": 2}), "{}", r["url"]);
    }
    Ok(())
}

/// A second signal does not wait for the grace: the worker exits at once
/// (130), leaving its leases to expire as a killed worker's would.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_signal_exits_at_once() -> Result<()> {
    let redis = RedisServer::start().await?;
    let site = Site::start_slow(spec(30, 26), Duration::from_secs(20)).await?;
    let mut cluster = Cluster::new(
        &redis,
        "[crawl]\nlease_ttl = 60\ndownload_timeout = 30\n[process]\nshutdown_grace = 30\n",
    )?;
    cluster.start_worker()?;
    cluster
        .submit(&["--seed", &site.seed_url(), "--maxdepth", "0"])
        .await?;
    let log = cluster.scratch.path("worker-0.log");
    eventually(Duration::from_secs(30), "the seed in flight", || {
        site.hits()
            .iter()
            .any(|h| h.path.starts_with("/p/"))
            .then_some(())
    })
    .await?;
    signal(&cluster.workers[0].0, "TERM")?;
    eventually(Duration::from_secs(10), "the first signal taken", || {
        std::fs::read_to_string(&log)
            .ok()?
            .contains("stopping: no new work")
            .then_some(())
    })
    .await?;
    let signalled = Instant::now();
    signal(&cluster.workers[0].0, "TERM")?;
    let status =
        tokio::time::timeout(Duration::from_secs(10), cluster.workers[0].0.wait()).await??;
    assert_eq!(status.code(), Some(130));
    assert!(signalled.elapsed() < Duration::from_secs(5));
    Ok(())
}
