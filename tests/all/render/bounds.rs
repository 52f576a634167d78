//! A rendered page's bounds: private addresses, time, sub-requests, bytes,
//! DOM size, memory, and other hosts, each refused or cut off while the
//! crawl goes on.

use super::{body, result, run, site, HOST};
use crate::harness::{Scratch, Site};
use anyhow::{Context, Result};
use std::time::Duration;

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
