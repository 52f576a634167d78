//! Control operations on a running cluster: live domain config, `stop`,
//! `expires`, `info` and `stats`, and a crawl resubmitted with new attrs.

use super::{cluster_of, request, spec, urls, Cluster};
use crate::harness::{eventually, RedisServer, Site};
use anyhow::Result;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

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
