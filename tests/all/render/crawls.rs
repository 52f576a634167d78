//! Crawls that render: `always`, `never` and `auto` on script-built pages,
//! the throttle across two rendering workers, and a request to render
//! waiting for a worker that can.

use super::{body, result, run, site, HOST};
use crate::cluster::Cluster;
use crate::harness::{RedisServer, Scratch};
use anyhow::{Context, Result};
use serde_json::json;
use std::time::Duration;

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

#[tokio::test]
async fn a_rendered_page_is_archived_with_everything_its_browser_fetched() -> Result<()> {
    let site = site().await?;
    let warc = tempfile::tempdir()?;
    let config = format!("[warc]\ndir = {:?}\n", warc.path().display().to_string());
    let scratch = Scratch::new(&[("link", "link")], &config)?;
    let app = site.scripted_url(HOST, "app.html");
    let rendered = run(&scratch, std::slice::from_ref(&app), 0, "always").await?;
    let page = result(&rendered, &app)?;
    assert_eq!(page["rendered"], true);
    // The result points at the page as sent (the shell), not the DOM.
    assert!(page["warc"]["file"].is_string(), "{page}");
    // warcio reads every record; the script the page ran is a response
    // of its own, so the page replays without a proxy.
    let urls = crate::archive::checked_urls(warc.path())?;
    let script = app.replace("app.html", "app.js");
    assert!(urls.contains(&app), "{urls:?}");
    assert!(urls.contains(&script), "{urls:?}");
    Ok(())
}

/// A rendered page's sub-requests are archived hop by hop (a redirect is
/// a response of its own, then its target), and a POST's request record
/// holds the body it sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rendered_pages_redirects_and_posts_are_archived_whole() -> Result<()> {
    let site = site().await?;
    let warc = tempfile::tempdir()?;
    let config = format!("[warc]\ndir = {:?}\n", warc.path().display().to_string());
    let scratch = Scratch::new(&[("link", "link")], &config)?;
    let page = site.scripted_url(HOST, "archived.html");
    let rendered = run(&scratch, std::slice::from_ref(&page), 0, "always").await?;
    let r = result(&rendered, &page)?;
    assert!(
        r["body"].as_str().unwrap_or_default().contains("fetched "),
        "the script ran to its end: {r}"
    );
    let urls = crate::archive::checked_urls(warc.path())?;
    for name in ["moved.html", "b.html", "a.html"] {
        let url = page.replace("archived.html", name);
        assert!(urls.contains(&url), "{url} not in {urls:?}");
    }
    // The records as text: the 301 is there, and the POST with its body.
    let text = crate::archive::records_text(warc.path())?;
    assert!(text.contains("HTTP/1.1 301 "), "no redirect record");
    let post = text
        .split("WARC/1.1\r\n")
        .find(|r| r.contains("WARC-Type: request") && r.contains("POST /js/a.html"))
        .context("no POST request record")?;
    assert!(post.ends_with("posted=1\r\n\r\n"), "{post}");
    Ok(())
}
