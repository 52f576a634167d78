//! Contract conformance (issue 12): what a Scrapy Cluster client observes
//! on the topics and the REST gateway, each behaviour against a real
//! broker, a real Redis and the local site.

use crate::harness::{Site, SiteSpec};
use crate::kafka::{crawl_request, one_host_site, Bus};
use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

/// Contract §3: each crawled page is logged at info level with its
/// crawlid, url, status_code and spiderid, never the body; with JSON logs a
/// pipeline finds a crawl's pages by crawlid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_crawled_page_is_logged_with_its_crawlid() -> Result<()> {
    let site = one_host_site(30, 5).await?;
    let mut bus = Bus::start("", "[log]\nformat = \"json\"\n", 1).await?;
    bus.role("up", &[])?;
    let results = bus.broker.collect("demo.crawled_firehose")?;
    bus.cli(&["feed", &crawl_request(&site.url(0), "logged", 1)])
        .await?;
    let expected = site.expected(0, Some(1));
    results
        .wait(Duration::from_secs(60), "every page's result", |v| {
            (v.len() >= expected.len()).then_some(())
        })
        .await
        .with_context(|| bus.logs())?;
    bus.until_done("testapp", "logged").await?;
    let log = std::fs::read_to_string(&bus.roles[0].1)?;
    let pages: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["crawlid"] == "logged")
        .collect();
    let urls: BTreeSet<String> = pages
        .iter()
        .filter_map(|v| v["url"].as_str().map(str::to_string))
        .collect();
    ensure!(urls == expected, "logged {urls:?}, crawled {expected:?}");
    ensure!(
        pages.len() == expected.len(),
        "one line a page: {}",
        pages.len()
    );
    for p in &pages {
        ensure!(
            p["level"] == "INFO"
                && p["status_code"] == 200
                && p["spiderid"] == "link"
                && p.get("body").is_none(),
            "{p}"
        );
    }
    Ok(())
}

/// A stopped crawl stays stopped, but a new request with its appid and
/// crawlid crawls that request's seed (contract §3): the seed's result
/// arrives, none of its children are crawled, and the crawl reaches done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_crawl_crawls_its_resubmitted_seed_and_no_children() -> Result<()> {
    let site = one_host_site(30, 6).await?;
    let mut bus = Bus::start("", "", 1).await?;
    bus.role("up", &[])?;
    let results = bus.broker.collect("demo.crawled_firehose")?;
    let replies = bus.broker.collect("demo.outbound_firehose")?;
    let (first, again) = (site.url(0), site.url(1));
    bus.cli(&["feed", &crawl_request(&first, "halted", 0)])
        .await?;
    results
        .wait(Duration::from_secs(60), "the first seed", |v| {
            (!v.is_empty()).then_some(())
        })
        .await
        .with_context(|| bus.logs())?;
    // A client sends the stop and the new request back to back: the stop
    // applies to what was queued before it, never to the new seed.
    let stop = json!({"uuid": "halt-1", "appid": "testapp", "spiderid": "link", "action": "stop", "crawlid": "halted"});
    bus.cli(&[
        "feed",
        &stop.to_string(),
        &crawl_request(&again, "halted", 1),
    ])
    .await?;
    replies
        .wait(Duration::from_secs(60), "the stop reply", |v| {
            v.iter().find(|r| r["uuid"] == "halt-1").cloned()
        })
        .await
        .with_context(|| bus.logs())?;
    results
        .wait(Duration::from_secs(60), "the resubmitted seed", |v| {
            v.iter().find(|r| r["url"] == again.as_str()).cloned()
        })
        .await
        .with_context(|| bus.logs())?;
    bus.until_done("testapp", "halted").await?;
    let urls: BTreeSet<String> = results
        .values()
        .iter()
        .filter_map(|r| r["url"].as_str().map(str::to_string))
        .collect();
    ensure!(
        urls == BTreeSet::from([first.clone(), again.clone()]),
        "only the two seeds, no children: {urls:?}"
    );
    Ok(())
}

/// info and queue stats are scoped by spiderid (contract §4.2): a crawl
/// queued only for `wandering` shows nothing under `link`, at crawl and at
/// app level, and its backlog counts under `queue_wandering` only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_and_queue_stats_are_scoped_by_spiderid() -> Result<()> {
    let site = one_host_site(10, 7).await?;
    let mut bus = Bus::start("", "", 1).await?;
    // No worker: the crawl stays queued.
    bus.role("kafka-monitor", &[])?;
    bus.role("redis-monitor", &[])?;
    let replies = bus.broker.collect("demo.outbound_firehose")?;
    let crawl = json!({"url": site.url(0), "appid": "testapp", "crawlid": "wander",
                       "spiderid": "wandering", "maxdepth": 1});
    let ask = |uuid: &str, spider: &str, crawlid: Option<&str>| {
        let mut q = json!({"uuid": uuid, "appid": "testapp", "spiderid": spider, "action": "info"});
        if let Some(c) = crawlid {
            q["crawlid"] = c.into();
        }
        q.to_string()
    };
    bus.cli(&[
        "feed",
        &crawl.to_string(),
        &ask("as-link", "link", Some("wander")),
        &ask("as-wandering", "wandering", Some("wander")),
        &ask("app-link", "link", None),
        &ask("app-wandering", "wandering", None),
        &json!({"uuid": "queues", "appid": "testapp", "stats": "queue"}).to_string(),
    ])
    .await?;
    let reply = |uuid: &'static str| {
        replies.wait(Duration::from_secs(60), uuid, move |v| {
            v.iter().find(|r| r["uuid"] == uuid).cloned()
        })
    };
    let r = reply("as-link").await.with_context(|| bus.logs())?;
    ensure!(
        r["total_pending"] == 0 && r["total_domains"] == 0 && r["domains"] == json!({}),
        "a wandering crawl seen as link: {r}"
    );
    let r = reply("as-wandering").await?;
    ensure!(
        r["total_pending"] == 1 && r["total_domains"] == 1,
        "seen as wandering: {r}"
    );
    let r = reply("app-link").await?;
    ensure!(
        r["total_pending"] == 0 && r["crawlids"].get("wander").is_none(),
        "app level as link: {r}"
    );
    let r = reply("app-wandering").await?;
    ensure!(
        r["total_pending"] == 1 && r["crawlids"]["wander"]["total"] == 1,
        "app level as wandering: {r}"
    );
    let r = reply("queues").await?;
    let q = &r["queues"];
    ensure!(
        q["queue_wandering"]["spider_backlog"] == 1 && q.get("queue_link").is_none(),
        "queue stats: {r}"
    );
    Ok(())
}

/// `global_page_per_domain_limit` is exact: with a cap of 3 and two crawls
/// over two domains, each domain yields exactly 3 results, seeds included,
/// whatever the crawls and the workers' concurrency.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_global_per_domain_cap_is_exact() -> Result<()> {
    let site = Site::start(SiteSpec {
        pages: 60,
        hosts: 2,
        seed: 8,
    })
    .await?;
    let mut bus = Bus::start("", "[crawl]\nglobal_page_per_domain_limit = 3\n", 1).await?;
    bus.role("up", &["--workers", "16"])?;
    let results = bus.broker.collect("demo.crawled_firehose")?;
    bus.cli(&[
        "feed",
        &crawl_request(&site.url(0), "cap-a", 2),
        &crawl_request(&site.url(1), "cap-b", 2),
    ])
    .await?;
    // The six results first: a crawl that produced one was ingested, so
    // `until_done` below cannot mistake a crawl the ingest monitor has not
    // stored yet (slow to join its group on a loaded machine) for an empty
    // one. A crawl whose seed the cap refused has none, and is done.
    let values = results
        .wait(Duration::from_secs(60), "the six results", |v| {
            (v.len() >= 6).then(|| v.to_vec())
        })
        .await
        .with_context(|| bus.logs())?;
    let a = bus.until_done("testapp", "cap-a").await?;
    let b = bus.until_done("testapp", "cap-b").await?;
    // What the store counted as delivered is the whole truth at `done`: no
    // seventh result went out...
    let crawled = a["crawled"].as_u64().unwrap_or(0) + b["crawled"].as_u64().unwrap_or(0);
    ensure!(crawled == 6, "{crawled} results in all: {a} {b}");
    // ...and the topic holds those six, three per domain, none twice.
    let pages: std::collections::BTreeSet<(&str, &str)> = values
        .iter()
        .filter_map(|r| Some((r["crawlid"].as_str()?, r["url"].as_str()?)))
        .collect();
    ensure!(pages.len() == 6, "results: {values:?}");
    let mut per_host: std::collections::BTreeMap<String, usize> = Default::default();
    for r in &values {
        let url = url::Url::parse(r["url"].as_str().unwrap_or_default())?;
        *per_host
            .entry(url.host_str().unwrap_or_default().to_string())
            .or_default() += 1;
    }
    ensure!(
        per_host.len() == 2 && per_host.values().all(|n| *n == 3),
        "results per domain: {per_host:?}"
    );
    Ok(())
}

/// With Redis away, a domain-update is still answered within seconds, with
/// an `error`; and since the client was told it failed, it is not applied
/// when Redis is back (the ack is true).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_domain_change_that_cannot_be_stored_is_answered_with_an_error() -> Result<()> {
    let mut bus = Bus::start("", "", 1).await?;
    bus.role("kafka-monitor", &[])?;
    bus.role("redis-monitor", &[])?;
    let replies = bus.broker.collect("demo.outbound_firehose")?;
    // Both monitors are up once a stats request is answered.
    let stats =
        |uuid: &str| json!({"uuid": uuid, "appid": "testapp", "stats": "queue"}).to_string();
    bus.cli(&["feed", &stats("before")]).await?;
    replies
        .wait(Duration::from_secs(60), "the monitors", |v| {
            v.iter().find(|r| r["uuid"] == "before").cloned()
        })
        .await
        .with_context(|| bus.logs())?;

    bus.redis.stop()?;
    let update = json!({"uuid": "dom-1", "appid": "testapp", "domain": "example.com",
                        "action": "domain-update", "hits": 7, "window": 30});
    bus.cli(&["feed", &update.to_string()]).await?;
    let sent = std::time::Instant::now();
    let ack = replies
        .wait(Duration::from_secs(30), "the domain-config ack", |v| {
            v.iter().find(|r| r["uuid"] == "dom-1").cloned()
        })
        .await
        .with_context(|| bus.logs())?;
    let took = sent.elapsed();
    ensure!(
        ack["error"]
            .as_str()
            .is_some_and(|e| e.contains("not applied"))
            && ack["action"] == "domain-update"
            && ack["domain"] == "example.com",
        "{ack}"
    );
    ensure!(took < Duration::from_secs(15), "answered after {took:?}");

    // Redis back: a later request is answered, so the batch holding the
    // update has been stored by now, and the update was not applied.
    bus.redis.resume().await?;
    bus.cli(&["feed", &stats("after")]).await?;
    replies
        .wait(
            Duration::from_secs(60),
            "a reply after Redis is back",
            |v| v.iter().find(|r| r["uuid"] == "after").cloned(),
        )
        .await
        .with_context(|| bus.logs())?;
    let stored: Option<String> = redis::cmd("HGET")
        .arg("{spinneret}:domcfg")
        .arg("example.com")
        .query(&mut bus.redis.connection()?)?;
    ensure!(stored.is_none(), "refused, yet applied: {stored:?}");
    let acks = replies
        .values()
        .iter()
        .filter(|r| r["uuid"] == "dom-1")
        .count();
    ensure!(acks == 1, "{acks} acks for one request");
    Ok(())
}
