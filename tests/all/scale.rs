//! What coordination costs Redis (issue 15).

use crate::cluster::{request, spec, Cluster};
use crate::harness::{eventually, RedisServer, Site};
use crate::redis_cluster::RedisCluster;
use anyhow::Result;
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;

/// Calls of every command Redis has run, those inside scripts included,
/// from `INFO commandstats`; the `INFO` calls themselves left out.
fn commands(con: &mut redis::Connection) -> Result<u64> {
    let text: String = redis::cmd("INFO").arg("commandstats").query(con)?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with("cmdstat_") && !l.starts_with("cmdstat_info:"))
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

/// Idle workers wait on a pushed wake-up and pace their upkeep: three
/// `--serve` workers with nothing queued send at most 30 commands in 10 s
/// between them (they sent ~58 each per second when they polled).
#[tokio::test(flavor = "multi_thread")]
async fn idle_workers_cost_redis_at_most_one_command_a_second() -> Result<()> {
    let redis = RedisServer::start().await?;
    let mut cluster = Cluster::new(&redis, "")?;
    for _ in 0..3 {
        cluster.start_worker()?;
    }
    let mut con = redis.connection()?;
    let hb = format!("{{{}}}:hb", cluster.ns);
    // All three have sent their first heartbeat.
    eventually(Duration::from_secs(60), "three heartbeats", || {
        let n: u64 = redis::cmd("ZCARD").arg(&hb).query(&mut con).ok()?;
        (n == 3).then_some(())
    })
    .await?;
    // Their start is over (each worker's first pops, its scripts loaded)
    // once Redis has seen no command from them for a second.
    let mut last = (commands(&mut con)?, std::time::Instant::now());
    eventually(Duration::from_secs(60), "the workers' start to end", || {
        let n = commands(&mut con).ok()?;
        if n != last.0 {
            last = (n, std::time::Instant::now());
        }
        (last.1.elapsed() >= Duration::from_secs(1)).then_some(())
    })
    .await?;
    let before = commands(&mut con)?;
    let stats_before: String = redis::cmd("INFO").arg("commandstats").query(&mut con)?;
    // The measurement window itself (no event to wait for): as long as a
    // heartbeat period, so every worker beats at least once within it.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let sent = commands(&mut con)? - before;
    let stats_after: String = redis::cmd("INFO").arg("commandstats").query(&mut con)?;
    let logs: Vec<String> = (0..3)
        .map(|i| {
            std::fs::read_to_string(cluster.scratch.path(&format!("worker-{i}.log")))
                .unwrap_or_default()
        })
        .collect();
    assert!(
        sent <= 30,
        "3 idle workers sent {sent} Redis commands in 10 s:\nbefore {stats_before}\nafter {stats_after}\n{}",
        logs.join("\n---\n")
    );
    // The workers were alive and beating all along.
    let n: u64 = redis::cmd("ZCARD").arg(&hb).query(&mut con)?;
    assert_eq!(n, 3);
    assert!(sent >= 3, "no heartbeat in 10 s ({sent} commands)");
    Ok(())
}

/// Three workers crawl through a Redis Cluster (3 masters, 3 replicas),
/// `--redis` naming all six nodes: exactly the expected pages, and the
/// crawl's info says it is done.
#[tokio::test(flavor = "multi_thread")]
async fn three_workers_crawl_through_a_redis_cluster() -> Result<()> {
    let redis = RedisCluster::start().await?;
    let site = Site::start(spec(240, 43)).await?;
    let expected = site.expected(0, None);
    // Paced by the throttle (~90 pages/s in all), so every worker gets
    // some: unpaced, the three sites' in-flight caps (24 fetches) are all
    // one worker's 64 tasks need, and the worker whose fetch ends takes
    // the freed slot (ARCHITECTURE.md, "Sites set the pace").
    let config = "[crawl]\nmaxdepth_limit = 100\n[throttle]\nhits = 30\nwindow = 1\n";
    let mut cluster = Cluster::on(redis.url(), config)?;
    for _ in 0..3 {
        cluster.start_worker()?;
    }
    cluster
        .submit(&["--request", &request(&site, "sharded", 100, Value::Null)])
        .await?;
    let results = cluster
        .until_all_of(&expected, Duration::from_secs(60))
        .await?;
    let urls: Vec<&str> = results.iter().filter_map(|r| r["url"].as_str()).collect();
    let unique: BTreeSet<&str> = urls.iter().copied().collect();
    assert_eq!(unique.len(), urls.len(), "a page was crawled twice");
    assert_eq!(unique.len(), expected.len());
    let info = cluster.until_done("ops", "sharded").await?;
    assert_eq!(info["in_flight"], 0, "{info}");
    assert!(
        cluster.per_worker().iter().all(|n| *n > 0),
        "a worker got nothing"
    );
    // The site's three domains went to shards of their own.
    let ns = cluster.ns.trim_matches(['{', '}']);
    let mut used = 0;
    for k in 0..16 {
        let tag = if k == 0 {
            format!("{{{ns}}}")
        } else {
            format!("{{{ns}/{k}}}")
        };
        used += redis.exists(&format!("{tag}:seq"))? as usize;
    }
    assert!(used >= 2, "the crawl used {used} shard(s)");
    Ok(())
}

/// Info, stop, expiry and stats answer alike on one Redis server (one
/// shard) and on a Redis Cluster (16 shards), for crawls whose requests
/// lie on several shards.
#[tokio::test(flavor = "multi_thread")]
async fn control_answers_match_on_one_server_and_a_sharded_cluster() -> Result<()> {
    let single = RedisServer::start().await?;
    let sharded = RedisCluster::start().await?;
    let (one, many) = tokio::join!(control_story(single.url()), control_story(sharded.url()));
    let (one, many) = (one?, many?);
    assert_eq!(one.len(), many.len());
    for (a, b) in one.iter().zip(&many) {
        assert_eq!(a, b, "one server vs cluster");
    }
    Ok(())
}

/// The control answers of one story: a crawl held on three domains (info,
/// app info, stop), one run to its end (info, spider stats), one expired
/// on blacklisted domains (the purge count, info). Times and ids left out.
async fn control_story(redis_url: String) -> Result<Vec<Value>> {
    let site = Site::start(spec(60, 44)).await?;
    let mut cluster = Cluster::on(redis_url, "")?;
    let seeds = first_page_of_each_host(&site, 60);
    assert_eq!(seeds.len(), 3, "{seeds:?}");
    let mut answers = held_story(&cluster, &site, &seeds).await?;
    cluster.start_worker()?;
    answers.extend(counted_story(&cluster, &site).await?);
    answers.extend(expired_story(&cluster, &site, &seeds).await?);
    Ok(answers)
}

/// The first page of each of the site's hosts, among its first `pages`.
fn first_page_of_each_host(site: &Site, pages: usize) -> Vec<String> {
    let mut seeds: Vec<String> = Vec::new();
    for i in 0..pages {
        let url = site.url(i);
        let host = url.split('/').nth(2).unwrap_or_default().to_string();
        if !seeds.iter().any(|s| s.contains(&host)) {
            seeds.push(url);
        }
    }
    seeds
}

/// One request of crawl `crawlid` per seed, with `extra` fields.
fn seed_requests(site: &Site, seeds: &[String], crawlid: &str, extra: Value) -> Vec<String> {
    seeds
        .iter()
        .map(|u| {
            let mut e = serde_json::json!({"url": u});
            if let (Some(e), Value::Object(x)) = (e.as_object_mut(), extra.clone()) {
                e.extend(x);
            }
            request(site, crawlid, 1, e)
        })
        .collect()
}

/// An answer without what differs between runs: times and ids.
fn clean(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        for k in ["server_time", "uuid", "expires"] {
            o.remove(k);
        }
        if let Some(stats) = o.get_mut("stats").and_then(Value::as_object_mut) {
            stats.remove("duration_ms");
        }
    }
    v
}

/// A crawl held on three domains (no worker yet): info, app info, stop,
/// info again.
async fn held_story(cluster: &Cluster, site: &Site, seeds: &[String]) -> Result<Vec<Value>> {
    let mut answers = Vec::new();
    for r in seed_requests(site, seeds, "held", Value::Null) {
        cluster.submit(&["--request", &r]).await?;
    }
    let held = cluster
        .control(&["info", "--appid", "ops", "--crawlid", "held"])
        .await?;
    assert_eq!(held["total_pending"], 3, "{held}");
    answers.push(clean(held));
    answers.push(clean(cluster.control(&["info", "--appid", "ops"]).await?));
    let stop = cluster
        .control(&["stop", "--appid", "ops", "--crawlid", "held"])
        .await?;
    assert_eq!(stop["total_purged"], 3, "{stop}");
    answers.push(clean(stop));
    answers.push(clean(
        cluster
            .control(&["info", "--appid", "ops", "--crawlid", "held"])
            .await?,
    ));
    Ok(answers)
}

/// A crawl run to its end by one worker: its info and the spider stats.
async fn counted_story(cluster: &Cluster, site: &Site) -> Result<Vec<Value>> {
    let mut answers = Vec::new();
    let expected = site.expected(0, Some(1));
    cluster
        .submit(&["--request", &request(site, "counted", 1, Value::Null)])
        .await?;
    cluster
        .until_all_of(&expected, Duration::from_secs(60))
        .await?;
    answers.push(clean(cluster.until_done("ops", "counted").await?));
    let ok = cluster
        .results()
        .iter()
        .filter(|r| r["status_code"] == 200)
        .count() as u64;
    answers.push(cluster.spider_stats_with(ok).await?["link"].clone());
    Ok(answers)
}

/// A crawl on blacklisted domains that expires: the queue stats, the purge
/// count, and its info once done.
async fn expired_story(cluster: &Cluster, site: &Site, seeds: &[String]) -> Result<Vec<Value>> {
    let mut answers = Vec::new();
    for s in seeds {
        let host = s.split('/').nth(2).unwrap_or_default();
        let domain = host.split(':').next().unwrap_or_default();
        cluster.control(&["domain", "blacklist", domain]).await?;
    }
    // Far enough ahead for the three submissions to be in.
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        + 5;
    for r in seed_requests(
        site,
        seeds,
        "brief",
        serde_json::json!({"expires": expires}),
    ) {
        cluster.submit(&["--request", &r]).await?;
    }
    let brief = cluster
        .control(&["info", "--appid", "ops", "--crawlid", "brief"])
        .await?;
    assert_eq!(brief["total_pending"], 3, "{brief}");
    let queues = cluster.control(&["stats", "--type", "queue"]).await?;
    assert_eq!(queues["queues"]["total_backlog"], 3, "{queues}");
    answers.push(clean(queues));
    let log = cluster.scratch.path("worker-0.log");
    let purged = eventually(Duration::from_secs(20), "the expiry", || {
        let log = std::fs::read_to_string(&log).ok()?;
        let line = log
            .lines()
            .find(|l| l.contains("crawl expired") && l.contains("brief"))?;
        let purged = line.split("purged=").nth(1)?.split_whitespace().next()?;
        purged.parse::<u64>().ok()
    })
    .await?;
    let info = cluster
        .control(&["info", "--appid", "ops", "--crawlid", "brief"])
        .await?;
    let log = std::fs::read_to_string(&log)?;
    assert_eq!(
        purged, 3,
        "the expiry purges the crawl on every shard: {info}\n{log}"
    );
    answers.push(purged.into());
    answers.push(clean(cluster.until_done("ops", "brief").await?));
    Ok(answers)
}

/// Three workers crawl through a Redis Cluster (3 masters, 3 replicas),
/// and the master of shard 0 is killed mid-crawl: its replica takes over,
/// and the workers finish the crawl with exactly the expected pages. What
/// the dead master had not yet passed to its replica comes back as leases
/// that run out and are crawled again: duplicates, never gaps. (This
/// found lease ids handed out twice after a failover, and links queued on
/// one master lost while their page was acked on another.)
#[tokio::test(flavor = "multi_thread")]
async fn a_crawl_on_redis_cluster_survives_a_master_failover() -> Result<()> {
    let mut redis = RedisCluster::start().await?;
    let site = Site::start_slow(spec(240, 41), Duration::from_millis(100)).await?;
    let expected = site.expected(0, None);
    let mut cluster = Cluster::on(
        redis.url(),
        "[crawl]\nlease_ttl = 5\ndownload_timeout = 4\nmaxdepth_limit = 100\n",
    )?;
    for _ in 0..3 {
        cluster.start_worker()?;
    }
    cluster
        .submit(&["--request", &request(&site, "failover", 100, Value::Null)])
        .await?;
    eventually(Duration::from_secs(60), "the crawl under way", || {
        (cluster.results().len() >= 20).then_some(())
    })
    .await?;
    let master = redis.master_of(&format!("{{{}}}:ready", cluster.ns))?;
    redis.kill(master);
    let results = match cluster
        .until_all_of(&expected, Duration::from_secs(60))
        .await
    {
        Ok(r) => r,
        Err(e) => {
            // What is missing, and what the workers said (each message once).
            let got: BTreeSet<String> = cluster
                .results()
                .iter()
                .filter_map(|r| r["url"].as_str().map(str::to_string))
                .collect();
            let missing: Vec<&String> = expected.difference(&got).take(10).collect();
            // Every line naming a missing page (its story, with
            // RUST_LOG=spinneret::crawl=debug), in order per worker.
            let mut said = BTreeSet::new();
            let mut story = Vec::new();
            for i in 0..3 {
                let log = cluster.scratch.path(&format!("worker-{i}.log"));
                for line in std::fs::read_to_string(log).unwrap_or_default().lines() {
                    if missing.iter().any(|m| line.contains(m.as_str())) {
                        story.push(format!("worker {i}: {line}"));
                    }
                    if !line.contains("page crawled") && !line.contains("settling") {
                        said.insert(line.split_once(' ').map_or(line, |(_, m)| m).to_string());
                    }
                }
            }
            let said: Vec<String> = said.into_iter().collect();
            anyhow::bail!(
                "{e}; missing {missing:?}; about them:\n{}\nthe workers said:\n{}",
                story.join("\n"),
                said.join("\n")
            );
        }
    };
    let got: BTreeSet<String> = results
        .iter()
        .filter_map(|r| r["url"].as_str().map(str::to_string))
        .collect();
    assert_eq!(got, expected);
    // The crawl is seen through to its end on the new master.
    let info = cluster.until_done("ops", "failover").await?;
    assert_eq!(info["in_flight"], 0, "{info}");
    Ok(())
}
