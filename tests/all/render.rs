//! Rendering (contract §3 "Rendering"): pages built by their scripts are
//! loaded in headless chromium, every request they make answered by our
//! fetcher under the address policy, bounded in time, and crash-safe.
//! Real chromium, real worker processes, the local site's `/js/` pages.

use crate::cluster::Cluster;
use crate::harness::{eventually, RedisServer, Run, Scratch, Site, SiteSpec};
use anyhow::{Context, Result};
use serde_json::{json, Value};
use std::time::Duration;

/// The scripted pages are served from host 1 (127.0.0.2), so a test can
/// allow that address alone and keep 127.0.0.1 private.
const HOST: usize = 1;

async fn site() -> Result<Site> {
    Ok(Site::start(SiteSpec {
        pages: 6,
        hosts: 2,
        seed: 41,
    })
    .await?)
}

/// `spinneret run` of the link spider from `seeds` with `--render mode`.
async fn run(scratch: &Scratch, seeds: &[String], depth: u32, mode: &str) -> Result<Run> {
    let depth = depth.to_string();
    let mut args = vec!["--spider", "link", "--maxdepth", &depth, "--render", mode];
    for s in seeds {
        args.extend(["--seed", s.as_str()]);
    }
    scratch.run(&args).await?.ok()
}

fn result<'a>(run: &'a Run, url: &str) -> Result<&'a Value> {
    run.results
        .iter()
        .find(|r| r["url"] == url)
        .with_context(|| format!("no result for {url}: {:?}", run.urls()))
}

fn body(r: &Value) -> &str {
    r["body"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn a_script_built_page_is_rendered_with_always_and_not_with_never() -> Result<()> {
    let site = site().await?;
    let scratch = Scratch::new(&[("link", "link")], "")?;
    let app = site.scripted_url(HOST, "app.html");
    let (a, b) = (
        site.scripted_url(HOST, "a.html"),
        site.scripted_url(HOST, "b.html"),
    );

    let rendered = run(&scratch, std::slice::from_ref(&app), 1, "always").await?;
    let mut urls = rendered.urls();
    urls.sort();
    assert_eq!(
        urls,
        vec![a.clone(), app.clone(), b.clone()],
        "{}",
        rendered.stderr
    );
    let page = result(&rendered, &app)?;
    assert!(body(page).contains("Built by script"), "{page}");
    assert_eq!(page["rendered"], true);
    assert_eq!(page["status_code"], 200);
    // The script itself came through our fetcher.
    assert!(site.hits().iter().any(|h| h.path == "/js/app.js"));

    let plain = run(&scratch, std::slice::from_ref(&app), 1, "never").await?;
    assert_eq!(plain.urls(), vec![app.clone()], "{}", plain.stderr);
    let page = result(&plain, &app)?;
    assert!(!body(page).contains("Built by script"));
    assert!(page.get("rendered").is_none(), "{page}");
    Ok(())
}

#[tokio::test]
async fn auto_renders_the_script_built_page_and_not_the_plain_one() -> Result<()> {
    let site = site().await?;
    let redis = RedisServer::start().await?;
    let mut cluster = Cluster::new(&redis, "")?;
    let port = crate::harness::free_port()?.to_string();
    cluster.start_worker_with(&[("SPINNERET_STATS__METRICS_PORT", &port)])?;
    let app = site.scripted_url(HOST, "app.html");
    let plain = site.scripted_url(HOST, "plain.html");
    for (url, id) in [(&app, "app"), (&plain, "plain")] {
        let request = json!({"url": url, "appid": "render", "crawlid": id, "render": "auto"});
        cluster.submit(&["--request", &request.to_string()]).await?;
    }
    let want = std::collections::BTreeSet::from([app.clone(), plain.clone()]);
    let results = cluster.until_all_of(&want, Duration::from_secs(60)).await?;
    let of = |url: &str| {
        results
            .iter()
            .find(|r| r["url"] == url)
            .cloned()
            .unwrap_or_default()
    };
    let (app_result, plain_result) = (of(&app), of(&plain));
    assert_eq!(app_result["rendered"], true, "{app_result}");
    assert!(body(&app_result).contains("Built by script"));
    assert!(plain_result.get("rendered").is_none(), "{plain_result}");
    // Counted in /metrics, with the render's latency.
    let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await?
        .text()
        .await?;
    for line in [
        "spinneret_render_auto_total{decision=\"rendered\"} 1",
        "spinneret_render_auto_total{decision=\"plain\"} 1",
        "spinneret_renders_total{result=\"ok\"} 1",
        "spinneret_render_seconds_count 1",
        "spinneret_browser_restarts_total 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
    Ok(())
}

/// A listener on 127.0.0.1 that counts the connections it receives.
async fn secret_server() -> Result<(u16, std::sync::Arc<std::sync::atomic::AtomicUsize>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        while let Ok((_stream, _)) = listener.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    Ok((port, hits))
}

#[tokio::test]
async fn a_rendered_page_cannot_reach_a_private_address() -> Result<()> {
    let site = site().await?;
    let (port, secret_hits) = secret_server().await?;
    // Private addresses refused, except the site's own host.
    let config = "[crawl]\nallow_private = false\nallow_networks = [\"127.0.0.2\"]\n";
    let scratch = Scratch::new(&[("link", "link")], config)?;
    let secret = format!("{}?port={port}", site.scripted_url(HOST, "secret.html"));
    let escape = format!(
        "{}?to=http://127.0.0.1:{port}/escaped",
        site.scripted_url(HOST, "escape.html")
    );
    let run = run(&scratch, &[secret.clone(), escape.clone()], 0, "always").await?;
    let page = result(&run, &secret)?;
    assert_eq!(page["rendered"], true, "{page}");
    assert!(body(page).contains("the secret was refused"), "{page}");
    // The top frame's navigation was refused and the page stayed.
    let page = result(&run, &escape)?;
    assert_eq!(page["rendered"], true, "{page}");
    assert!(body(page).contains("about to leave"), "{page}");
    assert_eq!(secret_hits.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert!(run.stderr.contains("refused"), "{}", run.stderr);
    Ok(())
}

#[tokio::test]
async fn a_page_that_never_loads_times_out_and_the_crawl_goes_on() -> Result<()> {
    let site = site().await?;
    let scratch = Scratch::new(&[("link", "link")], "[render]\ntimeout = 3\nidle = 0.3\n")?;
    let hang = site.scripted_url(HOST, "hang.html");
    let app = site.scripted_url(HOST, "app.html");
    let run = run(&scratch, &[hang.clone(), app.clone()], 0, "always").await?;
    let page = result(&run, &hang)?;
    let error = page["error"].as_str().unwrap_or_default();
    assert!(error.contains("timed out"), "{page}");
    assert_eq!(result(&run, &app)?["rendered"], true);
    Ok(())
}

#[tokio::test]
async fn a_page_gets_at_most_max_requests_sub_requests() -> Result<()> {
    let site = site().await?;
    let scratch = Scratch::new(&[("link", "link")], "[render]\nmax_requests = 5\n")?;
    let many = site.scripted_url(HOST, "many.html");
    let run = run(&scratch, std::slice::from_ref(&many), 0, "always").await?;
    let page = result(&run, &many)?;
    assert_eq!(page["rendered"], true, "{page}");
    assert!(body(page).contains("asked for 50"));
    // The page asked for 50; the site saw 5.
    let asked = site
        .hits()
        .iter()
        .filter(|h| h.path == "/js/a.html")
        .count();
    assert_eq!(asked, 5);
    Ok(())
}

#[tokio::test]
async fn a_browser_past_its_memory_bound_is_restarted() -> Result<()> {
    let site = site().await?;
    // Any browser holds more than 128 MiB: each render retires its browser.
    let scratch = Scratch::new(&[("link", "link")], "[render]\nmax_memory_mb = 128\n")?;
    let seeds = [
        site.scripted_url(HOST, "app.html"),
        site.scripted_url(HOST, "plain.html"),
    ];
    let run = scratch
        .run(&[
            "--spider",
            "link",
            "--render",
            "always",
            "--concurrency",
            "1",
            "--seed",
            &seeds[0],
            "--seed",
            &seeds[1],
        ])
        .await?
        .ok()?;
    for url in &seeds {
        assert_eq!(result(&run, url)?["rendered"], true, "{}", run.stderr);
    }
    assert!(
        run.stderr.contains("passed render.max_memory_mb"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("browser_restarts=2"), "{}", run.stderr);
    Ok(())
}

#[tokio::test]
async fn a_browser_left_by_a_killed_worker_is_stopped_by_the_next_one() -> Result<()> {
    let site = site().await?;
    let scratch = Scratch::new(&[("link", "link")], "")?;
    let (mut child, browsers, _, _) = mid_render(&site, &scratch).await?;
    // Killed outright: nothing of the worker runs to close its browser.
    child.kill().await?;
    let alive = |b: &u32| std::path::Path::new(&format!("/proc/{b}")).exists();
    assert!(
        browsers.iter().any(alive),
        "the browser died with its worker"
    );
    let app = site.scripted_url(HOST, "app.html");
    let next = run(&scratch, std::slice::from_ref(&app), 0, "always").await?;
    assert_eq!(result(&next, &app)?["rendered"], true);
    eventually(
        Duration::from_secs(10),
        "the orphaned browser to stop",
        || (!browsers.iter().any(alive)).then_some(()),
    )
    .await?;
    assert!(
        next.stderr
            .contains("stopped a browser whose worker was killed"),
        "{}",
        next.stderr
    );
    Ok(())
}

/// `spinneret run` rendering the slow page, once its render is in flight
/// (the page's slow script was asked for): the worker, its browser
/// processes, and its results and log files.
async fn mid_render(
    site: &Site,
    scratch: &Scratch,
) -> Result<(
    tokio::process::Child,
    Vec<u32>,
    std::path::PathBuf,
    std::path::PathBuf,
)> {
    let slow = site.scripted_url(HOST, "slow.html");
    let (child, out, err) = scratch.spawn_run("link", &slow, 0, &["--render", "always"])?;
    let pid = child.id().context("worker pid")?;
    eventually(Duration::from_secs(30), "the render to start", || {
        site.hits()
            .iter()
            .any(|h| h.path == "/js/slow.js")
            .then_some(())
    })
    .await?;
    let browsers = children(pid);
    anyhow::ensure!(!browsers.is_empty(), "no browser process under {pid}");
    Ok((child, browsers, out, err))
}

/// The process ids of `pid`'s children.
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

#[tokio::test]
async fn killing_the_browser_mid_render_retries_the_request() -> Result<()> {
    let site = site().await?;
    let scratch = Scratch::new(&[("link", "link")], "[crawl]\nretry_backoff = 0.1\n")?;
    let (mut child, browsers, out, err) = mid_render(&site, &scratch).await?;
    for b in &browsers {
        std::process::Command::new("kill")
            .args(["-9", &b.to_string()])
            .status()?;
    }
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait()).await??;
    let log = std::fs::read_to_string(&err)?;
    assert!(status.success(), "{log}");
    let results = crate::harness::read_results(&out)?;
    assert_eq!(results.len(), 1, "{log}");
    assert_eq!(results[0]["rendered"], true, "{}", results[0]);
    assert!(body(&results[0]).contains("Slow script done"));
    // Fetched again after the crash, rendered by a new browser.
    let fetched = site
        .hits()
        .iter()
        .filter(|h| h.path == "/js/slow.html")
        .count();
    assert_eq!(fetched, 2);
    assert!(log.contains("browser_restarts=1"), "{log}");
    Ok(())
}

#[tokio::test]
async fn the_throttle_holds_for_rendered_pages_across_two_workers() -> Result<()> {
    let site = site().await?;
    let redis = RedisServer::start().await?;
    let config = "[throttle]\nhits = 1\nwindow = 1\nmoderated = false\n";
    let mut cluster = Cluster::new(&redis, config)?;
    cluster.start_worker()?;
    cluster.start_worker()?;
    let app = site.scripted_url(HOST, "app.html");
    let request = json!({"url": app, "appid": "render", "crawlid": "throttle", "maxdepth": 1, "render": "always"});
    cluster.submit(&["--request", &request.to_string()]).await?;
    let want: std::collections::BTreeSet<String> = ["app.html", "a.html", "b.html"]
        .iter()
        .map(|p| site.scripted_url(HOST, p))
        .collect();
    let results = cluster.until_all_of(&want, Duration::from_secs(60)).await?;
    assert!(results.iter().all(|r| r["rendered"] == true), "{results:?}");
    // The documents (not their scripts) are what the throttle paces: one
    // per second for the domain, whichever worker fetched it.
    let docs: Vec<_> = site
        .hits()
        .into_iter()
        .filter(|h| h.host == HOST && h.path.ends_with(".html"))
        .collect();
    assert_eq!(docs.len(), 3, "{docs:?}");
    for w in docs.windows(2) {
        let gap = w[1].at - w[0].at;
        assert!(
            gap >= Duration::from_millis(950),
            "{gap:?} between {} and {}",
            w[0].path,
            w[1].path
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_request_to_render_waits_for_a_worker_that_can() -> Result<()> {
    let site = site().await?;
    let redis = RedisServer::start().await?;
    let mut cluster = Cluster::new(&redis, "")?;
    // This worker does not render: it must leave the request queued.
    cluster.start_worker_with(&[("SPINNERET_RENDER__ENABLED", "false")])?;
    let app = site.scripted_url(HOST, "app.html");
    let plain = site.scripted_url(HOST, "plain.html");
    let render = json!({"url": app, "appid": "render", "crawlid": "waits", "render": "always"});
    let never = json!({"url": plain, "appid": "render", "crawlid": "plain"});
    cluster
        .submit(&[
            "--request",
            &render.to_string(),
            "--request",
            &never.to_string(),
        ])
        .await?;
    // The plain crawl is done by the worker that cannot render; the other
    // stays pending.
    cluster.until_done("render", "plain").await?;
    let info = cluster
        .control(&["info", "--appid", "render", "--crawlid", "waits"])
        .await?;
    assert_eq!(info["total_pending"], 1, "{info}");
    assert!(site.hits().iter().all(|h| h.path != "/js/app.html"));
    cluster.start_worker()?;
    let want = std::collections::BTreeSet::from([app.clone()]);
    let results = cluster.until_all_of(&want, Duration::from_secs(60)).await?;
    let page = results
        .iter()
        .find(|r| r["url"] == app.as_str())
        .context("no result")?;
    assert_eq!(page["rendered"], true, "{page}");
    Ok(())
}
