//! The peer in `just bench`: spider-rs crawling the bench's test site the
//! way Spinneret does, so the two are compared in one run.
//!
//! `peer-spider --concurrency N --output FILE ROOT...`: one spider-rs
//! `Website` per root (one per host of the site), each with N requests at
//! once, all at the same time. Every page is written to FILE as a JSON
//! line with its URL, status and body, as Spinneret writes its results.
//! Prints one JSON line: pages, CPU ms per page, peak RSS.

use spider::tokio;
use spider::website::Website;
use std::io::Write;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (mut concurrency, mut output, mut roots) = (8, String::from("/dev/null"), Vec::new());
    while let Some(a) = args.next() {
        match a.as_str() {
            "--concurrency" => concurrency = args.next().ok_or("--concurrency N")?.parse()?,
            "--output" => output = args.next().ok_or("--output FILE")?,
            _ => roots.push(a),
        }
    }
    if roots.is_empty() {
        return Err("usage: peer-spider [--concurrency N] [--output FILE] ROOT...".into());
    }
    // One writer, fed by every crawl, like Spinneret's result sink.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(1024);
    let writer = tokio::task::spawn_blocking(move || -> std::io::Result<u64> {
        let mut out = std::io::BufWriter::new(std::fs::File::create(output)?);
        let mut pages = 0;
        while let Some(line) = rx.blocking_recv() {
            out.write_all(&line)?;
            pages += 1;
        }
        out.flush()?;
        Ok(pages)
    });
    let mut crawls = Vec::new();
    for root in roots {
        let tx = tx.clone();
        crawls.push(tokio::spawn(async move {
            let mut website = Website::new(&root);
            website
                .with_concurrency_limit(Some(concurrency))
                .with_respect_robots_txt(true);
            let mut pages = website.subscribe(4096);
            let forward = tokio::spawn(async move {
                use spider::tokio::sync::broadcast::error::RecvError;
                let mut lagged = 0;
                loop {
                    let page = match pages.recv().await {
                        Ok(page) => page,
                        // Pages the writer fell behind on were crawled all
                        // the same; they are counted, not written.
                        Err(RecvError::Lagged(n)) => {
                            lagged += n;
                            continue;
                        }
                        Err(RecvError::Closed) => break,
                    };
                    let line = serde_json::json!({
                        "url": page.get_url(),
                        "status_code": page.status_code.as_u16(),
                        "body": String::from_utf8_lossy(page.get_html_bytes_u8()),
                    });
                    let mut line = serde_json::to_vec(&line).unwrap_or_default();
                    line.push(b'\n');
                    if tx.send(line).await.is_err() {
                        break;
                    }
                }
                lagged
            });
            website.crawl().await;
            website.unsubscribe();
            forward.await.unwrap_or(0)
        }));
    }
    drop(tx);
    let mut lagged = 0;
    for c in crawls {
        lagged += c.await?;
    }
    let pages = writer.await?? + lagged;
    let (cpu_ms, peak_rss_mb) = self_usage();
    println!(
        "{}",
        serde_json::json!({
            "pages": pages,
            "cpu_ms_per_page": cpu_ms / pages.max(1) as f64,
            "peak_rss_mb": peak_rss_mb,
            "not_written": lagged,
        })
    );
    Ok(())
}

/// This process's CPU time (user + system, ms) and peak RSS (MiB), from
/// /proc.
fn self_usage() -> (f64, u64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime and
    // stime are the 12th and 13th, in clock ticks of 10 ms.
    let after = stat.rsplit_once(") ").map(|(_, s)| s).unwrap_or_default();
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let cpu_ms = (ticks(11) + ticks(12)) * 10.0;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let hwm_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0);
    (cpu_ms, hwm_kb / 1024)
}
