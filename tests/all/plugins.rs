//! The plugin runtime seen from outside: misbehaving guests, wrong worlds,
//! hot swap, and the `plugins` listing.

use crate::harness::{eventually, read_results, Scratch, Site, SiteSpec, COMPILE_WAIT};
use anyhow::Result;
use std::collections::BTreeSet;
use std::time::Duration;

/// A misbehaving fixture (misbehaves on pages whose URL ends in `3.html`,
/// acts as `link` elsewhere) must cost only those pages: the crawl
/// completes, every other page is there, the bad ones carry an error.
async fn crawl_survives(fixture: &str, config: &str, error_says: &str) -> Result<()> {
    let site = Site::start(SiteSpec::default()).await?;
    let s = Scratch::new(&[("fixture", fixture)], config)?;
    let run = s.crawl("fixture", &site, 1, &[]).await?;
    let expected = site.expected(0, Some(1));
    let got: BTreeSet<String> = run.urls().into_iter().collect();
    assert_eq!(got, expected, "every page of the crawl must have a result");
    assert_eq!(run.results.len(), expected.len(), "one result per page");
    let bad: Vec<_> = run
        .results
        .iter()
        .filter(|r| r["url"].as_str().is_some_and(|u| u.ends_with("3.html")))
        .collect();
    assert!(
        !bad.is_empty(),
        "the site must include pages the fixture misbehaves on"
    );
    for r in &bad {
        let err = r["error"].as_str().unwrap_or_default();
        assert!(
            err.contains(error_says),
            "expected an error saying {error_says:?}, got {r}"
        );
        assert_eq!(r["status_code"], 200, "the page itself was fetched");
    }
    let good = run
        .results
        .iter()
        .filter(|r| !r["url"].as_str().is_some_and(|u| u.ends_with("3.html")));
    for r in good {
        assert!(r.get("error").is_none(), "{r}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn trapping_guest_costs_only_its_pages() -> Result<()> {
    crawl_survives("trap", "", "trapped").await
}

#[tokio::test(flavor = "multi_thread")]
async fn looping_guest_is_stopped_at_its_time_limit() -> Result<()> {
    crawl_survives(
        "spin",
        "[plugins.limits]\ncall_timeout_ms = 200\n",
        "time limit",
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_sleeping_in_wasi_is_stopped_at_its_time_limit() -> Result<()> {
    // Epochs interrupt wasm code only; the sleep itself must be cut.
    let started = std::time::Instant::now();
    crawl_survives(
        "sleepy",
        "[plugins.limits]\ncall_timeout_ms = 2000\n",
        "time limit",
    )
    .await?;
    // The fixture asks for 60 s on each bad page; a crawl that waited for
    // even one of them would be far past this.
    assert!(
        started.elapsed() < Duration::from_secs(45),
        "the sleeps were not cut: {:?}",
        started.elapsed()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_yielding_a_million_items_fails_that_page_only() -> Result<()> {
    // Memory big enough for the guest to build its million items, so the
    // output cap is what stops it: the copy out of the guest stops at
    // twice max_output_bytes, before the host holds the whole list.
    crawl_survives(
        "flood",
        "[plugins.limits]\nmemory_mb = 1024\nrecycle_memory_mb = 1024\n",
        "too many outputs: more than 67108864 bytes copied",
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_sending_records_past_its_cap_fails_that_page_only() -> Result<()> {
    // The host refuses the 101st record; the guest carries on regardless,
    // and the call fails with none of its records sent.
    crawl_survives(
        "record-flood",
        "[plugins.limits]\nmax_items = 100\n",
        "the limit is 100 (max_items)",
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_logging_past_its_cap_fails_that_page_only() -> Result<()> {
    crawl_survives(
        "chatty",
        "[plugins.limits]\nmax_log_lines = 50\n",
        "more than 50 log lines",
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_hog_is_stopped_at_its_memory_limit() -> Result<()> {
    crawl_survives(
        "hog",
        "[plugins.limits]\nmemory_mb = 48\nrecycle_memory_mb = 40\n",
        "memory limit",
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_can_neither_read_files_nor_open_sockets() -> Result<()> {
    // WASI is linked whole (runtimes like CPython import it) but grants
    // nothing: the fixture tries each door and reports what happened.
    let site = Site::start(SiteSpec::default()).await?;
    let s = Scratch::new(&[("snoop", "snoop")], "")?;
    let run = s
        .run(&["--spider", "snoop", "--seed", &site.seed_url()])
        .await?
        .ok()?;
    let [r] = run.results.as_slice() else {
        anyhow::bail!("expected one result, got {}", run.results.len());
    };
    for door in ["file", "dir", "env", "tcp", "udp"] {
        let said = r[door].as_str().unwrap_or_default();
        assert!(
            said.starts_with("refused"),
            "the guest's {door} attempt was not refused: {said:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn wrong_world_is_rejected_at_load_with_a_reason() -> Result<()> {
    let s = Scratch::new(&[("cli-tool", "wrong-world")], "")?;
    let run = s
        .run(&["--spider", "cli-tool", "--seed", "http://a.test/"])
        .await?;
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("another world"), "{}", run.stderr);
    assert!(
        run.stderr.contains("wasi:cli/run"),
        "names what it targets: {}",
        run.stderr
    );
    assert!(
        run.stderr.contains("spinneret:plugin"),
        "names what we support: {}",
        run.stderr
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn unsupported_wit_version_is_rejected_at_load() -> Result<()> {
    let s = Scratch::new(&[("future", "link-v2")], "")?;
    let run = s
        .run(&["--spider", "future", "--seed", "http://a.test/"])
        .await?;
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr.contains("spinneret:plugin@0.2.0"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("supports spinneret:plugin@0.1.0"),
        "{}",
        run.stderr
    );
    Ok(())
}

/// A spider built against `spinneret:plugin@0.1.0` and committed as it
/// was (`tests/fixtures/frozen`) loads and crawls on this host: what
/// plugin authors built keeps working as the WIT grows.
#[tokio::test(flavor = "multi_thread")]
async fn a_guest_built_against_0_1_0_still_crawls() -> Result<()> {
    let site = Site::start(SiteSpec {
        pages: 12,
        hosts: 1,
        seed: 9,
    })
    .await?;
    let s = Scratch::new(&[("frozen", "link-0.1.0")], "")?;
    let out = s.command("plugins").arg("--json").output().await?;
    let listed: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert!(
        listed
            .iter()
            .any(|r| r["name"] == "frozen" && r["wit"] == "0.1.0" && r["kind"] == "spider"),
        "{listed:?}"
    );
    let run = s.crawl("frozen", &site, 100, &[]).await?;
    let mut got = run.urls();
    got.sort();
    let want: Vec<String> = site.expected(0, None).into_iter().collect();
    assert_eq!(got, want, "{}", run.stderr);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn plugins_command_lists_what_is_loaded() -> Result<()> {
    let s = Scratch::new(
        &[
            ("link", "link"),
            ("stamp-headers", "stamp-headers"),
            ("broken", "wrong-world"),
        ],
        "",
    )?;
    let out = s.command("plugins").arg("--json").output().await?;
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let link = rows
        .iter()
        .find(|r| r["name"] == "link")
        .expect("link listed");
    assert_eq!(link["kind"], "spider");
    assert_eq!(link["wit"], "0.1.1");
    assert_eq!(link["hash"].as_str().map(str::len), Some(64));
    let mw = rows
        .iter()
        .find(|r| r["name"] == "stamp-headers")
        .expect("middleware listed");
    assert_eq!(mw["kind"], "downloader-middleware");
    let broken = rows
        .iter()
        .find(|r| r["name"] == "broken")
        .expect("broken listed");
    assert!(broken["error"]
        .as_str()
        .is_some_and(|e| e.contains("another world")));
    assert_eq!(
        out.status.code(),
        Some(1),
        "a rejected plugin makes the listing fail"
    );
    Ok(())
}

/// A restart maps known components from the compile cache instead of
/// compiling them: the first listing compiles the Python and JavaScript
/// spiders into an empty cache, the second (a new process) reads them back.
/// (How long each takes is `just bench`'s business, not a test's.)
#[tokio::test(flavor = "multi_thread")]
async fn a_restart_loads_known_components_from_the_cache() -> Result<()> {
    let cache = tempfile::tempdir()?;
    let s = Scratch::new(
        &[("py-link", "py-link"), ("js-link", "js-link")],
        &format!("[plugins]\ncache_dir = {:?}\n", cache.path()),
    )?;
    let from = |out: std::process::Output| -> Result<Vec<(String, String)>> {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut rows = Vec::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let r: serde_json::Value = serde_json::from_str(line)?;
            rows.push((r["name"].to_string(), r["from"].to_string()));
        }
        Ok(rows)
    };
    let cold = from(s.command("plugins").arg("--json").output().await?)?;
    assert_eq!(cold.len(), 2);
    assert!(cold.iter().all(|(_, f)| f == "\"compiled\""), "{cold:?}");
    let warm = from(s.command("plugins").arg("--json").output().await?)?;
    assert!(warm.iter().all(|(_, f)| f == "\"cache\""), "{warm:?}");
    Ok(())
}

/// Mid-crawl: a broken update is refused while the old version serves; a
/// good update is swapped in; no request is lost; later pages are parsed by
/// the new version.
#[tokio::test(flavor = "multi_thread")]
async fn hot_swap_mid_crawl_loses_nothing() -> Result<()> {
    swap_mid_crawl("link", "tagged", 10).await
}

/// The same across languages: a Python spider replaced by a JavaScript one
/// of the same name. The JS component is 12 MB; it compiles in the
/// background (or comes from the cache) while Python keeps serving.
#[tokio::test(flavor = "multi_thread")]
async fn a_python_spider_is_swapped_for_a_javascript_one_mid_crawl() -> Result<()> {
    swap_mid_crawl("py-link", "js-tagged", 3).await
}

/// Crawl the site with `from` as spider `hot`, throttled to about
/// `hits_per_host` pages per second per host, then write a broken file and
/// then `to` (which tags its items `"spider_version": 2`) over it.
async fn swap_mid_crawl(from: &str, to: &str, hits_per_host: u32) -> Result<()> {
    let site = Site::start(SiteSpec {
        pages: 400,
        hosts: 4,
        seed: 3,
    })
    .await?;
    let expected = site.expected(0, Some(2));
    // Slow enough to swap in the middle, fast enough to finish.
    let s = Scratch::new(
        &[("hot", from)],
        &format!("[throttle]\nhits = {hits_per_host}\nwindow = 1\n"),
    )?;
    let (mut child, out, err) = s.spawn_run("hot", &site.seed_url(), 2, &["--concurrency", "4"])?;
    let stderr = || std::fs::read_to_string(&err).unwrap_or_default();
    eventually(COMPILE_WAIT, "first results", || {
        (read_results(&out).ok()?.len() >= 20).then_some(())
    })
    .await?;

    // A half-written file: rejected, old version keeps serving.
    let target = s.path("plugins/hot.wasm");
    let good = std::fs::read(crate::harness::wasm(to))?;
    std::fs::write(&target, &good[..good.len() / 2])?;
    eventually(Duration::from_secs(20), "the rejection", || {
        stderr().contains("rejected plugin update").then_some(())
    })
    .await?;
    let before_swap = read_results(&out)?.len();
    assert!(
        before_swap < expected.len(),
        "the crawl ended before the swap; slow the throttle"
    );

    // The real update, written atomically.
    let tmp = s.path("plugins/hot.wasm.tmp");
    std::fs::write(&tmp, &good)?;
    std::fs::rename(&tmp, &target)?;
    eventually(COMPILE_WAIT, "the swap", || {
        stderr().contains("plugin swapped in").then_some(())
    })
    .await?;
    let at_swap = read_results(&out)?.len();

    let status = tokio::time::timeout(COMPILE_WAIT, child.wait()).await??;
    assert!(status.success(), "{}", stderr());
    let results = read_results(&out)?;
    let urls: Vec<String> = results
        .iter()
        .map(|r| r["url"].as_str().unwrap_or_default().to_string())
        .collect();
    let got: BTreeSet<String> = urls.iter().cloned().collect();
    assert_eq!(urls.len(), got.len(), "no duplicates");
    assert_eq!(got, expected, "no request lost across the swaps");
    // Old results before the swap; after it, beyond the calls that were in
    // flight (at most the concurrency), every page is parsed by v2.
    assert!(results[..before_swap]
        .iter()
        .all(|r| r.get("spider_version").is_none()));
    let later = &results[(at_swap + 4).min(results.len())..];
    assert!(!later.is_empty(), "the swap came too late to observe");
    assert!(
        later.iter().all(|r| r["spider_version"] == 2),
        "a page after the swap was parsed by the old version"
    );
    Ok(())
}

/// The `crawl done` summary line of a run with `--log-format json`.
fn summary(run: &crate::harness::Run) -> serde_json::Value {
    run.stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message"] == "crawl done")
        .expect("a summary line")
}

/// A crawl with one worker slot (so one instance serves in turn),
/// with extra settings.
async fn one_slot_crawl(
    site: &Site,
    spider: &str,
    config: &str,
    depth: u32,
) -> Result<crate::harness::Run> {
    let s = Scratch::new(&[(spider, spider)], config)?;
    s.crawl(
        spider,
        site,
        depth,
        &["--log-format", "json", "--concurrency", "1"],
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn instances_are_recycled_after_n_calls() -> Result<()> {
    let site = Site::start(SiteSpec::default()).await?;
    let run = one_slot_crawl(&site, "link", "[plugins.limits]\nrecycle_calls = 3\n", 1).await?;
    let done = summary(&run);
    let calls = done["plugin_calls"].as_u64().unwrap_or(0);
    let instances = done["plugin_instances"].as_u64().unwrap_or(0);
    assert_eq!(calls as usize, run.results.len(), "one parse per page");
    // One worker: without recycling there would be a single instance.
    assert!(
        calls > 6 && instances >= calls / 3,
        "{instances} instances for {calls} calls: no recycling after 3 calls"
    );
    Ok(())
}

/// The `leak` fixture keeps 1 MiB per page. With a 24 MiB memory limit and
/// recycling switched off, an instance runs out and pages fail; recycling
/// at 12 MiB contains the leak and every page parses.
#[tokio::test(flavor = "multi_thread")]
async fn a_leaky_guest_is_recycled_by_memory_and_the_crawl_completes() -> Result<()> {
    let site = Site::start(SiteSpec::default()).await?;
    let expected = site.expected(0, Some(2));
    assert!(
        expected.len() > 40,
        "the crawl must outlast one instance's memory"
    );
    let limits = "[plugins.limits]\nmemory_mb = 24\nrecycle_calls = 1000000\n";

    let unchecked = one_slot_crawl(
        &site,
        "leak",
        &format!("{limits}recycle_memory_mb = 24\n"),
        2,
    )
    .await?;
    let failed = unchecked
        .results
        .iter()
        .filter(|r| {
            r["error"]
                .as_str()
                .is_some_and(|e| e.contains("memory limit"))
        })
        .count();
    assert!(
        failed > 0,
        "without recycling the leak should exhaust an instance"
    );

    let run = one_slot_crawl(
        &site,
        "leak",
        &format!("{limits}recycle_memory_mb = 12\n"),
        2,
    )
    .await?;
    let got: BTreeSet<String> = run.urls().into_iter().collect();
    assert_eq!(got, expected, "the crawl completes");
    let errors: Vec<_> = run
        .results
        .iter()
        .filter(|r| r.get("error").is_some())
        .collect();
    assert!(errors.is_empty(), "no page may fail: {errors:?}");
    let done = summary(&run);
    let calls = done["plugin_calls"].as_u64().unwrap_or(0);
    let instances = done["plugin_instances"].as_u64().unwrap_or(0);
    assert!(
        instances >= 2 && instances >= calls / 12,
        "{instances} instances for {calls} calls: the leaky instance was not recycled by memory"
    );
    Ok(())
}
