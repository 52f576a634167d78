//! Watching a running cluster: Prometheus metrics from every role, and the
//! status page showing a crawl live in a real browser.

use super::Gateway;
use crate::harness::free_port;
use crate::kafka::{crawl_request, Bus};
use anyhow::{ensure, Context, Result};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_exposes_prometheus_metrics() -> Result<()> {
    let site = crate::harness::Site::start(crate::harness::SiteSpec {
        pages: 20,
        hosts: 1,
        seed: 9,
    })
    .await?;
    let mut bus = Bus::start("", "", 1).await?;
    let port = free_port()?.to_string();
    bus.role_env("up", &[], &[("SPINNERET_STATS__METRICS_PORT", &port)])?;
    let results = bus.broker.collect("demo.crawled_firehose")?;
    bus.cli(&["feed", &crawl_request(&site.url(0), "metrics", 1)])
        .await?;
    bus.broker
        .produce("demo.incoming", &[("k".into(), "{not json".into())])
        .await?;
    results
        .wait(Duration::from_secs(60), "some results", |v| {
            (v.len() >= 3).then_some(())
        })
        .await
        .with_context(|| bus.logs())?;
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/metrics");
    let mut text = String::new();
    for _ in 0..400 {
        text = match http.get(&url).send().await {
            Ok(r) => r.text().await?,
            Err(_) => String::new(),
        };
        if text.contains("spinneret_rejected_total{reason=\"not_json\"} 1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for needle in [
        "spinneret_pages_total{status=\"200\"}",
        "spinneret_fetch_seconds_count ",
        "spinneret_plugin_call_seconds_bucket{plugin=\"link\",le=\"+Inf\"}",
        "spinneret_rejected_total{reason=\"not_json\"} 1",
        "spinneret_plugin_reloads_total{result=\"ok\"}",
        "spinneret_queue_depth",
        "spinneret_leases_in_flight ",
    ] {
        ensure!(text.contains(needle), "no {needle} in:\n{text}");
    }
    let fetched: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("spinneret_fetch_seconds_count "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    ensure!(fetched >= 3, "fetch histogram counted {fetched}");
    Ok(())
}

/// Chromium (headless) renders `url` after `budget_ms` of page time; the DOM.
async fn render(url: &str, budget_ms: u32, extra: &[&str]) -> Result<String> {
    let profile = tempfile::tempdir()?;
    let out = tokio::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--virtual-time-budget={budget_ms}"))
        .args(extra)
        .arg(url)
        .kill_on_drop(true)
        .output()
        .await
        .context("running chromium (scripts/setup --test installs it)")?;
    ensure!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The `crawled` count the page shows for `crawlid`, if it shows the crawl.
fn crawled_on_page(dom: &str, crawlid: &str) -> Option<u64> {
    let row = &dom[dom.find(&format!("data-crawl=\"{crawlid}\""))?..];
    // Chromium writes the attribute as `data-crawled=""`.
    let attr = &row[row.find("data-crawled")?..];
    let cell = &attr[attr.find('>')? + 1..];
    cell[..cell.find('<')?].trim().parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_a_crawl_live_in_a_browser() -> Result<()> {
    let site = crate::harness::Site::start(crate::harness::SiteSpec {
        pages: 80,
        hosts: 1,
        seed: 21,
    })
    .await?;
    // Slow enough that the counts move between two looks.
    let mut bus = Bus::start(
        "",
        "[throttle]\nhits = 4\nwindow = 1\nmoderated = true\n",
        1,
    )
    .await?;
    bus.role("up", &["--workers", "4"])?;
    let gw = Gateway::start(&mut bus, &[]).await?;
    let results = bus.broker.collect("demo.crawled_firehose")?;
    bus.cli(&["feed", &crawl_request(&site.url(0), "live-crawl", 2)])
        .await?;
    // A scheduled crawl of the seed alone beside it: its schedule and
    // events on the page, and its events replayed over REST.
    let scheduled = serde_json::json!({"url": site.url(0), "appid": "testapp", "crawlid": "life-crawl",
                                       "maxdepth": 0, "schedule": {"every": 3600}});
    bus.cli(&["feed", &scheduled.to_string()]).await?;
    results
        .wait(Duration::from_secs(60), "the first results", |v| {
            (v.len() >= 2).then_some(())
        })
        .await
        .with_context(|| bus.logs())?;

    let page = format!("{}/ui", gw.base);
    let first_dom = render(&page, 3000, &["--dump-dom"]).await?;
    let first = crawled_on_page(&first_dom, "live-crawl")
        .with_context(|| format!("the page does not show the crawl:\n{first_dom}"))?;
    ensure!(
        first_dom.contains("running"),
        "the crawl is not shown as running"
    );
    ensure!(
        first_dom.contains("link"),
        "no spider or plugin `link` on the page"
    );
    // Wait until the cluster has crawled more, then look again.
    let later = crawled_by_status(&gw, "live-crawl", first + 3).await?;
    ensure!(
        later >= first + 3,
        "the crawl did not progress ({first} -> {later})"
    );
    let second_dom = render(&page, 3000, &["--dump-dom"]).await?;
    let second = crawled_on_page(&second_dom, "live-crawl").context("crawl gone from the page")?;
    ensure!(
        second > first,
        "the page did not update: crawled {first} then {second}"
    );
    // The crawl's life: pages by status class and the last minutes' chart.
    let life = &second_dom[second_dom
        .find("id=\"life\"")
        .context("no crawl life table")?..];
    ensure!(
        life.contains("data-status") && life.contains("2xx"),
        "no pages by status class: {life}"
    );
    ensure!(
        life.contains("data-chart") && life.contains("<rect"),
        "no chart of pages per minute"
    );
    // The scheduled crawl: its next run and its latest events, on the page
    // and over REST.
    let names = replayed(&gw, "life-crawl", "crawl.completed")
        .await
        .with_context(|| bus.logs())?;
    ensure!(
        names.first().map(String::as_str) == Some("crawl.completed")
            && names.iter().any(|n| n == "schedule.fired"),
        "events replayed, newest first: {names:?}"
    );
    let (code, _) = gw.get("/api/events?appid=testapp").await?;
    ensure!(code == 400, "events of no crawl: {code}");
    let third_dom = render(&page, 3000, &["--dump-dom"]).await?;
    ensure!(
        third_dom.contains("data-schedule") && third_dom.contains("1 runs, waiting, next"),
        "no schedule on the page"
    );
    ensure!(
        third_dom.contains("crawl.completed (run 1)"),
        "no events on the page"
    );
    for section in [
        "Crawls",
        "Crawl life",
        "Queues by domain",
        "Workers",
        "Plugins",
        "pages/s",
    ] {
        ensure!(second_dom.contains(section), "no {section} on the page");
    }

    screenshot(&page).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_names_the_origin_holding_a_crawl_back() -> Result<()> {
    // A site behind a limiter (5/s, 429 without Retry-After), the
    // throttle lifted: the origin's learned rate holds the crawl back.
    let limit = spinneret_testsite::Limit {
        per_sec: 5.0,
        burst: 1.0,
        retry_after: None,
    };
    let quirks = crate::harness::Quirks {
        limit: Some(limit),
        ..crate::harness::Quirks::default()
    };
    let spec = crate::harness::SiteSpec {
        pages: 300,
        hosts: 1,
        seed: 22,
    };
    let site = crate::harness::Site::start_with(spec, quirks).await?;
    let lifted = "[throttle]\nhits = 100000\nwindow = 1\nmoderated = false\n";
    let mut bus = Bus::start("", lifted, 1).await?;
    bus.role("up", &["--workers", "2"])?;
    let gw = Gateway::start(&mut bus, &[]).await?;
    bus.cli(&["feed", &crawl_request(&site.url(0), "held-crawl", 3)])
        .await?;
    let origin = format!("http://{}", site.addrs()[0]);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let held = loop {
        let (_, s) = gw.get("/api/status").await?;
        let held = s["crawls"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["crawlid"] == "held-crawl"))
            .and_then(|c| c["held_back"].as_array())
            .and_then(|h| h.iter().find(|h| h["origin"] == origin.as_str()).cloned());
        if let Some(h) = held.filter(|h| h["slow_downs"].as_u64() >= Some(1)) {
            break h;
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "{origin} never shown holding the crawl back: {s}\n{}",
            bus.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    ensure!(
        held["learned_rate"]
            .as_f64()
            .is_some_and(|r| r > 0.0 && r < 20.0),
        "no learned rate below the site's limit: {held}"
    );
    ensure!(
        held["queued"].as_u64().is_some_and(|q| q > 0),
        "nothing queued on it: {held}"
    );
    let dom = render(&format!("{}/ui", gw.base), 3000, &["--dump-dom"]).await?;
    let crawls = &dom[dom.find("id=\"crawls\"").context("no crawls table")?..];
    ensure!(
        crawls.contains(&origin) && crawls.contains("/s"),
        "the page does not name {origin} and its rate: {crawls}"
    );
    Ok(())
}

/// The names of `crawlid`'s events `/api/events` replays (newest first),
/// once they include `awaited` (at most 30 s).
async fn replayed(gw: &Gateway, crawlid: &str, awaited: &str) -> Result<Vec<String>> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, r) = gw
            .get(&format!("/api/events?appid=testapp&crawlid={crawlid}"))
            .await?;
        let names: Vec<String> = r["events"]
            .as_array()
            .map(|e| {
                e.iter()
                    .filter_map(|e| e["event"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if names.iter().any(|n| n == awaited) {
            return Ok(names);
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "no {awaited} among {crawlid}'s events: {r}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `crawled` count `/api/status` gives `crawlid`, once it reaches
/// `at_least` (or the last one read, after 30 s).
async fn crawled_by_status(gw: &Gateway, crawlid: &str, at_least: u64) -> Result<u64> {
    let mut later = 0;
    for _ in 0..600 {
        let (_, s) = gw.get("/api/status").await?;
        later = s["crawls"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["crawlid"] == crawlid))
            .and_then(|c| c["crawled"].as_u64())
            .unwrap_or(0);
        if later >= at_least {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(later)
}

/// A screenshot of `page` for people: target/test-artifacts/status-page.png.
async fn screenshot(page: &str) -> Result<()> {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| crate::harness::repo().join("target"))
        .join("test-artifacts");
    std::fs::create_dir_all(&dir)?;
    let shot = dir.join("status-page.png");
    render(
        page,
        3000,
        &[
            "--window-size=1280,1100",
            &format!("--screenshot={}", shot.display()),
        ],
    )
    .await?;
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    ensure!(
        size > 10_000,
        "screenshot {} is {size} bytes",
        shot.display()
    );
    Ok(())
}
