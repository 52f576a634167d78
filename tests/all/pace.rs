//! Sites set the pace, and we learn it: a site behind a token-bucket
//! limiter (nginx's `limit_req`: 429 without `Retry-After`) is crawled
//! near the limiter's rate with few 429s, by one worker or three; with
//! `Retry-After` the site hears nothing during the pause and then one
//! request, not a burst. Timed by the site's own log.

use crate::harness::{Quirks, Site, SiteSpec};
use crate::politeness::{finish, page_hits, start};
use anyhow::Result;
use spinneret_testsite::Limit;
use std::time::{Duration, Instant};

/// The limiter's rate (requests/s) and burst.
const RATE: f64 = 20.0;
const BURST: f64 = 5.0;

/// One host of `pages` pages behind the limiter.
async fn limited_site(pages: usize, retry_after: Option<u32>) -> Result<Site> {
    let spec = SiteSpec {
        pages,
        hosts: 1,
        seed: 41,
    };
    let limit = Limit {
        per_sec: RATE,
        burst: BURST,
        retry_after,
    };
    Ok(Site::start_with(
        spec,
        Quirks {
            limit: Some(limit),
            ..Quirks::default()
        },
    )
    .await?)
}

/// The throttle lifted: the limiter alone says how fast.
const LIFTED: &str = "[throttle]\nhits = 100000\nwindow = 1\nmoderated = false\n";

/// Crawl the limited site with `workers` workers; returns the pages/s the
/// site served from the tenth second on, as a share of the limiter's
/// rate, and the share of requests it answered 429.
async fn crawl_limited(workers: usize) -> Result<(f64, f64)> {
    let site = limited_site(400, None).await?;
    let (_redis, cluster) = start(&site, workers, LIFTED).await?;
    finish(&site, &cluster, Duration::from_secs(120)).await?;
    let hits = page_hits(&site, 0);
    let limited = site.limited();
    let first = hits.first().map(|h| h.at).unwrap_or_else(Instant::now);
    let served: Vec<Instant> = hits
        .iter()
        .map(|h| h.at)
        .filter(|at| !limited.contains(at) && *at >= first + Duration::from_secs(10))
        .collect();
    let (Some(from), Some(to)) = (served.first(), served.last()) else {
        anyhow::bail!("nothing served after the tenth second: {} hits", hits.len());
    };
    let rate = (served.len() - 1) as f64 / (*to - *from).as_secs_f64() / RATE;
    let refused = limited.len() as f64 / hits.len() as f64;
    eprintln!(
        "{workers} worker(s): {:.0}% of the limiter's rate from the tenth second, {} of {} requests answered 429 ({:.1}%)",
        rate * 100.0,
        limited.len(),
        hits.len(),
        refused * 100.0
    );
    Ok((rate, refused))
}

#[tokio::test]
async fn one_worker_learns_a_limiters_rate_and_keeps_near_it() -> Result<()> {
    let (rate, refused) = crawl_limited(1).await?;
    assert!(rate >= 0.8, "{:.0}% of the limiter's rate", rate * 100.0);
    assert!(refused <= 0.05, "{:.1}% answered 429", refused * 100.0);
    Ok(())
}

#[tokio::test]
async fn three_workers_learn_a_limiters_rate_together() -> Result<()> {
    let (rate, refused) = crawl_limited(3).await?;
    assert!(rate >= 0.8, "{:.0}% of the limiter's rate", rate * 100.0);
    assert!(refused <= 0.05, "{:.1}% answered 429", refused * 100.0);
    Ok(())
}

#[tokio::test]
async fn after_a_retry_after_the_site_hears_nothing_then_one_request() -> Result<()> {
    let site = limited_site(120, Some(2)).await?;
    let (_redis, cluster) = start(&site, 2, LIFTED).await?;
    finish(&site, &cluster, Duration::from_secs(120)).await?;
    let hits: Vec<Instant> = page_hits(&site, 0).iter().map(|h| h.at).collect();
    let limited = site.limited();
    anyhow::ensure!(!limited.is_empty(), "the limiter never answered 429");
    // Requests already on their way when a 429 was sent may arrive just
    // after it; none may arrive later within the 2 s.
    let in_flight = Duration::from_millis(100);
    for &no in &limited {
        let early: Vec<Duration> = hits
            .iter()
            .filter(|&&at| at > no + in_flight && at < no + Duration::from_millis(1950))
            .map(|&at| at - no)
            .collect();
        assert!(
            early.is_empty(),
            "asked again {early:?} after a 429 with Retry-After: 2"
        );
    }
    // After the last pause: one request, then the next a spacing later.
    let last = *limited.iter().max().expect("a 429");
    let after: Vec<Instant> = hits
        .iter()
        .copied()
        .filter(|&at| at > last + in_flight)
        .collect();
    if let [one, two, ..] = after[..] {
        assert!(
            two - one >= Duration::from_millis(40),
            "a burst after the pause: {:?} between the first two requests",
            two - one
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_lifted_domain_limit_takes_effect_at_once() -> Result<()> {
    let site = Site::start(SiteSpec {
        pages: 60,
        hosts: 3,
        seed: 42,
    })
    .await?;
    let host = site.addrs()[2].ip().to_string();
    let redis = crate::harness::RedisServer::start().await?;
    let config = format!("[crawl]\nmaxdepth_limit = 100\n{LIFTED}");
    let mut cluster = crate::cluster::Cluster::new(&redis, &config)?;
    cluster
        .control(&["domain", "update", &host, "--hits", "1", "--window", "600"])
        .await?;
    cluster.start_worker()?;
    let request = serde_json::json!({"url": site.seed_url(), "appid": "pace", "crawlid": "lift", "maxdepth": 100});
    cluster.submit(&["--request", &request.to_string()]).await?;
    // The limited host asked once (its robots.txt takes the one slot), its
    // pages queued and held back for a second.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let info = cluster
            .control(&["info", "--appid", "pace", "--crawlid", "lift"])
            .await?;
        let queued = info["domains"][&host]["total"].as_u64().unwrap_or(0);
        let asked = site.hits().iter().find(|h| h.host == 2).map(|h| h.at);
        let held = asked.is_some_and(|at| at.elapsed() > Duration::from_secs(1));
        if held && queued > 0 {
            anyhow::ensure!(page_hits(&site, 2).is_empty(), "the limit did not hold");
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "never limited with pages queued: {info}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = page_hits(&site, 2).len();
    cluster.control(&["domain", "remove", &host]).await?;
    let removed = Instant::now();
    let deadline = removed + Duration::from_secs(10);
    while page_hits(&site, 2).len() <= before {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the host was not fetched again after domain-remove"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let next = page_hits(&site, 2)[before]
        .at
        .saturating_duration_since(removed);
    assert!(
        next < Duration::from_secs(2),
        "the next page came {next:?} after domain-remove"
    );
    Ok(())
}
