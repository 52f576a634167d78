//! Recurring and incremental crawls (`schedule`, `revisit`) and the
//! events that tell a crawl's life, embedded.

use crate::harness::{read_results, Quirks, Scratch, Site, SiteSpec};
use anyhow::Result;
use serde_json::{json, Value};
use std::collections::BTreeMap;

fn by_run(events: &[Value], kind: &str) -> BTreeMap<u64, Value> {
    events
        .iter()
        .filter(|e| e["event"] == kind)
        .map(|e| (e["run"].as_u64().unwrap_or(0), e.clone()))
        .collect()
}

/// A site whose pages carry ETags, the pages a crawl of depth 1 reaches,
/// and a scratch space with the link spider.
async fn etag_site(spec: SiteSpec) -> Result<(Site, std::collections::BTreeSet<String>, Scratch)> {
    let quirks = Quirks {
        etags: true,
        ..Quirks::default()
    };
    let site = Site::start_with(spec, quirks).await?;
    let pages = site.expected(0, Some(1));
    Ok((site, pages, Scratch::new(&[("link", "link")], "")?))
}

/// Three runs of a small site, two seconds apart: the first finds every
/// page new; the second asks for each with its ETag, every page answers
/// 304 and no result is sent; one page changed before the third, which
/// sends exactly that one.
#[tokio::test(flavor = "multi_thread")]
async fn a_scheduled_crawl_sends_only_what_changed_since_its_last_run() -> Result<()> {
    let spec = SiteSpec {
        pages: 30,
        hosts: 2,
        seed: 3,
    };
    let (site, pages, s) = etag_site(spec).await?;
    let request = json!({
        "url": site.seed_url(), "appid": "testapp", "crawlid": "recurring", "maxdepth": 1,
        "schedule": {"every": 2, "max_runs": 3},
        "revisit": {"emit": "changed"},
    });
    let events = s.path("events.jsonl");
    let out = s.path("out.jsonl");
    let mut child = s
        .command("run")
        .args(["--spider", "link", "--request", &request.to_string()])
        .arg("--events")
        .arg(&events)
        .arg("--output")
        .arg(&out)
        .stderr(std::fs::File::create(s.path("err.log"))?)
        .spawn()?;
    // After run 2 is over and before run 3 fires: one page changes.
    let completed = |n: usize| {
        let e = read_results(&events).unwrap_or_default();
        (by_run(&e, "crawl.completed").len() >= n).then_some(e)
    };
    crate::harness::eventually(std::time::Duration::from_secs(30), "run 2's end", || {
        completed(2)
    })
    .await?;
    let changed = (1..spec.pages)
        .find(|i| pages.contains(&site.url(*i)))
        .expect("a page under the seed");
    let changed_url = site.url(changed);
    site.change_page(changed);
    let status = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait()).await??;
    let log = std::fs::read_to_string(s.path("err.log"))?;
    assert!(status.success(), "run exited {status}: {log}");

    let events = read_results(&events)?;
    let done = by_run(&events, "crawl.completed");
    assert_eq!(
        done.keys().copied().collect::<Vec<_>>(),
        [1, 2, 3],
        "{events:?}"
    );
    assert_eq!(by_run(&events, "schedule.fired").len(), 3);
    let n = pages.len() as u64;
    assert_eq!(done[&1]["stats"]["change"], json!({"new": n}));
    assert_eq!(done[&2]["stats"]["change"], json!({"same": n}));
    assert_eq!(
        done[&2]["stats"]["by_status"],
        json!({"3xx": n}),
        "every page answered 304"
    );
    assert_eq!(
        done[&3]["stats"]["change"],
        json!({"changed": 1, "same": n - 1})
    );
    let ids: std::collections::BTreeSet<&str> =
        events.iter().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(ids.len(), events.len(), "one id per event");

    let results = read_results(&out)?;
    let of_run = |r: u64| -> Vec<&Value> { results.iter().filter(|x| x["run"] == r).collect() };
    assert_eq!(of_run(1).len() as u64, n);
    assert!(of_run(1).iter().all(|r| r["change"] == "new"));
    assert!(of_run(2).is_empty(), "unchanged pages are not sent");
    let third = of_run(3);
    assert_eq!(third.len(), 1, "{third:?}");
    assert_eq!(
        (third[0]["url"].as_str(), third[0]["change"].as_str()),
        (Some(changed_url.as_str()), Some("changed"))
    );

    // Every page request after the first run named the page's ETag.
    let hits: Vec<_> = site
        .hits()
        .into_iter()
        .filter(|h| h.path.starts_with("/p/"))
        .collect();
    let conditional = hits
        .iter()
        .filter(|h| h.headers.iter().any(|(k, _)| k == "if-none-match"))
        .count() as u64;
    assert_eq!(hits.len() as u64, 3 * n);
    assert_eq!(conditional, 2 * n);
    Ok(())
}

/// Adaptive intervals: five runs a second apart of a site that never
/// changes, each page's interval doubling while it stays the same (at most
/// 4 runs): every page under the seed is read in runs 1, 2 and 4 and rests
/// in 3 and 5; the seed is read every run; a resting page is never
/// reported `removed`.
#[tokio::test(flavor = "multi_thread")]
async fn an_adaptive_crawl_rests_pages_that_stay_the_same() -> Result<()> {
    let (site, pages, s) = etag_site(SiteSpec {
        pages: 20,
        hosts: 1,
        seed: 5,
    })
    .await?;
    let request = json!({
        "url": site.seed_url(), "appid": "testapp", "crawlid": "adaptive", "maxdepth": 1,
        "schedule": {"every": 1, "max_runs": 5},
        "revisit": {"adaptive": {"max_interval": 4, "inc": 1.0, "dec": 0.5}},
    });
    let events = s.path("events.jsonl");
    let status = s
        .command("run")
        .args(["--spider", "link", "--request", &request.to_string()])
        .arg("--events")
        .arg(&events)
        .arg("--output")
        .arg(s.path("out.jsonl"))
        .stderr(std::fs::File::create(s.path("err.log"))?)
        .status()
        .await?;
    let log = std::fs::read_to_string(s.path("err.log"))?;
    assert!(status.success(), "run exited {status}: {log}");
    let events = read_results(&events)?;
    let done = by_run(&events, "crawl.completed");
    assert_eq!(done.len(), 5, "{events:?}");
    assert!(
        done.values()
            .all(|e| e["stats"]["change"].get("removed").is_none()),
        "{done:?}"
    );
    let results = read_results(&s.path("out.jsonl"))?;
    let seed = site.seed_url();
    for page in &pages {
        let runs: Vec<u64> = results
            .iter()
            .filter(|r| r["url"] == page.as_str())
            .filter_map(|r| r["run"].as_u64())
            .collect();
        let want: &[u64] = if *page == seed {
            &[1, 2, 3, 4, 5]
        } else {
            &[1, 2, 4]
        };
        assert_eq!(runs, want, "{page}");
    }
    Ok(())
}

/// Three runs of a revisited crawl over two workers on Redis, each
/// driving the runs, one of them killed (SIGKILL) in the middle of run 1:
/// every run fires once and ends once (one `crawl.completed` per run
/// across both); run 2 asks for every page with its ETag, each answers
/// 304 and nothing is sent; one page changed before run 3 (the schedule
/// paused meanwhile with `spinneret schedule`), which sends that one. The figures of each run come from the store, summed over
/// both workers' acks.
#[tokio::test(flavor = "multi_thread")]
async fn a_revisited_crawl_on_redis_runs_once_per_fire_time_whoever_is_up() -> Result<()> {
    let redis = crate::harness::RedisServer::start().await?;
    revisited_over_two_workers(redis.url(), true).await
}

/// The same on the Redis Cluster harness (16 shards over 3 masters), with
/// both workers up throughout: two control planes firing and ending runs
/// whose pages, figures and kept states are spread over every shard.
#[tokio::test(flavor = "multi_thread")]
async fn a_revisited_crawl_on_a_redis_cluster_runs_once_per_fire_time() -> Result<()> {
    let redis = crate::redis_cluster::RedisCluster::start().await?;
    revisited_over_two_workers(redis.url(), false).await
}

async fn revisited_over_two_workers(redis_url: String, kill: bool) -> Result<()> {
    use crate::cluster::{request, spec, Cluster};
    let quirks = Quirks {
        etags: true,
        ..Quirks::default()
    };
    let site = Site::start_with(spec(24, 4), quirks).await?;
    let pages = site.expected(0, Some(1));
    let n = pages.len() as u64;
    let mut cluster = Cluster::on(redis_url, "[crawl]\nlease_ttl = 5\n")?;
    cluster.start_worker()?;
    cluster.start_worker()?;
    let r = request(
        &site,
        "every-two-seconds",
        1,
        json!({"schedule": {"every": 2, "max_runs": 3}, "revisit": {"emit": "changed"}}),
    );
    cluster.submit(&["--request", &r]).await?;
    let within = std::time::Duration::from_secs(60);
    crate::harness::eventually(within, "run 1 under way", || {
        (cluster.results().len() >= 3).then_some(())
    })
    .await?;
    if kill {
        cluster.kill_worker(1).await?;
    }
    // Paused once run 2 fired (it goes on), so that run 3 waits for the
    // page to change; resumed, it fires at once (`misfire: once`).
    crate::harness::eventually(within, "run 2 fired", || {
        let e = cluster.events();
        (by_run(&e, "schedule.fired").len() >= 2).then_some(())
    })
    .await?;
    let act = |action: &'static str| {
        let args = [
            "schedule",
            action,
            "--appid",
            "ops",
            "--crawlid",
            "every-two-seconds",
        ];
        let cluster = &cluster;
        async move { cluster.control(&args).await }
    };
    let paused = act("pause").await?;
    assert_eq!(paused["schedule"]["paused"], true, "{paused}");
    let e = crate::harness::eventually(within, "run 2's end", || {
        let e = cluster.events();
        (by_run(&e, "crawl.completed").len() >= 2).then_some(e)
    })
    .await?;
    anyhow::ensure!(
        by_run(&e, "schedule.fired").len() == 2,
        "run 3 fired while paused: {e:?}"
    );
    let changed = (1..24)
        .find(|i| pages.contains(&site.url(*i)))
        .expect("a page under the seed");
    site.change_page(changed);
    act("resume").await?;
    let done = crate::harness::eventually(within, "three runs completed", || {
        let e = cluster.events();
        (by_run(&e, "crawl.completed").len() >= 3).then_some(e)
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", cluster.logs()))?;
    let count = |kind: &str, run: u64| {
        done.iter()
            .filter(|e| e["event"] == kind && e["run"] == run)
            .count()
    };
    for run in 1..=3 {
        assert_eq!(count("schedule.fired", run), 1, "run {run}: {done:?}");
        assert_eq!(count("crawl.completed", run), 1, "run {run}: {done:?}");
    }
    let ended = by_run(&done, "crawl.completed");
    assert_eq!(ended[&1]["stats"]["change"], json!({"new": n}), "{done:?}");
    assert_eq!(ended[&1]["stats"]["by_status"], json!({"2xx": n}));
    assert_eq!(ended[&2]["stats"]["change"], json!({"same": n}), "{done:?}");
    assert_eq!(
        ended[&2]["stats"]["by_status"],
        json!({"3xx": n}),
        "every page answered 304"
    );
    let results = cluster.results();
    assert_eq!(
        ended[&3]["stats"]["change"],
        json!({"changed": 1, "same": n - 1}),
        "{done:?}\n{:?}\n{}",
        site.hits()
            .into_iter()
            .filter(|h| h.path == url_path(&site.url(changed)))
            .collect::<Vec<_>>(),
        cluster
            .logs()
            .lines()
            .filter(|l| l.contains("fired")
                || l.contains("WARN")
                || l.contains("ERROR")
                || l.contains("p/1.html"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    let of_run = |r: u64| -> Vec<&Value> { results.iter().filter(|x| x["run"] == r).collect() };
    let first: std::collections::BTreeSet<String> = of_run(1)
        .iter()
        .filter_map(|x| x["url"].as_str().map(str::to_string))
        .collect();
    assert_eq!(first, pages, "run 1 read every page");
    assert!(of_run(1).iter().all(|r| r["change"] == "new"));
    assert!(of_run(2).is_empty(), "unchanged pages are not sent");
    let third = of_run(3);
    assert_eq!(third.len(), 1, "{third:?}");
    assert_eq!(
        (third[0]["url"].as_str(), third[0]["change"].as_str()),
        (Some(site.url(changed).as_str()), Some("changed"))
    );
    // Runs 2 and 3 asked for every page with its ETag, once each.
    let conditional = site
        .hits()
        .into_iter()
        .filter(|h| h.path.starts_with("/p/"))
        .filter(|h| h.headers.iter().any(|(k, _)| k == "if-none-match"))
        .count() as u64;
    assert_eq!(conditional, 2 * n);
    Ok(())
}

/// The same fed on Kafka to two workers that are both control planes, one
/// of them killed (SIGKILL) once run 2 fired: each run still fires once
/// and ends once, on `<prefix>.events`, and reads every page.
#[tokio::test(flavor = "multi_thread")]
async fn a_scheduled_crawl_fed_on_kafka_ends_each_run_once_when_a_worker_is_killed() -> Result<()> {
    use crate::kafka::bus::Bus;
    let mut bus = Bus::start("", "[crawl]\nlease_ttl = 5\n", 1).await?;
    bus.broker.create_topic("demo.events", 1).await?;
    let site = Site::start(SiteSpec {
        pages: 30,
        hosts: 2,
        seed: 9,
    })
    .await?;
    let pages = site.expected(0, Some(1));
    let events = bus.broker.collect("demo.events")?;
    let results = bus.broker.collect("demo.crawled_firehose")?;
    bus.role("kafka-monitor", &[])?;
    bus.role("worker", &["--control-plane"])?;
    bus.role("worker", &["--control-plane"])?;
    let request = json!({
        "url": site.seed_url(), "appid": "testapp", "crawlid": "kafka-every-second", "maxdepth": 1,
        "schedule": {"every": 1, "max_runs": 3},
    });
    bus.produce(&[request.to_string()]).await?;
    let deadline = std::time::Duration::from_secs(90);
    events
        .wait(deadline, "run 2 fired", |e| {
            e.iter()
                .any(|e| e["event"] == "schedule.fired" && e["run"] == 2)
                .then_some(())
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e}: {:?}\n{}", events.values(), bus.logs()))?;
    bus.roles[1].0.start_kill()?;
    let all = events
        .wait(deadline, "three runs ended", |e| {
            (by_run(e, "crawl.completed").len() >= 3).then(|| e.to_vec())
        })
        .await;
    let all = all.map_err(|e| anyhow::anyhow!("{e}\n{}", bus.logs()))?;
    for run in 1..=3u64 {
        let n = |kind: &str| {
            all.iter()
                .filter(|e| e["event"] == kind && e["run"] == run)
                .count()
        };
        assert_eq!(n("schedule.fired"), 1, "run {run}: {all:?}");
        assert_eq!(n("crawl.completed"), 1, "run {run}: {all:?}");
        let urls: std::collections::BTreeSet<String> = results
            .values()
            .iter()
            .filter(|r| r["run"] == run)
            .filter_map(|r| r["url"].as_str().map(str::to_string))
            .collect();
        assert_eq!(urls, pages, "run {run} read every page");
    }
    Ok(())
}

/// The actions on a schedule, sent on the incoming topic as a client
/// would: `pause` holds the next run back (while `run-now` still fires
/// one), `info` shows the schedule and the current run's figures,
/// `resume` lets it go on, `unschedule` ends it, `stop` tells
/// `crawl.stopped`, and an action on a schedule that has ended says so.
#[tokio::test(flavor = "multi_thread")]
async fn a_schedule_is_paused_run_now_resumed_and_ended_by_actions() -> Result<()> {
    use crate::kafka::bus::Bus;
    let mut bus = Bus::start("", "", 1).await?;
    bus.broker.create_topic("demo.events", 1).await?;
    let site = Site::start(SiteSpec {
        pages: 12,
        hosts: 1,
        seed: 5,
    })
    .await?;
    let n = site.expected(0, Some(1)).len() as u64;
    let events = bus.broker.collect("demo.events")?;
    let replies = bus.broker.collect("demo.outbound_firehose")?;
    bus.role("kafka-monitor", &[])?;
    bus.role("worker", &["--control-plane"])?;
    let request = json!({
        "url": site.seed_url(), "appid": "testapp", "crawlid": "acted", "maxdepth": 1,
        "schedule": {"every": 3600},
    });
    bus.produce(&[request.to_string()]).await?;
    let deadline = std::time::Duration::from_secs(60);
    let completed = |run: u64| {
        let events = &events;
        async move {
            events
                .wait(deadline, "a run's end", |e| {
                    e.iter()
                        .find(|e| e["event"] == "crawl.completed" && e["run"] == run)
                        .cloned()
                })
                .await
        }
    };
    let logs = |e: anyhow::Error| anyhow::anyhow!("{e}\n{}", bus.logs());
    completed(1).await.map_err(logs)?;
    // One action, and its reply.
    let act = |action: &str, uuid: &str| {
        let (bus, replies) = (&bus, &replies);
        let (action, uuid) = (action.to_string(), uuid.to_string());
        async move {
            let a = json!({"action": action, "uuid": uuid, "appid": "testapp",
                           "spiderid": "link", "crawlid": "acted"});
            bus.produce(&[a.to_string()]).await?;
            replies
                .wait(deadline, "an action's reply", |r| {
                    r.iter().find(|r| r["uuid"] == uuid.as_str()).cloned()
                })
                .await
        }
    };
    let paused = act("pause", "a1").await.map_err(logs)?;
    assert_eq!(paused["action"], "pause");
    assert_eq!(paused["schedule"]["paused"], true, "{paused}");
    // Paused, a run asked for still fires, and the schedule stays paused.
    act("run-now", "a2").await?;
    let second = completed(2).await.map_err(logs)?;
    assert_eq!(second["stats"]["pages"], n, "{second}");
    let info = act("info", "a3").await?;
    let schedule = &info["schedule"];
    assert_eq!(
        (&schedule["runs"], &schedule["paused"], &schedule["ended"]),
        (&json!(2), &json!(true), &json!(false)),
        "{info}"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    assert!(
        schedule["next_at"].as_i64().is_some_and(|t| t > now + 3000),
        "the next run is an hour after the first: {info}"
    );
    assert_eq!(
        info["stats"]["pages"], n,
        "the current run's figures: {info}"
    );
    let resumed = act("resume", "a4").await?;
    assert_eq!(resumed["schedule"]["paused"], false, "{resumed}");
    let ended = act("unschedule", "a5").await?;
    assert_eq!(
        (&ended["schedule"]["ended"], &ended["schedule"]["next_at"]),
        (&json!(true), &Value::Null),
        "{ended}"
    );
    let refused = act("run-now", "a6").await?;
    assert_eq!(
        refused["error"], "the crawl's schedule has ended",
        "{refused}"
    );
    act("stop", "a7").await?;
    let stopped = events
        .wait(deadline, "crawl.stopped", |e| {
            e.iter().find(|e| e["event"] == "crawl.stopped").cloned()
        })
        .await?;
    assert_eq!(stopped["crawlid"], "acted");
    // No third run fired.
    assert!(!events
        .values()
        .iter()
        .any(|e| e["event"] == "schedule.fired" && e["run"] == 3));
    Ok(())
}

/// The path of a URL (what the site's hit log records).
fn url_path(url: &str) -> String {
    url.splitn(4, '/')
        .nth(3)
        .map_or("/".into(), |p| format!("/{p}"))
}

/// A crawl that is not scheduled, on Redis with two workers that both
/// drive runs: `crawl.accepted` and `crawl.started` (the same id from
/// each) and exactly one
/// `crawl.completed`, with the store's figures; a second crawl after it,
/// told too, shows no second end came for the first.
#[tokio::test(flavor = "multi_thread")]
async fn a_crawl_without_a_schedule_is_told_over_once_on_redis() -> Result<()> {
    use crate::cluster::{request, spec, Cluster};
    let redis = crate::harness::RedisServer::start().await?;
    let site = Site::start(spec(20, 6)).await?;
    let n = site.expected(0, Some(1)).len() as u64;
    let mut cluster = Cluster::new(&redis, "")?;
    cluster.start_worker()?;
    cluster.start_worker()?;
    let within = std::time::Duration::from_secs(60);
    let ended = |crawlid: &'static str| {
        let cluster = &cluster;
        move || {
            let e = cluster.events();
            e.iter()
                .any(|e| e["crawlid"] == crawlid && e["event"] == "crawl.completed")
                .then_some(e)
        }
    };
    for crawlid in ["once", "after"] {
        let r = request(&site, crawlid, 1, Value::Null);
        cluster.submit(&["--request", &r]).await?;
        crate::harness::eventually(within, "the crawl's end", ended(crawlid))
            .await
            .map_err(|e| anyhow::anyhow!("{e}\n{}", cluster.logs()))?;
    }
    let all = cluster.events();
    let of = |kind: &str| -> Vec<&Value> {
        all.iter()
            .filter(|e| e["crawlid"] == "once" && e["event"] == kind)
            .collect()
    };
    let done = of("crawl.completed");
    assert_eq!(done.len(), 1, "{all:?}");
    assert_eq!(done[0]["stats"]["pages"], n, "{all:?}");
    let missing = site
        .expected(0, Some(1))
        .iter()
        .filter(|u| u.contains("/missing/"))
        .count() as u64;
    assert_eq!(done[0]["stats"]["by_status"]["2xx"], n - missing, "{all:?}");
    for kind in ["crawl.accepted", "crawl.started"] {
        let told = of(kind);
        assert!(
            !told.is_empty() && told.iter().all(|e| e["id"] == told[0]["id"]),
            "{kind}: {all:?}"
        );
    }
    Ok(())
}
