//! The browser's life: restarted past its memory bound, killed mid-render
//! with the request retried, left by a killed worker and stopped by the
//! next, and never confused with a look-alike process.

use super::procs::{homes_of, mid_render};
use super::{body, result, run, site, HOST};
use crate::harness::{eventually, Scratch};
use anyhow::Result;
use std::time::Duration;

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
