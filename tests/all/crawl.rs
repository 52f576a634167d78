//! Embedded crawls of the local site.

use crate::harness::{eventually, read_results, signal, Scratch, Site, SiteSpec};
use anyhow::Result;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};

async fn crawl_depth(site: &Site, depth: u32) -> Result<()> {
    crawl_depth_with(site, "link", depth).await
}

/// `spider` crawls the site to `depth`: exactly the oracle's URL set, one
/// result per page, none failed.
async fn crawl_depth_with(site: &Site, spider: &str, depth: u32) -> Result<()> {
    let s = Scratch::new(&[(spider, spider)], "")?;
    let run = s.crawl(spider, site, depth, &[]).await?;
    let urls = run.urls();
    let got: BTreeSet<String> = urls.iter().cloned().collect();
    assert_eq!(
        got.len(),
        urls.len(),
        "{spider}: duplicate results at depth {depth}"
    );
    let expected = site.expected(0, Some(depth));
    let missing: Vec<_> = expected.difference(&got).collect();
    let extra: Vec<_> = got.difference(&expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{spider} at depth {depth}: missing {missing:?}, extra {extra:?}"
    );
    assert!(
        run.results.iter().all(|r| r.get("error").is_none()),
        "{spider}: a page failed"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_python_link_spider_crawls_the_same_pages_as_the_rust_one() -> Result<()> {
    let site = Site::start(SiteSpec::default()).await?;
    crawl_depth_with(&site, "link", 2).await?;
    crawl_depth_with(&site, "py-link", 2).await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_js_link_spider_crawls_the_same_pages_as_the_rust_one() -> Result<()> {
    let site = Site::start(SiteSpec::default()).await?;
    crawl_depth_with(&site, "js-link", 2).await
}

#[tokio::test(flavor = "multi_thread")]
async fn depth_0_returns_only_the_seed() -> Result<()> {
    let site = Site::start(SiteSpec::default()).await?;
    assert_eq!(site.expected(0, Some(0)).len(), 1);
    crawl_depth(&site, 0).await
}

#[tokio::test(flavor = "multi_thread")]
async fn depth_1_returns_exactly_the_expected_set() -> Result<()> {
    let site = Site::start(SiteSpec::default()).await?;
    crawl_depth(&site, 1).await
}

#[tokio::test(flavor = "multi_thread")]
async fn depth_2_returns_exactly_the_expected_set() -> Result<()> {
    let site = Site::start(SiteSpec {
        pages: 400,
        hosts: 4,
        seed: 11,
    })
    .await?;
    assert!(
        site.expected(0, Some(2)).len() > 100,
        "the site should make depth 2 interesting"
    );
    crawl_depth(&site, 2).await
}

#[tokio::test(flavor = "multi_thread")]
async fn results_carry_the_contract_fields() -> Result<()> {
    let site = Site::start(SiteSpec::default()).await?;
    let s = Scratch::new(&[("link", "link")], "")?;
    let request = serde_json::json!({
        "url": site.seed_url(), "appid": "testapp", "crawlid": "fields", "maxdepth": 1,
        "attrs": {"job": 42}, "useragent": "fieldtest/1.0", "cookie": "k=v; k2=v2",
    });
    let run = s
        .run(&["--spider", "link", "--request", &request.to_string()])
        .await?
        .ok()?;
    let by_url: HashMap<String, &Value> = run
        .results
        .iter()
        .map(|r| (r["url"].as_str().unwrap_or_default().to_string(), r))
        .collect();

    the_seed_carries_every_field(by_url[&site.seed_url()]);
    // Depth-1 pages are at maxdepth: fetched, but no links followed.
    let child = by_url[&site.url(1)];
    assert_eq!(child["depth"], 1);
    assert_eq!(child["links"], serde_json::json!([]));
    assert_eq!(
        child["request_headers"]["User-Agent"],
        serde_json::json!(["fieldtest/1.0"])
    );

    errors_and_redirects_carry_theirs(&run.results);
    // robots.txt disallows /private/: never fetched.
    assert!(site.hits().iter().all(|h| !h.path.starts_with("/private/")));
    assert!(site
        .hits()
        .iter()
        .all(|h| !h.path.ends_with(".jpg") && !h.path.ends_with(".pdf")));
    Ok(())
}

/// The seed's result: every contract field, the request's attrs and user
/// agent, its cookie sent but not published, its body, headers and links.
fn the_seed_carries_every_field(seed: &Value) {
    for key in [
        "appid",
        "crawlid",
        "url",
        "response_url",
        "status_code",
        "status_msg",
        "request_headers",
        "response_headers",
        "body",
        "encoding",
        "links",
        "attrs",
        "timestamp",
        "spiderid",
        "depth",
        "fetch_ms",
    ] {
        assert!(seed.get(key).is_some(), "result lacks `{key}`: {seed}");
    }
    assert_eq!(seed["appid"], "testapp");
    assert_eq!(seed["status_code"], 200);
    assert_eq!(seed["status_msg"], "OK");
    assert_eq!(seed["attrs"], serde_json::json!({"job": 42}));
    assert_eq!(
        seed["request_headers"]["User-Agent"],
        serde_json::json!(["fieldtest/1.0"])
    );
    // Sent, but not published (crawl.publish_credentials opts an app in).
    assert!(seed["request_headers"].get("Cookie").is_none(), "{seed}");
    assert!(seed["body"]
        .as_str()
        .is_some_and(|b| b.contains("<h1>Page 0</h1>")));
    assert!(seed["response_headers"]["Content-Type"][0]
        .as_str()
        .is_some_and(|c| c.starts_with("text/html")));
    let links = seed["links"].as_array().expect("links array");
    assert!(
        !links.is_empty()
            && links
                .iter()
                .all(|l| l["url"].is_string() && l["text"].is_string())
    );
    assert!(links
        .iter()
        .all(|l| !l["url"].as_str().unwrap_or_default().ends_with(".jpg")));
}

/// A missing page's 404 and a redirect's final URL, where the crawl met them.
fn errors_and_redirects_carry_theirs(results: &[Value]) {
    let missing = results
        .iter()
        .find(|r| r["url"].as_str().is_some_and(|u| u.contains("/missing/")));
    if let Some(m) = missing {
        assert_eq!(m["status_code"], 404);
        assert_eq!(m["status_msg"], "Not Found");
    }
    let redirect = results
        .iter()
        .find(|r| r["url"].as_str().is_some_and(|u| u.contains("/r/")));
    if let Some(r) = redirect {
        assert!(
            r["response_url"]
                .as_str()
                .is_some_and(|u| u.contains("/p/")),
            "{r}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn wandering_spider_follows_one_link_per_page() -> Result<()> {
    wanders("wandering").await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_python_wandering_spider_makes_valid_chains() -> Result<()> {
    wanders("py-wandering").await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_js_wandering_spider_makes_valid_chains() -> Result<()> {
    wanders("js-wandering").await
}

/// A wandering spider's chain: steps 0, 1, 2, ... each one the link its
/// parent followed. The spider marks each step a walk, so the host stops
/// the chain at `crawl.max_walk_steps` (5 here), not at `maxdepth` (2).
async fn wanders(spider: &str) -> Result<()> {
    let site = Site::start(SiteSpec::default()).await?;
    let s = Scratch::new(&[(spider, spider)], "[crawl]\nmax_walk_steps = 5\n")?;
    let run = s.crawl(spider, &site, 2, &[]).await?;
    // The walk ends at the walk limit, or earlier on a link already crawled.
    assert!(
        (1..=6).contains(&run.results.len()),
        "the seed, then at most 5 steps: {:?}",
        run.urls()
    );
    assert!(run.results.iter().all(|r| r["depth"].as_u64() <= Some(5)));
    assert!(
        run.results.iter().all(|r| r.get("error").is_none()),
        "{spider} failed on a page: {:?}",
        run.results
    );
    let mut by_step: Vec<&Value> = run.results.iter().collect();
    by_step.sort_by_key(|r| r["attrs"]["step"].as_u64());
    for (i, r) in by_step.iter().enumerate() {
        assert_eq!(
            r["attrs"]["step"].as_u64(),
            Some(i as u64),
            "steps must be 0, 1, 2, ...: {r}"
        );
        assert!(r["links"].as_array().is_some_and(|l| l.len() <= 1));
        if i > 0 {
            let parent_links = by_step[i - 1]["links"].as_array().expect("links");
            assert_eq!(
                parent_links.first().map(|l| &l["url"]),
                Some(&r["url"]),
                "step {i} is not the link its parent followed"
            );
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn loopback_seed_is_refused_without_allow_private() -> Result<()> {
    let site = Site::start(SiteSpec::default()).await?;
    let s = Scratch::new(&[("link", "link")], "[crawl]\nallow_private = false\n")?;
    for seed in [
        site.seed_url(),
        format!("http://localhost:{}/p/0.html", site.addrs()[0].port()),
    ] {
        let run = s.run(&["--spider", "link", "--seed", &seed]).await?;
        assert_eq!(run.code, Some(2), "{}", run.stderr);
        assert!(run.stderr.contains("loopback"), "{}", run.stderr);
        assert!(run.stderr.contains("--allow-private"), "{}", run.stderr);
        assert!(run.results.is_empty());
    }
    assert!(
        site.hits().is_empty(),
        "a refused crawl must not touch the site"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn middleware_and_pipeline_worlds_run() -> Result<()> {
    let site = Site::start(SiteSpec::default()).await?;
    let plugins = [
        ("link", "link"),
        ("stamp-headers", "stamp-headers"),
        ("page-title", "page-title"),
    ];
    let s = Scratch::new(&plugins, "")?;
    let args = [
        "--spider",
        "link",
        "--seed",
        &site.seed_url(),
        "--middleware",
        "stamp-headers",
        "--pipeline",
        "page-title",
    ];
    let run = s.run(&args).await?.ok()?;
    let r = &run.results[0];
    assert_eq!(
        r["request_headers"]["X-Crawled-By"],
        serde_json::json!(["spinneret"])
    );
    assert_eq!(r["title"], "Page 0");
    let hit = site
        .hits()
        .into_iter()
        .find(|h| h.path == "/p/0.html")
        .expect("seed fetched");
    assert!(hit
        .headers
        .iter()
        .any(|(k, v)| k == "x-crawled-by" && v == "spinneret"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_requests_are_refused_with_reasons() -> Result<()> {
    let s = Scratch::new(&[("link", "link")], "")?;
    let bad = r#"{"url":"http://a.test/","appid":"x","crawlid":"c"}"#;
    let run = s
        .run(&["--spider", "link", "--request", bad, "--request", "{nope"])
        .await?;
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr.contains("appid") && run.stderr.contains("not JSON"),
        "{}",
        run.stderr
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_config_keys_are_named() -> Result<()> {
    let s = Scratch::new(&[("link", "link")], "[throttle]\nhitz = 3\n")?;
    let run = s
        .run(&["--spider", "link", "--seed", "http://a.test/"])
        .await?;
    assert_eq!(run.code, Some(2));
    assert!(run.stderr.contains("hitz"), "{}", run.stderr);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_file_starts_every_crawl_in_it() -> Result<()> {
    let site = Site::start(SiteSpec::default()).await?;
    let s = Scratch::new(&[("link", "link")], "")?;
    let lines = [
        serde_json::json!({"url": site.url(1), "appid": "app", "crawlid": "one"}),
        serde_json::json!({"url": site.url(2), "appid": "app", "crawlid": "two", "priority": 90}),
    ];
    let file = s.path("requests.jsonl");
    std::fs::write(
        &file,
        lines
            .iter()
            .map(|l| l.to_string() + "\n")
            .collect::<String>(),
    )?;
    let run = s
        .run(&[
            "--spider",
            "link",
            "--requests",
            file.to_str().unwrap_or_default(),
        ])
        .await?
        .ok()?;
    let mut got: Vec<(String, String)> = run
        .results
        .iter()
        .map(|r| {
            (
                r["crawlid"].as_str().unwrap_or_default().into(),
                r["url"].as_str().unwrap_or_default().into(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("one".to_string(), site.url(1)),
            ("two".to_string(), site.url(2))
        ]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn domain_max_pages_caps_results_per_domain() -> Result<()> {
    let site = Site::start(SiteSpec::default()).await?;
    let s = Scratch::new(&[("link", "link")], "")?;
    let request = serde_json::json!({"url": site.seed_url(), "appid": "app", "crawlid": "capped", "maxdepth": 2, "domain_max_pages": 5});
    let run = s
        .run(&["--spider", "link", "--request", &request.to_string()])
        .await?
        .ok()?;
    let mut per_host: HashMap<String, usize> = HashMap::new();
    for r in &run.results {
        let host = url::Url::parse(r["url"].as_str().unwrap_or_default())?
            .host_str()
            .unwrap_or_default()
            .to_string();
        *per_host.entry(host).or_default() += 1;
    }
    assert_eq!(per_host.len(), site.spec.hosts, "{per_host:?}");
    assert!(per_host.values().all(|n| *n <= 5), "{per_host:?}");
    Ok(())
}

/// Regression: a redirect hop used to be a second, unthrottled request to
/// the same domain. Every request the site sees must fit the throttle.
#[tokio::test(flavor = "multi_thread")]
async fn regression_redirect_hops_are_throttled() -> Result<()> {
    let site = Site::start(SiteSpec::default()).await?;
    let s = Scratch::new(&[("link", "link")], "[throttle]\nhits = 2\nwindow = 1\n")?;
    // Redirects on host 0 (page numbers that are multiples of the host count).
    let origin = site.addrs()[0];
    let seeds: Vec<String> = (0..4)
        .map(|k| format!("http://{origin}/r/{}", 3 * (k + 1)))
        .collect();
    let mut args = vec!["--spider", "link"];
    for seed in &seeds {
        args.extend(["--seed", seed.as_str()]);
    }
    let run = s.run(&args).await?.ok()?;
    assert_eq!(run.results.len(), 4);
    assert!(run.results.iter().all(|r| r["response_url"]
        .as_str()
        .is_some_and(|u| u.contains("/p/"))));
    // robots.txt is fetched once per origin outside the throttle.
    let mut times: Vec<_> = site
        .hits()
        .into_iter()
        .filter(|h| h.host == 0 && h.path != "/robots.txt")
        .map(|h| h.at)
        .collect();
    times.sort();
    assert_eq!(times.len(), 8, "a redirect and its target per seed");
    for w in times.windows(3) {
        assert!(
            w[2] - w[0] >= std::time::Duration::from_millis(750),
            "3 requests within {:?}",
            w[2] - w[0]
        );
    }
    Ok(())
}

/// Results that cannot be written (every write to /dev/full fails with "no
/// space left") are never acked as if delivered: each is retried for
/// `crawl.delivery_timeout`, then reported on stderr with its reason, and
/// the run fails, its summary counting them.
#[tokio::test(flavor = "multi_thread")]
async fn results_that_cannot_be_written_fail_the_run_and_are_each_reported() -> Result<()> {
    let site = Site::start(SiteSpec::default()).await?;
    let s = Scratch::new(&[("link", "link")], "[crawl]\ndelivery_timeout = 1\n")?;
    let out = s
        .command("run")
        .args(["--spider", "link", "--seed", &site.seed_url()])
        .args(["--maxdepth", "1", "--output", "/dev/full"])
        .output()
        .await?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let expected = site.expected(0, Some(1));
    let reported: Vec<Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("undelivered").is_some())
        .collect();
    let urls: BTreeSet<String> = reported
        .iter()
        .filter_map(|v| v["result"]["url"].as_str().map(str::to_string))
        .collect();
    assert_eq!(urls, expected, "every page reported once: {stderr}");
    assert_eq!(reported.len(), expected.len());
    assert!(
        reported.iter().all(|v| v["undelivered"]
            .as_str()
            .is_some_and(|r| r.contains("No space left on device"))),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("undelivered={}", expected.len())),
        "the summary counts them: {stderr}"
    );
    Ok(())
}

/// An embedded `run` stops on SIGTERM like every role: within
/// `process.shutdown_grace`, whole lines only, a summary that says what
/// was left uncrawled, and exit code 130 (the output is partial).
#[tokio::test(flavor = "multi_thread")]
async fn an_embedded_run_stops_cleanly_on_sigterm() -> Result<()> {
    let site =
        Site::start_slow(SiteSpec::default(), std::time::Duration::from_millis(1500)).await?;
    let s = Scratch::new(&[("link", "link")], "[process]\nshutdown_grace = 3\n")?;
    let (mut child, out, err) = s.spawn_run("link", &site.seed_url(), 2, &[])?;
    eventually(
        std::time::Duration::from_secs(30),
        "the seed's result",
        || (!read_results(&out).ok()?.is_empty()).then_some(()),
    )
    .await?;
    let signalled = std::time::Instant::now();
    signal(&child, "TERM")?;
    let status = tokio::time::timeout(std::time::Duration::from_secs(10), child.wait()).await??;
    let log = std::fs::read_to_string(&err)?;
    assert_eq!(status.code(), Some(130), "{status:?}:\n{log}");
    assert!(
        signalled.elapsed() < std::time::Duration::from_secs(3),
        "{log}"
    );
    assert!(log.contains("stopped before the crawl was done"), "{log}");
    for line in std::fs::read_to_string(&out)?.lines() {
        serde_json::from_str::<Value>(line)?;
    }
    Ok(())
}

/// The reference's wandering spider walks until a page has no links,
/// whatever `maxdepth` says: ours walks a 3-page chain with the default
/// `maxdepth` (0), and stops at `crawl.max_walk_steps` on an endless one.
#[tokio::test]
async fn the_wandering_spider_walks_a_chain_and_stops_at_the_walk_limit() -> Result<()> {
    let site = Site::start(SiteSpec::default()).await?;
    let s = Scratch::new(
        &[("wandering", "wandering")],
        "[crawl]\nmax_walk_steps = 5\n",
    )?;
    let run = s
        .run(&["--spider", "wandering", "--seed", &site.chain_url(3, 0)])
        .await?
        .ok()?;
    let mut urls = run.urls();
    urls.sort();
    assert_eq!(
        urls,
        (0..3).map(|i| site.chain_url(3, i)).collect::<Vec<_>>()
    );
    let steps: Vec<u64> = run
        .results
        .iter()
        .filter_map(|r| r["attrs"]["step"].as_u64())
        .collect();
    assert_eq!(steps.len(), 3, "{:?}", run.results);
    let endless = s
        .run(&["--spider", "wandering", "--seed", &site.chain_url(0, 0)])
        .await?
        .ok()?;
    let mut urls = endless.urls();
    urls.sort();
    // The seed and five steps.
    let mut want: Vec<String> = (0..6).map(|i| site.chain_url(0, i)).collect();
    want.sort();
    assert_eq!(urls, want);
    Ok(())
}
