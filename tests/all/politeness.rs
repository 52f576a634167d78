//! Sites set the pace (contract §3): a 429 or 503 pauses its domain for
//! every worker, robots.txt `Crawl-delay` spaces a domain's fetches, and no
//! more than `crawl.max_in_flight` fetches of a domain are open at once.
//! Real worker processes on a real Redis, timed by the site's own log.

use crate::cluster::Cluster;
use crate::harness::{Quirks, RedisServer, Scratch, Site, SiteSpec};
use anyhow::Result;
use serde_json::{json, Value};
use spinneret_testsite::{Hit, Refusal};
use std::time::{Duration, Instant};

/// The slow or refusing host: the site's last one.
pub(crate) const LAST: usize = 2;

fn spec(pages: usize, seed: u64) -> SiteSpec {
    SiteSpec {
        pages,
        hosts: 3,
        seed,
    }
}

/// The 3-host test site of `pages` pages (seed `seed`) with `quirks`.
pub(crate) async fn start_site(pages: usize, seed: u64, quirks: Quirks) -> Result<Site> {
    Ok(Site::start_with(spec(pages, seed), quirks).await?)
}

/// `workers` workers on a private Redis crawling the whole site (robots.txt
/// obeyed) with `config`; returns once every expected page is delivered.
pub(crate) async fn crawl(
    site: &Site,
    workers: usize,
    config: &str,
    within: Duration,
) -> Result<(RedisServer, Cluster)> {
    let (redis, cluster) = start(site, workers, config).await?;
    finish(site, &cluster, within).await?;
    Ok((redis, cluster))
}

/// [`crawl`]'s start: the workers and the crawl request.
pub(crate) async fn start(
    site: &Site,
    workers: usize,
    config: &str,
) -> Result<(RedisServer, Cluster)> {
    let redis = RedisServer::start().await?;
    let config = format!("[crawl]\nmaxdepth_limit = 100\nobey_robots = true\n{config}");
    let mut cluster = Cluster::new(&redis, &config)?;
    for _ in 0..workers {
        cluster.start_worker()?;
    }
    let request =
        json!({"url": site.seed_url(), "appid": "polite", "crawlid": "c", "maxdepth": 100});
    cluster.submit(&["--request", &request.to_string()]).await?;
    Ok((redis, cluster))
}

/// [`crawl`]'s end: every expected page, each a 200 (the site's
/// `/missing/` links a 404): nothing that was paced came back refused.
pub(crate) async fn finish(site: &Site, cluster: &Cluster, within: Duration) -> Result<()> {
    let expected = site.expected(0, None);
    let results = cluster.until_all_of(&expected, within).await?;
    let failed: Vec<_> = results
        .iter()
        .filter(|r| {
            let missing = r["url"].as_str().is_some_and(|u| u.contains("/missing/"));
            r["status_code"] != if missing { 404 } else { 200 }
        })
        .collect();
    anyhow::ensure!(
        failed.is_empty(),
        "pages that did not come back well: {failed:?}"
    );
    Ok(())
}

/// The page requests (robots.txt aside) host `host` served, in order.
pub(crate) fn page_hits(site: &Site, host: usize) -> Vec<Hit> {
    site.hits()
        .into_iter()
        .filter(|h| h.host == host && h.path != "/robots.txt")
        .collect()
}

fn gaps(hits: &[Hit]) -> Vec<Duration> {
    hits.windows(2).map(|w| w[1].at - w[0].at).collect()
}

#[tokio::test]
async fn a_429_with_retry_after_pauses_its_host_for_every_worker() -> Result<()> {
    let site = start_site(
        60,
        31,
        Quirks {
            refuse: Some(Refusal {
                status: 429,
                times: 1,
                retry_after: Some(3),
            }),
            // Slow enough that the other hosts are still being crawled.
            page: Duration::from_millis(30),
            ..Quirks::default()
        },
    )
    .await?;
    let config = "[throttle]\nhits = 10\nwindow = 1\nmoderated = true\n";
    let (_redis, mut cluster) = start(&site, 3, config).await?;
    let port = crate::harness::free_port()?.to_string();
    cluster.start_worker_with(&[("SPINNERET_STATS__METRICS_PORT", &port)])?;
    // While paused, `info` says so for its domain.
    let host = site.addrs()[LAST].ip().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let info = cluster
            .control(&["info", "--appid", "polite", "--crawlid", "c"])
            .await?;
        // The pause, and the slow-down that cut the origin's rate.
        let domain = &info["domains"][&host];
        if domain["paused_for"].as_f64().is_some_and(|p| p > 0.0)
            && domain["slow_downs"].as_u64().is_some_and(|n| n >= 1)
        {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "no pause in info: {info}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // /metrics names the origin, its learned rate and the slow-down.
    let origin = format!("http://{}", site.addrs()[LAST]);
    let cut = format!("spinneret_site_slow_downs{{origin=\"{origin}\"}} 1");
    let deadline = Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        let url = format!("http://127.0.0.1:{port}/metrics");
        if let Ok(r) = reqwest::get(&url).await {
            let text = r.text().await?;
            if text.contains(&cut) {
                break text;
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "no {cut} in /metrics");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        metrics.contains(&format!(
            "spinneret_site_learned_rate{{origin=\"{origin}\"}}"
        )),
        "{metrics}"
    );
    finish(&site, &cluster, Duration::from_secs(60)).await?;
    // The crawl was told its site paused, once (one fetch met the 429).
    let paused: Vec<serde_json::Value> = cluster
        .events()
        .into_iter()
        .filter(|e| e["event"] == "domain.paused")
        .collect();
    assert_eq!(paused.len(), 1, "{paused:?}");
    assert_eq!(paused[0]["crawlid"], "c");
    assert_eq!(paused[0]["reason"], "429");
    assert!(
        paused[0]["about"]
            .as_str()
            .is_some_and(|a| a.starts_with(&format!("{origin} "))),
        "{paused:?}"
    );
    let last = page_hits(&site, LAST);
    let refused = last[0].at;
    let next = last[1].at - refused;
    assert!(
        next >= Duration::from_millis(2900),
        "the host was asked again {next:?} after its 429 with Retry-After: 3"
    );
    let others = site
        .hits()
        .iter()
        .filter(|h| h.host != LAST && h.at > refused && h.at < refused + Duration::from_secs(3))
        .count();
    assert!(others > 0, "other hosts were not fetched during the pause");
    Ok(())
}

#[tokio::test]
async fn a_503_without_retry_after_pauses_longer_each_time() -> Result<()> {
    let site = start_site(
        30,
        32,
        Quirks {
            refuse: Some(Refusal {
                status: 503,
                times: 3,
                retry_after: None,
            }),
            ..Quirks::default()
        },
    )
    .await?;
    // One fetch of the host at a time, so each 503 is answered alone.
    let config = "max_in_flight = 1\npause_first = 0.5\n[throttle]\nhits = 100\nwindow = 1\nmoderated = false\n";
    let _cluster = crawl(&site, 2, config, Duration::from_secs(60)).await?;
    let g = gaps(&page_hits(&site, LAST)[..4]);
    for (gap, least) in g.iter().zip([500u64, 1000, 2000]) {
        assert!(
            *gap >= Duration::from_millis(least - 50),
            "pauses after 1, 2, 3 503s in a row: {g:?}"
        );
    }
    assert!(g[0] < g[1] && g[1] < g[2], "the pauses grow: {g:?}");
    Ok(())
}

#[tokio::test]
async fn crawl_delay_spaces_a_hosts_fetches_across_three_workers() -> Result<()> {
    let site = start_site(
        15,
        33,
        Quirks {
            crawl_delay: Some(1),
            ..Quirks::default()
        },
    )
    .await?;
    let config = "[throttle]\nhits = 100\nwindow = 1\nmoderated = false\n";
    let started = Instant::now();
    let _cluster = crawl(&site, 3, config, Duration::from_secs(60)).await?;
    let last = page_hits(&site, LAST);
    assert!(last.len() >= 4, "{} fetches of the host", last.len());
    let g = gaps(&last);
    assert!(
        g.iter().all(|d| *d >= Duration::from_millis(950)),
        "Crawl-delay: 1, yet fetches {g:?} apart"
    );
    // The other hosts ran at the throttle's pace meanwhile.
    let first = page_hits(&site, 0);
    assert!(
        gaps(&first).iter().any(|d| *d < Duration::from_millis(500)),
        "host 0 was slowed too"
    );
    assert!(started.elapsed() >= Duration::from_secs(last.len() as u64 - 1));
    Ok(())
}

#[tokio::test]
async fn a_slow_host_never_has_more_than_max_in_flight_requests_open() -> Result<()> {
    let site = start_site(
        18,
        34,
        Quirks {
            last_host_page: Duration::from_secs(2),
            ..Quirks::default()
        },
    )
    .await?;
    let config = "max_in_flight = 2\nconcurrency = 16\ndownload_timeout = 5\n[throttle]\nhits = 100\nwindow = 1\nmoderated = false\n";
    let _cluster = crawl(&site, 3, config, Duration::from_secs(90)).await?;
    let open = site.max_open(LAST);
    assert_eq!(
        open, 2,
        "the slow host had up to {open} requests open (max_in_flight = 2)"
    );
    Ok(())
}

/// The embedded frontier keeps the same pace: one `spinneret run`.
pub(crate) async fn crawl_embedded(site: &Site, config: &str) -> Result<()> {
    let config = format!("[crawl]\nmaxdepth_limit = 100\nobey_robots = true\n{config}");
    let scratch = Scratch::new(&[("link", "link")], &config)?;
    let run = scratch.crawl("link", site, 100, &[]).await?;
    let mut got = run.urls();
    got.sort();
    let expected: Vec<String> = site.expected(0, None).into_iter().collect();
    assert_eq!(got, expected, "{}", run.stderr);
    Ok(())
}

#[tokio::test]
async fn embedded_a_429_pauses_its_host_and_crawl_delay_spaces_it() -> Result<()> {
    let site = start_site(
        12,
        35,
        Quirks {
            refuse: Some(Refusal {
                status: 429,
                times: 1,
                retry_after: Some(2),
            }),
            crawl_delay: Some(1),
            ..Quirks::default()
        },
    )
    .await?;
    let config = "concurrency = 16\n[throttle]\nhits = 100\nwindow = 1\nmoderated = false\n";
    crawl_embedded(&site, config).await?;
    let g = gaps(&page_hits(&site, LAST));
    assert!(g.len() >= 3, "{g:?}");
    assert!(g[0] >= Duration::from_millis(1950), "after the 429: {g:?}");
    assert!(
        g.iter().all(|d| *d >= Duration::from_millis(950)),
        "Crawl-delay: 1, yet fetches {g:?} apart"
    );
    Ok(())
}

#[tokio::test]
async fn embedded_a_slow_host_never_has_more_than_max_in_flight_requests_open() -> Result<()> {
    let site = start_site(
        15,
        36,
        Quirks {
            last_host_page: Duration::from_secs(1),
            ..Quirks::default()
        },
    )
    .await?;
    let config = "max_in_flight = 2\nconcurrency = 16\n[throttle]\nhits = 100\nwindow = 1\nmoderated = false\n";
    crawl_embedded(&site, config).await?;
    assert_eq!(site.max_open(LAST), 2);
    Ok(())
}

fn median(mut d: Vec<Duration>) -> Duration {
    d.sort();
    d.get(d.len() / 2).copied().unwrap_or_default()
}

#[tokio::test]
async fn the_adaptive_throttle_slows_down_with_latency_and_recovers() -> Result<()> {
    let site = start_site(
        30,
        37,
        Quirks {
            last_host_page: Duration::from_millis(10),
            ..Quirks::default()
        },
    )
    .await?;
    let redis = RedisServer::start().await?;
    let config =
        "[crawl]\nadaptive_throttle = true\n[throttle]\nhits = 100\nwindow = 1\nmoderated = true\n";
    let mut cluster = Cluster::new(&redis, config)?;
    cluster.start_worker()?;
    let port = crate::harness::free_port()?.to_string();
    cluster.start_worker_with(&[("SPINNERET_STATS__METRICS_PORT", &port)])?;
    // A page of the slow host linking to 2,000 of its own paths (most
    // 404, all as slow), 150 of which the crawl may fetch.
    let seed = format!("http://{}/hostile/links2k.html", site.addrs()[LAST]);
    let request = json!({"url": seed, "appid": "polite", "crawlid": "adaptive", "maxdepth": 1, "domain_max_pages": 150});
    cluster.submit(&["--request", &request.to_string()]).await?;
    let hits_past = |n: usize, within: u64| {
        let site = &site;
        crate::harness::eventually(
            Duration::from_secs(within),
            "fetches of the slow host",
            move || {
                let h = page_hits(site, LAST);
                (h.len() >= n).then_some(h.len())
            },
        )
    };
    let before = hits_past(20, 30).await?;
    site.set_last_host_delay(Duration::from_millis(500));
    let jump = hits_past(before + 20, 60).await?;
    // Its pace shows in `info` and in /metrics.
    let slow_host = site.addrs()[LAST].ip().to_string();
    let info = cluster
        .control(&["info", "--appid", "polite", "--crawlid", "adaptive"])
        .await?;
    let rate = info["domains"][&slow_host]["adaptive_rate"].as_f64();
    assert!(rate.is_some_and(|r| r <= 5.0), "{info}");
    let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await?
        .text()
        .await?;
    let origin = format!("http://{}", site.addrs()[LAST]);
    let line = format!("spinneret_site_adaptive_rate{{origin=\"{origin}\"}} ");
    let rate: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(&line))
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::MAX);
    assert!(rate <= 5.0, "{metrics}");
    site.set_last_host_delay(Duration::from_millis(10));
    let back = hits_past(jump + 25, 60).await?;
    let g = gaps(&page_hits(&site, LAST)[..back]);
    let fast = median(g[5..before - 1].to_vec());
    // The fetches already open when the site slowed down (8) report its
    // new latency half a second later: the last 8 gaps of the slow phase.
    let slow = median(g[jump - 9..jump - 1].to_vec());
    let recovered = median(g[back - 11..].to_vec());
    // Without it, 8 fetches open at 500 ms each would come ~60 ms apart.
    assert!(
        slow >= Duration::from_millis(250),
        "at 500 ms per page, fetches {slow:?} apart (before: {fast:?})"
    );
    assert!(
        recovered < slow / 3,
        "back at 10 ms per page, fetches {recovered:?} apart (slow: {slow:?})"
    );
    assert!(fast < slow / 3, "{fast:?} then {slow:?}");
    Ok(())
}

/// The expected pages of a 1-deep crawl with sitemaps: the linked ones and
/// the orphans the sitemaps name; the `.pdf` they name is never fetched.
fn check_sitemap_crawl(site: &Site, got: Vec<String>, mode: &str) {
    let (orphans, pdf) = site.orphans();
    let mut expected: Vec<String> = site.expected(0, Some(1)).into_iter().collect();
    expected.extend(orphans);
    expected.sort();
    let mut got = got;
    got.sort();
    assert_eq!(got, expected, "the {mode} crawl's pages");
    let pdf_path = pdf.rsplit_once('/').map(|(_, p)| p).unwrap_or_default();
    assert!(
        !site.hits().iter().any(|h| h.path.ends_with(pdf_path)),
        "a URL outside the crawl's filters was fetched"
    );
    // The sitemap under /private/ (robots.txt disallows it) was not read.
    assert!(
        !site.hits().iter().any(|h| h.path == "/private/c.xml"),
        "a sitemap robots.txt disallows was fetched"
    );
}

/// The test site with host 0's sitemaps (`Quirks::sitemaps`).
async fn sitemap_site() -> Result<Site> {
    start_site(
        30,
        38,
        Quirks {
            sitemaps: true,
            ..Quirks::default()
        },
    )
    .await
}

/// `request` crawled by one embedded `run` of the link spider, robots.txt
/// obeyed.
async fn embedded_run(request: &Value) -> Result<crate::harness::Run> {
    let scratch = Scratch::new(&[("link", "link")], "[crawl]\nobey_robots = true\n")?;
    scratch
        .run(&["--spider", "link", "--request", &request.to_string()])
        .await?
        .ok()
}

#[tokio::test]
async fn a_crawl_of_maxdepth_0_reads_no_sitemap() -> Result<()> {
    let site = sitemap_site().await?;
    let request = json!({"url": site.seed_url(), "appid": "polite", "crawlid": "seed-only", "maxdepth": 0, "sitemaps": true});
    let run = embedded_run(&request).await?;
    assert_eq!(run.urls(), vec![site.seed_url()]);
    assert!(
        !site.hits().iter().any(|h| h.path.starts_with("/sitemaps/")),
        "a sitemap was read for a crawl of the seed alone"
    );
    Ok(())
}

#[tokio::test]
async fn sitemaps_seed_the_crawl_with_pages_no_page_links_to() -> Result<()> {
    let site = sitemap_site().await?;
    let request = json!({"url": site.seed_url(), "appid": "polite", "crawlid": "maps", "maxdepth": 1, "sitemaps": true});
    // Cluster: two workers on Redis.
    let redis = RedisServer::start().await?;
    let mut cluster = Cluster::new(&redis, "[crawl]\nobey_robots = true\n")?;
    cluster.start_worker()?;
    cluster.start_worker()?;
    cluster.submit(&["--request", &request.to_string()]).await?;
    let info = cluster.until_done("polite", "maps").await?;
    let urls = cluster
        .results()
        .iter()
        .filter_map(|r| r["url"].as_str().map(str::to_string))
        .collect();
    check_sitemap_crawl(&site, urls, &format!("cluster (info when done: {info})"));
    // Embedded: one process, the same answer.
    let site = sitemap_site().await?;
    let request = json!({"url": site.seed_url(), "appid": "polite", "crawlid": "maps", "maxdepth": 1, "sitemaps": true});
    let run = embedded_run(&request).await?;
    check_sitemap_crawl(&site, run.urls(), "embedded");
    Ok(())
}

#[tokio::test]
async fn a_failed_fetch_is_retried_after_a_growing_backoff_across_workers() -> Result<()> {
    let site = start_site(
        12,
        39,
        Quirks {
            refuse: Some(Refusal {
                status: 500,
                times: 2,
                retry_after: None,
            }),
            ..Quirks::default()
        },
    )
    .await?;
    let redis = RedisServer::start().await?;
    let mut cluster = Cluster::new(
        &redis,
        "[crawl]\nretry_backoff = 0.6\nobey_robots = false\n",
    )?;
    cluster.start_worker()?;
    cluster.start_worker()?;
    // Page 2 lives on the last host; alone in its crawl (maxdepth 0).
    let url = site.url(LAST);
    let request = json!({"url": url, "appid": "polite", "crawlid": "backoff", "maxdepth": 0});
    cluster.submit(&["--request", &request.to_string()]).await?;
    let results = cluster
        .until_all_of(
            &[url.clone()].into_iter().collect(),
            Duration::from_secs(30),
        )
        .await?;
    assert_eq!(results[0]["status_code"], 200, "{results:?}");
    let g = gaps(&page_hits(&site, LAST));
    // Two 500s, then the page: backoffs of 0.6 s then 1.2 s, each a random
    // half to all of it, waited in the frontier by either worker.
    assert!(
        g.len() == 2 && g[0] >= Duration::from_millis(280) && g[1] >= Duration::from_millis(580),
        "retries {g:?} apart"
    );
    Ok(())
}
