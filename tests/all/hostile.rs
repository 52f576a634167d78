//! The hostile web: pages, robots files and requests nobody vetted. Each
//! test serves one hostile input from the local test site and checks the
//! bound that contains it (ARCHITECTURE.md, "Bounds").

use crate::harness::{eventually, read_results, Quirks, RedisServer, Scratch, Site, SiteSpec};
use anyhow::Result;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A page with 200,000 distinct links, crawled by a Redis worker: at most
/// `max_links_per_page` children are queued, the result says it was cut,
/// and Redis answers every other client throughout.
#[tokio::test(flavor = "multi_thread")]
async fn a_page_of_200000_links_queues_at_most_the_cap_and_never_stalls_redis() -> Result<()> {
    let redis = RedisServer::start().await?;
    let site = Site::start(SiteSpec::default()).await?;
    let ns = format!("hostile{}", std::process::id());
    // One fetch per 10 minutes per domain: the seed is fetched, its
    // children stay queued where they can be counted.
    let config = format!(
        "[redis]\nnamespace = \"{ns}\"\n[throttle]\nhits = 1\nwindow = 600\n[crawl]\nobey_robots = false\n"
    );
    let s = Scratch::new(&[("link", "link")], &config)?;
    let seed = site.hostile_url("links");

    let stop = Arc::new(AtomicBool::new(false));
    let pinger = {
        let (stop, url) = (stop.clone(), redis.url());
        std::thread::spawn(move || -> Result<Duration> {
            let mut con = redis::Client::open(url)?.get_connection()?;
            let mut worst = Duration::ZERO;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                redis::cmd("PING").query::<String>(&mut con)?;
                worst = worst.max(t.elapsed());
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(worst)
        })
    };
    let (mut worker, out, _err) = s.spawn_run("link", &seed, 1, &["--redis", &redis.url()])?;
    let result = eventually(Duration::from_secs(90), "the hostile page's result", || {
        read_results(&out)
            .ok()?
            .into_iter()
            .find(|r| r["url"] == seed.as_str())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let worst = pinger
        .join()
        .map_err(|_| anyhow::anyhow!("the PING thread panicked"))??;
    let result = result?;
    assert!(
        worst <= Duration::from_millis(200),
        "a Redis client waited {worst:?} for PING"
    );
    assert_eq!(
        result["links_truncated"], true,
        "{}",
        result["links_truncated"]
    );
    assert_eq!(result["links"].as_array().map(Vec::len), Some(5000));
    let crawlid = result["crawlid"].as_str().unwrap_or_default().to_string();
    let info = s
        .command("info")
        .args([
            "--redis",
            &redis.url(),
            "--appid",
            "cli",
            "--crawlid",
            &crawlid,
        ])
        .output()
        .await?;
    let info: Value = serde_json::from_slice(&info.stdout)?;
    let pending = info["total_pending"].as_u64().unwrap_or(u64::MAX);
    assert!(
        (1..=5000).contains(&pending),
        "children queued: {pending} ({info})"
    );
    worker.kill().await?;
    Ok(())
}

/// A ~9 MB robots.txt whose only rule that matters comes after 500 KiB,
/// on a host whose page links 2,000 pages: the rule is ignored (its pages
/// are crawled), and another crawl in the same process keeps its pace.
#[tokio::test(flavor = "multi_thread")]
async fn a_huge_robots_txt_is_read_to_500_kib_and_slows_no_other_crawl() -> Result<()> {
    let hostile = Site::start_with(
        SiteSpec::default(),
        Quirks {
            huge_robots: true,
            ..Quirks::default()
        },
    )
    .await?;
    // The other crawl is slow on purpose, so it runs all along.
    let other = Site::start_slow(SiteSpec::default(), Duration::from_millis(100)).await?;
    let s = Scratch::new(&[("link", "link")], "")?;
    let hostile_seed = format!("http://{}/hostile/links2k.html", hostile.addrs()[2]);
    let run = s
        .run(&[
            "--spider",
            "link",
            "--seed",
            &hostile_seed,
            "--seed",
            &other.seed_url(),
            "--maxdepth",
            "1",
        ])
        .await?
        .ok()?;
    // `Disallow: /p/` sits past 500 KiB: ignored, so host 2's pages (every
    // third page of the site) are crawled.
    let on_host_2 = format!("http://{}/p/", hostile.addrs()[2]);
    let crawled: Vec<&Value> = run
        .results
        .iter()
        .filter(|r| r["url"].as_str().is_some_and(|u| u.starts_with(&on_host_2)))
        .collect();
    assert_eq!(crawled.len(), 2000, "every linked page was fetched");
    assert!(crawled.iter().any(|r| r["status_code"] == 200));
    // The other crawl: complete, and never waiting on the hostile file.
    let got: std::collections::BTreeSet<String> = run.urls().into_iter().collect();
    assert!(other.expected(0, Some(1)).is_subset(&got));
    let mut at: Vec<Instant> = other
        .hits()
        .iter()
        .filter(|h| h.path != "/robots.txt")
        .map(|h| h.at)
        .collect();
    at.sort();
    let gap = at.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default();
    assert!(
        gap < Duration::from_secs(2),
        "the other crawl stalled for {gap:?}"
    );
    Ok(())
}

/// A robots.txt that takes 6 s (two slow redirect hops) under
/// `robots_timeout = 1`: the crawl does not wait for it, and treats the
/// origin as having none (so `/private/` pages, which it would forbid,
/// are fetched).
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_robots_txt_is_given_up_after_robots_timeout() -> Result<()> {
    let site = Site::start_with(
        SiteSpec::default(),
        Quirks {
            robots: Duration::from_secs(3),
            ..Quirks::default()
        },
    )
    .await?;
    let s = Scratch::new(&[("link", "link")], "[crawl]\nrobots_timeout = 1\n")?;
    let run = s.crawl("link", &site, 2, &[]).await?;
    assert!(!run.results.is_empty());
    assert!(
        site.hits().iter().any(|h| h.path.starts_with("/private/")),
        "robots.txt was waited for"
    );
    Ok(())
}

/// A body over `crawl.max_body_bytes` (the 5 MB page of links under a
/// 1 MB cap): a result with the real status and an error, nothing followed.
#[tokio::test(flavor = "multi_thread")]
async fn a_body_over_the_size_cap_gives_an_error_result() -> Result<()> {
    let site = Site::start(SiteSpec::default()).await?;
    let s = Scratch::new(&[("link", "link")], "[crawl]\nmax_body_bytes = 1000000\n")?;
    let seed = site.hostile_url("links");
    let run = s.crawl("link", &site, 1, &["--seed", &seed]).await?;
    let page = run
        .results
        .iter()
        .find(|r| r["url"] == seed.as_str())
        .expect("the big page's result");
    assert_eq!(page["status_code"], 200);
    assert!(
        page["error"]
            .as_str()
            .is_some_and(|e| e.contains("crawl.max_body_bytes")),
        "{page}"
    );
    assert_eq!(page["links"], serde_json::json!([]));
    Ok(())
}

/// A request with 100 regexes of 10 KB each is refused with the reason
/// before anything is fetched.
#[tokio::test]
async fn a_request_with_oversized_regexes_is_refused_with_the_reason() -> Result<()> {
    let site = Site::start(SiteSpec::default()).await?;
    let s = Scratch::new(&[("link", "link")], "")?;
    let regexes: Vec<String> = (0..100)
        .map(|i| format!("{i}{}", "a".repeat(10_000)))
        .collect();
    let request = serde_json::json!({
        "url": site.seed_url(), "appid": "app", "crawlid": "big-regex",
        "allow_regex": regexes,
    });
    // A megabyte: too long for one command-line argument.
    let file = s.path("big.jsonl");
    std::fs::write(&file, request.to_string())?;
    let file = file.to_string_lossy().into_owned();
    let run = s.run(&["--spider", "link", "--requests", &file]).await?;
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("`allow_regex` has 100 items, more than the 32 allowed"),
        "{}",
        run.stderr
    );
    assert!(site.hits().is_empty(), "nothing was fetched");
    Ok(())
}

/// A link whose text and href hold an entity cut inside a multi-byte
/// character: the page yields its result without error and its link is
/// followed (the scanner once panicked there and lost every link).
#[tokio::test(flavor = "multi_thread")]
async fn a_page_with_an_entity_cut_inside_a_character_is_crawled_whole() -> Result<()> {
    let site = Site::start(SiteSpec::default()).await?;
    let s = Scratch::new(&[("link", "link")], "")?;
    let seed = site.hostile_url("entity");
    let run = s
        .run(&["--spider", "link", "--seed", &seed, "--maxdepth", "1"])
        .await?
        .ok()?;
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    let page = run
        .results
        .iter()
        .find(|r| r["url"] == seed.as_str())
        .expect("the hostile page's result");
    assert!(page.get("error").is_none(), "{page}");
    assert_eq!(page["links"][0]["text"], "&aaaaaaaa\u{e9}");
    // The child, canonicalized (query sorted, percent-encoded).
    let child = format!("{}?", site.url(0));
    assert!(
        run.urls().iter().any(|u| u.starts_with(&child)),
        "its link was followed: {:?}",
        run.urls()
    );
    Ok(())
}
