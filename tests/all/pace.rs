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

/// What a crawl of the limited site measured, as shares of the limiter's
/// rate: from the tenth second on, on average and in the slowest 5 s.
struct Kept {
    rate: f64,
    slowest: f64,
    refused: f64,
}

impl Kept {
    /// Near the limiter's rate throughout, with few 429s.
    fn check(&self) {
        let Kept {
            rate,
            slowest,
            refused,
        } = self;
        assert!(*rate >= 0.8, "{:.0}% of the limiter's rate", rate * 100.0);
        // A stall (a long pause, a burst and its back-off) shows here.
        assert!(
            *slowest >= 0.5,
            "{:.0}% of the limiter's rate in the slowest 5 s",
            slowest * 100.0
        );
        assert!(*refused <= 0.05, "{:.1}% answered 429", refused * 100.0);
    }
}

/// Crawl the limited site with `workers` workers; every page must come
/// back 200.
async fn crawl_limited(workers: usize) -> Result<Kept> {
    let site = limited_site(400, None).await?;
    let (_redis, cluster) = start(&site, workers, LIFTED).await?;
    finish(&site, &cluster, Duration::from_secs(120)).await?;
    let f = site.against_limit(Duration::from_secs(10));
    anyhow::ensure!(
        f.per_sec > 0.0,
        "nothing served after the tenth second: {f:?}"
    );
    let kept = Kept {
        rate: f.per_sec / RATE,
        slowest: f.slowest / RATE,
        refused: f.refused_share(),
    };
    eprintln!(
        "{workers} worker(s): {:.0}% of the limiter's rate from the tenth second (slowest 5 s: {:.0}%), {} of {} requests answered 429 ({:.1}%)",
        kept.rate * 100.0,
        kept.slowest * 100.0,
        f.refused,
        f.requests,
        kept.refused * 100.0
    );
    Ok(kept)
}

#[tokio::test]
async fn one_worker_learns_a_limiters_rate_and_keeps_near_it() -> Result<()> {
    crawl_limited(1).await?.check();
    Ok(())
}

#[tokio::test]
async fn three_workers_learn_a_limiters_rate_together() -> Result<()> {
    crawl_limited(3).await?.check();
    Ok(())
}

#[tokio::test]
async fn after_a_retry_after_the_site_hears_nothing_then_one_request() -> Result<()> {
    let site = limited_site(120, Some(2)).await?;
    let (_redis, cluster) = start(&site, 2, LIFTED).await?;
    finish(&site, &cluster, Duration::from_secs(120)).await?;
    let hits: Vec<Instant> = page_hits(&site, 0).iter().map(|h| h.at).collect();
    let mut limited = site.limited();
    limited.sort();
    anyhow::ensure!(!limited.is_empty(), "the limiter never answered 429");
    // Requests already on their way when a 429 was sent may arrive just
    // after it; none may arrive later within the 2 s.
    let in_flight = Duration::from_millis(100);
    let retry_after = Duration::from_secs(2);
    for &no in &limited {
        let early: Vec<Duration> = hits
            .iter()
            .filter(|&&at| at > no + in_flight && at < no + retry_after)
            .map(|&at| at - no)
            .collect();
        assert!(
            early.is_empty(),
            "asked again {early:?} after a 429 with Retry-After: 2"
        );
    }
    // Each pause (the 429s sent to requests in flight together are one)
    // ends with one request alone, then a ramp: never a burst.
    let mut pauses: Vec<Instant> = Vec::new();
    for &no in &limited {
        match pauses.last_mut() {
            Some(last) if no <= *last + in_flight => *last = no,
            _ => pauses.push(no),
        }
    }
    let mut resumed = 0;
    for &last in &pauses {
        let after: Vec<Instant> = hits
            .iter()
            .copied()
            .filter(|&at| at > last + in_flight)
            .take(4)
            .collect();
        let [one, two, three, four] = after[..] else {
            continue;
        };
        resumed += 1;
        eprintln!(
            "after a pause: {:?} {:?} {:?}",
            two - one,
            three - two,
            four - three
        );
        // Spaced at the learned rate, cut by the 429 (gaps of 35 to 150 ms
        // seen); a burst of `max_in_flight` requests into the limiter
        // would come within a few ms of each other.
        assert!(
            two - one >= Duration::from_millis(20),
            "a burst after the pause: {:?} between the first two requests",
            two - one
        );
        assert!(
            four - one >= Duration::from_millis(75),
            "a burst after the pause: four requests in {:?}",
            four - one
        );
    }
    anyhow::ensure!(resumed > 0, "no pause was followed by four requests");
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

/// Two sites on 127.0.0.1 (one registered domain, two origins: two
/// ports) of `pages` pages each, both crawled by two workers with
/// `config`; returns once every page of both came back.
async fn two_origins(
    a: Quirks,
    b: Quirks,
    pages: [usize; 2],
    config: &str,
    b_after_a_refused: bool,
) -> Result<(
    Site,
    Site,
    crate::cluster::Cluster,
    crate::harness::RedisServer,
)> {
    let spec = |pages, seed| SiteSpec {
        pages,
        hosts: 1,
        seed,
    };
    let (a, b) = (
        Site::start_with(spec(pages[0], 43), a).await?,
        Site::start_with(spec(pages[1], 44), b).await?,
    );
    let redis = crate::harness::RedisServer::start().await?;
    let config = format!("[crawl]\nmaxdepth_limit = 100\nobey_robots = true\n{config}");
    let mut cluster = crate::cluster::Cluster::new(&redis, &config)?;
    for _ in 0..2 {
        cluster.start_worker()?;
    }
    for (site, crawlid) in [(&a, "a"), (&b, "b")] {
        if crawlid == "b" && b_after_a_refused {
            crate::harness::eventually(Duration::from_secs(30), "origin A's first 429", || {
                (!a.limited().is_empty()).then_some(())
            })
            .await?;
        }
        let request = serde_json::json!({"url": site.seed_url(), "appid": "pace", "crawlid": crawlid, "maxdepth": 100});
        cluster.submit(&["--request", &request.to_string()]).await?;
    }
    let mut expected = a.expected(0, None);
    expected.extend(b.expected(0, None));
    cluster
        .until_all_of(&expected, Duration::from_secs(90))
        .await?;
    Ok((a, b, cluster, redis))
}

#[tokio::test]
async fn a_429_pauses_its_origin_not_the_other_origins_of_its_domain() -> Result<()> {
    let refuse = Quirks {
        refuse: Some(spinneret_testsite::Refusal {
            status: 429,
            times: 1,
            retry_after: Some(3),
        }),
        ..Quirks::default()
    };
    let steady = Quirks {
        page: Duration::from_millis(20),
        ..Quirks::default()
    };
    // The domain's throttle (20/s) bounds both origins together.
    let config = "[throttle]\nhits = 20\nwindow = 1\nmoderated = false\n";
    let (a, b, _cluster, _redis) = two_origins(refuse, steady, [120, 120], config, false).await?;
    let refused = page_hits(&a, 0)[0].at;
    let next = page_hits(&a, 0)[1].at - refused;
    assert!(
        next >= Duration::from_millis(2900),
        "the refusing origin was asked again {next:?} after its Retry-After: 3"
    );
    // Per domain, the other origin would have paused as well.
    let during = page_hits(&b, 0)
        .iter()
        .filter(|h| {
            h.at > refused + Duration::from_millis(200)
                && h.at < refused + Duration::from_millis(2800)
        })
        .count();
    assert!(
        during >= 10,
        "the other origin was fetched {during} times during the pause"
    );
    Ok(())
}

#[tokio::test]
async fn an_origin_behind_a_limiter_slows_only_itself() -> Result<()> {
    // Origin A allows 4 requests/s and answers 429 past them (no
    // Retry-After); origin B, on the same registered domain, allows all.
    let limited = Quirks {
        limit: Some(Limit {
            per_sec: 4.0,
            burst: 1.0,
            retry_after: None,
        }),
        ..Quirks::default()
    };
    let steady = Quirks {
        page: Duration::from_millis(20),
        ..Quirks::default()
    };
    let config = "[throttle]\nhits = 20\nwindow = 1\nmoderated = false\n";
    // B is submitted once A has been refused, so B's crawl (200 pages at
    // up to 20/s) falls inside A's (60 at 4/s) while A probes its limiter.
    let (a, b, _cluster, _redis) = two_origins(limited, steady, [60, 200], config, true).await?;
    let fetched: Vec<Instant> = page_hits(&b, 0).iter().map(|h| h.at).collect();
    let (first, last) = (fetched[0], fetched[fetched.len() - 1]);
    // Not vacuous: B was submitted once A had been refused, so A's
    // slow-down (its pause, its learned pace) was in force as B began; had
    // it reached the domain, B would have waited with A.
    let refusals = a.limited().into_iter().filter(|&no| no <= first).count();
    anyhow::ensure!(
        refusals > 0,
        "origin A answered no 429 before B's crawl began"
    );
    let a_meanwhile = page_hits(&a, 0)
        .iter()
        .filter(|h| h.at >= first && h.at <= last)
        .count();
    // Paced as A is learned to be (about 4/s), B would take 50 s; its own
    // share of the domain's 20/s is at least half of that throttle.
    let rate = (fetched.len() - 1) as f64 / (last - first).as_secs_f64();
    let gap = fetched
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    eprintln!(
        "origin B: {rate:.1} pages/s, longest gap {gap:?}; meanwhile A was fetched {a_meanwhile} times, after {refusals} 429s"
    );
    assert!(
        rate >= 10.0,
        "origin B slowed to {rate:.1} pages/s by A's 429s"
    );
    assert!(
        gap < Duration::from_secs(1),
        "origin B paused {gap:?} by A's 429s"
    );
    Ok(())
}

#[tokio::test]
async fn each_origin_is_spaced_by_its_own_crawl_delay() -> Result<()> {
    let delay = |secs| Quirks {
        crawl_delay: Some(secs),
        ..Quirks::default()
    };
    let (a, b, _cluster, _redis) = two_origins(delay(1), delay(2), [10, 10], LIFTED, false).await?;
    let gaps = |site: &Site| -> Vec<Duration> {
        let hits = page_hits(site, 0);
        hits.windows(2).map(|w| w[1].at - w[0].at).collect()
    };
    let (ga, gb) = (gaps(&a), gaps(&b));
    let min = |g: &[Duration]| g.iter().min().copied().unwrap_or_default();
    let mut sorted = ga.clone();
    sorted.sort();
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or_default();
    assert!(
        min(&ga) >= Duration::from_millis(950),
        "Crawl-delay 1: {ga:?}"
    );
    assert!(
        median < Duration::from_millis(1500),
        "Crawl-delay 1 spaced as 2: {ga:?}"
    );
    assert!(
        min(&gb) >= Duration::from_millis(1950),
        "Crawl-delay 2: {gb:?}"
    );
    Ok(())
}

/// Two apps' crawls of one site under its throttle (20/s, `weights` as
/// `[throttle.weights]`) by two workers: a big one with `queued` pages
/// queued before a small one of 200 pages comes. Returns the small
/// crawl's share of the site's fetches while both had work.
async fn small_crawls_share(pages: usize, queued: u64, weights: &str) -> Result<f64> {
    let site = Site::start(SiteSpec {
        pages,
        hosts: 1,
        seed: 45,
    })
    .await?;
    let redis = crate::harness::RedisServer::start().await?;
    let config = format!(
        "[crawl]\nmaxdepth_limit = 100\n[throttle]\nhits = 20\nwindow = 1\nmoderated = false\n[throttle.weights]\n{weights}"
    );
    let mut cluster = crate::cluster::Cluster::new(&redis, &config)?;
    for _ in 0..2 {
        cluster.start_worker()?;
    }
    let big = serde_json::json!({"url": site.seed_url(), "appid": "big", "crawlid": "b", "maxdepth": 100});
    cluster.submit(&["--request", &big.to_string()]).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let info = cluster
            .control(&["info", "--appid", "big", "--crawlid", "b"])
            .await?;
        if info["total_pending"].as_u64().unwrap_or(0) >= queued {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the big crawl queued too few: {info}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let small = serde_json::json!({"url": site.seed_url(), "appid": "small", "crawlid": "s", "maxdepth": 100,
                                   "domain_max_pages": 200, "useragent": "small-crawl"});
    cluster.submit(&["--request", &small.to_string()]).await?;
    let is_small = |h: &spinneret_testsite::Hit| {
        h.headers
            .iter()
            .any(|(k, v)| k == "user-agent" && v == "small-crawl")
    };
    crate::harness::eventually(
        Duration::from_secs(90),
        "the small crawl's 200 pages",
        || (page_hits(&site, 0).iter().filter(|h| is_small(h)).count() >= 200).then_some(()),
    )
    .await?;
    // While both had work: from the small crawl's first fetch to its last.
    let hits = page_hits(&site, 0);
    let small_at: Vec<Instant> = hits.iter().filter(|h| is_small(h)).map(|h| h.at).collect();
    let (from, to) = (small_at[0], small_at[small_at.len() - 1]);
    let window = hits.iter().filter(|h| h.at >= from && h.at <= to).count();
    let share = small_at.len() as f64 / window as f64;
    eprintln!(
        "the small crawl had {:.0}% of {window} fetches while both had work",
        share * 100.0
    );
    Ok(share)
}

#[tokio::test]
async fn crawls_of_two_apps_share_a_sites_budget_fairly() -> Result<()> {
    let share = small_crawls_share(8000, 5000, "").await?;
    assert!(
        (0.4..=0.6).contains(&share),
        "the small crawl had {:.0}% of the fetches, 5,000 queued for the big one",
        share * 100.0
    );
    Ok(())
}

#[tokio::test]
async fn an_apps_weight_sets_its_share_of_a_site() -> Result<()> {
    let share = small_crawls_share(2000, 1000, "small = 3\n").await?;
    assert!(
        (0.65..=0.85).contains(&share),
        "the small crawl (weight 3 to 1) had {:.0}% of the fetches",
        share * 100.0
    );
    Ok(())
}

/// A slow host, the domain's cap at 8 and one app's at 2.
const APP_CAPPED: &str = "max_in_flight = 8\nmax_in_flight_per_app = 2\nconcurrency = 16\ndownload_timeout = 5\n[throttle]\nhits = 100\nwindow = 1\nmoderated = false\n";

async fn slow_site() -> Result<Site> {
    crate::politeness::start_site(
        18,
        46,
        Quirks {
            last_host_page: Duration::from_secs(1),
            ..Quirks::default()
        },
    )
    .await
}

#[tokio::test]
async fn one_app_holds_at_most_its_share_of_a_domains_fetches() -> Result<()> {
    let site = slow_site().await?;
    let last = crate::politeness::LAST;
    let _cluster = crate::politeness::crawl(&site, 3, APP_CAPPED, Duration::from_secs(90)).await?;
    let open = site.max_open(last);
    assert_eq!(
        open, 2,
        "one app had up to {open} requests open (max_in_flight_per_app = 2)"
    );
    Ok(())
}

#[tokio::test]
async fn embedded_one_app_holds_at_most_its_share_of_a_domains_fetches() -> Result<()> {
    let site = slow_site().await?;
    crate::politeness::crawl_embedded(&site, APP_CAPPED).await?;
    let open = site.max_open(crate::politeness::LAST);
    assert_eq!(
        open, 2,
        "one app had up to {open} requests open (max_in_flight_per_app = 2)"
    );
    Ok(())
}
