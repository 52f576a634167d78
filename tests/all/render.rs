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

/// A listener on `ip` that counts the connections it receives.
async fn counting_server(
    ip: &str,
) -> Result<(u16, std::sync::Arc<std::sync::atomic::AtomicUsize>)> {
    let listener = tokio::net::TcpListener::bind((ip, 0)).await?;
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
    let (port, secret_hits) = counting_server("127.0.0.1").await?;
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
    assert!(homes_of(&browsers), "no home records the browser");
    let app = site.scripted_url(HOST, "app.html");
    let next = run(&scratch, std::slice::from_ref(&app), 0, "always").await?;
    assert_eq!(result(&next, &app)?["rendered"], true);
    eventually(
        Duration::from_secs(10),
        "the orphaned browser to stop",
        || (!browsers.iter().any(alive)).then_some(()),
    )
    .await?;
    // Whichever worker started a browser first reaped it (tests run side
    // by side): its home is gone with it.
    eventually(Duration::from_secs(10), "the orphan's home to go", || {
        (!homes_of(&browsers)).then_some(())
    })
    .await?;
    Ok(())
}

/// Whether a browser home in the temp directory records one of `pids`.
fn homes_of(pids: &[u32]) -> bool {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return false;
    };
    entries.flatten().any(|e| {
        e.file_name()
            .to_string_lossy()
            .starts_with("spinneret-browser-")
            && std::fs::read_to_string(e.path().join("pid")).is_ok_and(|p| {
                p.split_whitespace()
                    .next()
                    .and_then(|p| p.parse::<u32>().ok())
                    .is_some_and(|p| pids.contains(&p))
            })
    })
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

// The walls (issue "render walls"): the browser is a tenant we do not
// trust, with no way out but our fetcher.

/// The uid of `pid` and its command line.
fn uid_and_args(pid: u32) -> Option<(u32, String)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let args = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some((uid, String::from_utf8_lossy(&args).replace('\0', " ")))
}

/// `pid` and every process under it.
fn tree(pid: u32) -> Vec<u32> {
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        all.extend(children(all[i]));
        i += 1;
    }
    all
}

#[tokio::test]
async fn the_browser_runs_unprivileged_sandboxed_and_reachable_by_its_worker_alone() -> Result<()> {
    let site = site().await?;
    let scratch = Scratch::new(&[("link", "link")], "")?;
    let (mut child, browsers, _, err) = mid_render(&site, &scratch).await?;
    let ours = std::fs::read_link("/proc/self/ns/net")?;
    for b in &browsers {
        let procs = tree(*b);
        assert!(procs.len() > 2, "the browser has its processes: {procs:?}");
        for p in procs {
            let Some((uid, args)) = uid_and_args(p) else {
                continue;
            };
            assert!(!args.contains("--no-sandbox"), "{p}: {args}");
            assert!(!args.contains("--remote-debugging-port"), "{p}: {args}");
            if is_root() {
                assert_ne!(uid, 0, "{p} runs as root: {args}");
            }
        }
        let (_, args) = uid_and_args(*b).context("the browser's command line")?;
        assert!(args.contains("--remote-debugging-pipe"), "{args}");
        // Its own network namespace, where nothing listens: no process
        // outside it can connect to the browser, and none inside does.
        let theirs = std::fs::read_link(format!("/proc/{b}/ns/net"))?;
        assert_ne!(theirs, ours, "the browser shares the worker's network");
        for table in ["tcp", "tcp6"] {
            let t = std::fs::read_to_string(format!("/proc/{b}/net/{table}")).unwrap_or_default();
            let listening = t
                .lines()
                .skip(1)
                .filter(|l| l.split_whitespace().nth(3) == Some("0A"))
                .count();
            assert_eq!(listening, 0, "the browser listens:\n{t}");
        }
        // Another process, as another user, tries the DevTools pipe.
        if is_root() {
            let tried = std::process::Command::new("setpriv")
                .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
                .args(["sh", "-c"])
                .arg(format!(
                    "printf '{{\"id\":1,\"method\":\"Browser.close\"}}\\0' > /proc/{b}/fd/3"
                ))
                .stderr(std::process::Stdio::null())
                .status()?;
            assert!(
                !tried.success(),
                "another user wrote to the browser's DevTools pipe"
            );
        }
        // The priorities Chromium would set as root, set by the worker:
        // the browser above its renderers.
        if is_root() {
            assert_eq!(nice(*b), Some(-8), "the browser's nice");
            let renderers: Vec<u32> = tree(*b)
                .into_iter()
                .filter(|p| uid_and_args(*p).is_some_and(|(_, a)| a.contains("--type=renderer")))
                .collect();
            assert!(!renderers.is_empty(), "a renderer runs mid-render");
            for r in renderers {
                assert_eq!(nice(r), Some(5), "renderer {r}'s nice");
            }
        }
        // Its environment holds nothing of the worker's.
        let env = std::fs::read(format!("/proc/{b}/environ")).unwrap_or_default();
        let env = String::from_utf8_lossy(&env);
        assert!(!env.contains("XDG_CACHE_HOME"), "{env}");
    }
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait()).await??;
    assert!(status.success(), "{}", std::fs::read_to_string(&err)?);
    Ok(())
}

/// The nice value of `pid` (field 19 of `/proc/PID/stat`).
fn nice(pid: u32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(16)?
        .parse()
        .ok()
}

fn is_root() -> bool {
    uid_and_args(std::process::id()).is_some_and(|(uid, _)| uid == 0)
}

#[tokio::test]
async fn a_page_trying_udp_tcp_files_and_prefetch_reaches_nothing() -> Result<()> {
    let site = site().await?;
    // A refused address with listeners of both kinds on it.
    let udp = tokio::net::UdpSocket::bind("127.0.0.50:0").await?;
    let (tcp_port, tcp_hits) = counting_server("127.0.0.50").await?;
    let config = "[crawl]\nallow_private = false\nallow_networks = [\"127.0.0.2\"]\n";
    let scratch = Scratch::new(&[("link", "link")], config)?;
    let walls = format!(
        "{}?host=127.0.0.50&udp={}&tcp={tcp_port}",
        site.scripted_url(HOST, "walls.html"),
        udp.local_addr()?.port()
    );
    let run = run(&scratch, std::slice::from_ref(&walls), 0, "always").await?;
    let page = result(&run, &walls)?;
    assert_eq!(page["rendered"], true, "{page}");
    assert!(body(page).contains("tried"), "{page}");
    let mut buf = [0u8; 2048];
    assert!(
        udp.try_recv_from(&mut buf).is_err(),
        "a UDP packet reached the refused address"
    );
    assert_eq!(tcp_hits.load(std::sync::atomic::Ordering::SeqCst), 0);
    Ok(())
}

#[tokio::test]
async fn a_dom_over_the_body_cap_is_refused_before_it_leaves_the_page() -> Result<()> {
    let site = site().await?;
    // 20 MB of text: past crawl.max_body_bytes (10 MiB), measured in the page.
    let (error, peak_kb) = big_dom(&site, 20).await?;
    assert!(
        error.contains("larger than crawl.max_body_bytes"),
        "{error}"
    );
    assert!(peak_kb < 150 * 1024, "worker peak RSS {peak_kb} kB");
    // 100 MB: past the page's heap bound too, whichever comes first; it
    // never crosses into the worker either (449 MB of worker RSS before).
    let (error, peak_kb) = big_dom(&site, 100).await?;
    assert!(
        error.contains("larger than crawl.max_body_bytes") || error.contains("crashed"),
        "{error}"
    );
    assert!(peak_kb < 150 * 1024, "worker peak RSS {peak_kb} kB");
    Ok(())
}

/// A rendered page whose script writes `mb` MB of text: the result's error
/// and the worker's peak resident memory (kB), read until it exits.
async fn big_dom(site: &Site, mb: usize) -> Result<(String, u64)> {
    let scratch = Scratch::new(&[("link", "link")], "")?;
    let big = format!("{}?mb={mb}", site.scripted_url(HOST, "bigdom.html"));
    let (mut child, out, err) = scratch.spawn_run("link", &big, 0, &["--render", "always"])?;
    let pid = child.id().context("worker pid")?;
    let mut peak_kb = 0u64;
    let status = loop {
        if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            if let Some(kb) = s
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
            {
                peak_kb = peak_kb.max(kb);
            }
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let log = std::fs::read_to_string(&err)?;
    anyhow::ensure!(status.success(), "{log}");
    let results = crate::harness::read_results(&out)?;
    let error = results
        .first()
        .and_then(|r| r["error"].as_str())
        .with_context(|| format!("no error result: {results:?}\n{log}"))?;
    Ok((error.to_string(), peak_kb))
}

#[tokio::test]
async fn a_page_fetching_a_gigabyte_gets_at_most_render_max_bytes() -> Result<()> {
    let site = site().await?;
    let max = 25 * 1024 * 1024;
    // A generous idle: the page counts its bytes after the last one came.
    let config = format!("[render]\nmax_bytes = {max}\nmax_requests = 200\nidle = 2\n");
    let scratch = Scratch::new(&[("link", "link")], &config)?;
    let page_url = site.scripted_url(HOST, "bigfetch.html");
    let run = run(&scratch, std::slice::from_ref(&page_url), 0, "always").await?;
    let page = result(&run, &page_url)?;
    let text = body(page);
    let got: usize = text
        .split("received ")
        .nth(1)
        .and_then(|t| t.split(' ').next()?.parse().ok())
        .with_context(|| format!("no count in {page}"))?;
    assert!(got >= 10 << 20, "no file got through: {got}");
    assert!(got <= max, "{got} bytes reached the page, bound {max}");
    Ok(())
}

#[tokio::test]
async fn a_page_allocating_without_end_is_stopped_mid_render() -> Result<()> {
    let site = site().await?;
    let scratch = Scratch::new(
        &[("link", "link")],
        "[render]\nmax_heap_mb = 128\ntimeout = 60\n",
    )?;
    let hog = site.scripted_url(HOST, "hog.html");
    let started = std::time::Instant::now();
    let run = run(&scratch, std::slice::from_ref(&hog), 0, "always").await?;
    let page = result(&run, &hog)?;
    let error = page["error"].as_str().unwrap_or_default();
    assert!(error.contains("crashed"), "{page}");
    assert!(
        started.elapsed() < Duration::from_secs(50),
        "stopped by the timeout, not the bound"
    );
    Ok(())
}

#[tokio::test]
async fn a_page_posting_to_another_host_under_a_slow_throttle_reaches_none_of_it() -> Result<()> {
    let site = site().await?;
    // The rule: a rendered page's sub-requests stay on its registered
    // domain (render.third_party = false); host 0 is another domain.
    let config = "[throttle]\nhits = 1\nwindow = 10\nmoderated = false\n";
    let scratch = Scratch::new(&[("link", "link")], config)?;
    let target = site.scripted_url(0, "a.html");
    let posts = format!("{}?to={target}", site.scripted_url(HOST, "posts.html"));
    let run = run(&scratch, std::slice::from_ref(&posts), 0, "always").await?;
    let page = result(&run, &posts)?;
    assert!(body(page).contains("posted 50"), "{page}");
    assert_eq!(site.hits().iter().filter(|h| h.host == 0).count(), 0);
    assert!(
        run.stderr.contains("off its registered domain was refused"),
        "{}",
        run.stderr
    );
    Ok(())
}

#[tokio::test]
async fn a_look_alike_process_is_never_killed_by_the_reaper() -> Result<()> {
    let site = site().await?;
    let scratch = Scratch::new(&[("link", "link")], "")?;
    // A process that only looks like one of our browsers.
    let fake = std::env::temp_dir().join(format!(
        "spinneret-browser-lookalike-{}",
        std::process::id()
    ));
    let mut lookalike = tokio::process::Command::new("python3")
        .args(["-c", "import time; time.sleep(300)"])
        .arg(format!("--user-data-dir={}/profile", fake.display()))
        .kill_on_drop(true)
        .spawn()?;
    let app = site.scripted_url(HOST, "app.html");
    let next = run(&scratch, std::slice::from_ref(&app), 0, "always").await?;
    assert_eq!(result(&next, &app)?["rendered"], true, "{}", next.stderr);
    assert!(lookalike.try_wait()?.is_none(), "the look-alike was killed");
    lookalike.kill().await?;
    Ok(())
}

#[tokio::test]
async fn where_no_sandbox_works_rendering_refuses_unless_opted_out() -> Result<()> {
    let site = site().await?;
    let scratch = Scratch::new(&[("link", "link")], "")?;
    let app = site.scripted_url(HOST, "app.html");
    // A machine with no user namespaces and no setuid sandbox: a user
    // namespace of our own whose nested namespaces are turned off.
    let no_sandbox = |opt_out: bool| {
        let out = scratch.path(&format!("out-{opt_out}.jsonl"));
        let mut cmd = tokio::process::Command::new("unshare");
        cmd.args([
            "--user",
            "--map-root-user",
            "sh",
            "-c",
            r#"echo 0 > /proc/sys/user/max_user_namespaces && exec "$@""#,
            "sh",
        ])
        .arg(crate::harness::binary())
        .args(["run", "--config"])
        .arg(scratch.path("config.toml"))
        .arg("--plugins")
        .arg(scratch.path("plugins"))
        .args([
            "--spider",
            "link",
            "--seed",
            &app,
            "--maxdepth",
            "0",
            "--render",
            "always",
            "--output",
        ])
        .arg(&out)
        .env("XDG_CACHE_HOME", crate::harness::test_cache())
        .env("SPINNERET_RENDER__ALLOW_UNSANDBOXED", opt_out.to_string())
        .kill_on_drop(true);
        (cmd, out)
    };
    let (mut cmd, out) = no_sandbox(false);
    let o = cmd.output().await?;
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{log}");
    assert!(log.contains("rendering refuses to start"), "{log}");
    assert!(log.contains("render.allow_unsandboxed"), "{log}");
    let results = crate::harness::read_results(&out)?;
    assert!(results[0].get("rendered").is_none(), "{}", results[0]);
    let (mut cmd, out) = no_sandbox(true);
    let o = cmd.output().await?;
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{log}");
    assert!(log.contains("WITHOUT Chromium's sandbox"), "{log}");
    let results = crate::harness::read_results(&out)?;
    assert_eq!(results[0]["rendered"], true, "{}", results[0]);
    Ok(())
}
