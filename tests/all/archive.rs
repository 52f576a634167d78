//! The WARC archive (`warc.dir`), checked by warcio (the reader the
//! archiving world uses) and byte for byte against what the site sent:
//! encoded, chunked, 304 and redirected pages, and a worker killed
//! mid-write whose files the next start seals.

use crate::harness::{eventually, tools, Scratch};
use anyhow::{ensure, Context, Result};
use serde_json::Value;
use spinneret_testsite::{archived, Site, SiteSpec};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `warcio <args>` from the tools the setup installs; its stdout.
pub(crate) fn warcio(args: &[&str]) -> Result<String> {
    let out = std::process::Command::new(tools().join("py/bin/warcio"))
        .args(args)
        .output()
        .context("running warcio (scripts/setup --test installs it)")?;
    ensure!(
        out.status.success(),
        "warcio {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Every file under `dir` whose name ends with `suffix`.
pub(crate) fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else if p.to_string_lossy().ends_with(suffix) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// `warcio check` passes on every file; the URLs `warcio index` lists.
pub(crate) fn checked_urls(dir: &Path) -> Result<BTreeSet<String>> {
    let warcs = files(dir, ".warc.gz");
    ensure!(!warcs.is_empty(), "no WARC files in {}", dir.display());
    let mut urls = BTreeSet::new();
    for w in &warcs {
        let w = w.to_string_lossy();
        warcio(&["check", "-v", &w])?;
        for line in warcio(&["index", "-f", "warc-type,warc-target-uri", &w])?.lines() {
            let v: Value = serde_json::from_str(line)?;
            if matches!(v["warc-type"].as_str(), Some("response" | "revisit")) {
                urls.insert(
                    v["warc-target-uri"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                );
            }
        }
    }
    Ok(urls)
}

/// Every record of the WARC files under `dir`, decompressed, as text.
pub(crate) fn records_text(dir: &Path) -> Result<String> {
    let mut text = String::new();
    for w in files(dir, ".warc.gz") {
        let mut gz = flate2::read::MultiGzDecoder::new(std::fs::File::open(&w)?);
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut gz, &mut bytes)?;
        text.push_str(&String::from_utf8_lossy(&bytes));
    }
    Ok(text)
}

/// The HTTP payload of the record a result's `warc` names.
fn payload(dir: &Path, r: &Value) -> Result<Vec<u8>> {
    let w = &r["warc"];
    let file = dir.join(w["file"].as_str().context("warc.file")?);
    let record = spinneret::archive::read_member(
        &file,
        w["offset"].as_u64().context("offset")?,
        w["length"].as_u64().context("length")?,
    )?;
    let find = |from: usize| {
        record[from..]
            .windows(4)
            .position(|x| x == b"\r\n\r\n")
            .map(|i| from + i + 4)
    };
    let http = find(0).context("WARC head")?;
    let body = find(http).context("HTTP head")?;
    ensure!(record.ends_with(b"\r\n\r\n"), "record not closed");
    Ok(record[body..record.len() - 4].to_vec())
}

#[tokio::test]
async fn every_fetch_is_archived_as_sent_and_warcio_reads_it() -> Result<()> {
    let site = Site::start(SiteSpec::default()).await?;
    let warc = tempfile::tempdir()?;
    let dir = warc.path();
    let config = format!("[warc]\ndir = {:?}\n", dir.display().to_string());
    let scratch = Scratch::new(&[("link", "link")], &config)?;
    let seed = site.archive_url(archived::INDEX);
    let run = scratch
        .run(&["--spider", "link", "--seed", &seed, "--maxdepth", "1"])
        .await?
        .ok()?;
    // Every page's result says where its record is, and the record's
    // payload is what the site sent, byte for byte (still encoded).
    let mut seen = BTreeSet::new();
    for r in &run.results {
        let url = r["response_url"].as_str().unwrap_or_default();
        let path = url::Url::parse(url)?.path().to_string();
        let sent = archived::sent(&path).with_context(|| format!("not an archive page: {url}"))?;
        if r["status_code"] == 200 {
            assert_eq!(payload(dir, r)?, sent.to_vec(), "{url}");
        }
        seen.insert(path);
    }
    for p in archived::PAGES.iter().filter(|p| !p.contains("/hop/")) {
        assert!(seen.contains(*p), "no result for {p}: {seen:?}");
    }
    // warcio checks every digest and lists every URL fetched, the
    // redirect chain's hops and the 304 among them.
    let urls = checked_urls(dir)?;
    for p in archived::PAGES
        .iter()
        .chain(&archived::CHAIN)
        .chain([&archived::INDEX])
    {
        let url = site.archive_url(p);
        assert!(urls.contains(&url), "{url} not in the archive: {urls:?}");
    }
    // A CDXJ beside each file, a line per response.
    let cdxj: String = files(dir, ".cdxj")
        .iter()
        .map(std::fs::read_to_string)
        .collect::<Result<_, _>>()?;
    assert_eq!(cdxj.lines().count(), urls.len(), "{cdxj}");
    assert!(files(dir, ".open").is_empty(), "a file left open at exit");
    Ok(())
}

#[tokio::test]
async fn a_worker_killed_mid_write_leaves_files_the_next_start_seals() -> Result<()> {
    let site = Site::start(SiteSpec {
        pages: 2000,
        hosts: 2,
        seed: 11,
    })
    .await?;
    let warc = tempfile::tempdir()?;
    let dir = warc.path();
    let config = format!(
        "[warc]\ndir = {:?}\nsplit_by = \"none\"\n",
        dir.display().to_string()
    );
    let scratch = Scratch::new(&[("link", "link")], &config)?;
    let (mut child, out, _err) = scratch.spawn_run("link", &site.seed_url(), 20, &[])?;
    eventually(Duration::from_secs(60), "30 results", || {
        crate::harness::read_results(&out)
            .ok()
            .filter(|r| r.len() >= 30)
            .map(|_| ())
    })
    .await?;
    child.start_kill()?;
    child.wait().await?;
    let delivered = crate::harness::read_results(&out)?;
    assert!(!files(dir, ".warc.gz.open").is_empty(), "nothing left open");
    // The next start seals what was left before it crawls.
    let again = Scratch::new(&[("link", "link")], &config)?;
    again
        .run(&[
            "--spider",
            "link",
            "--seed",
            &site.url(1),
            "--maxdepth",
            "0",
        ])
        .await?
        .ok()?;
    assert!(files(dir, ".open").is_empty(), "still open after a start");
    let urls = checked_urls(dir)?;
    // Every result delivered before the kill has its record: the lease
    // was acked only after its records were synced.
    for r in &delivered {
        let url = r["response_url"].as_str().unwrap_or_default();
        assert!(urls.contains(url), "{url} delivered but not archived");
    }
    let indexed: String = files(dir, ".cdxj")
        .iter()
        .map(std::fs::read_to_string)
        .collect::<Result<_, _>>()?;
    for r in &delivered {
        let url = r["response_url"].as_str().unwrap_or_default();
        let line = format!("\"url\":{}", serde_json::to_string(url)?);
        assert!(indexed.contains(&line), "{url} not indexed");
    }
    Ok(())
}

#[tokio::test]
async fn a_finished_crawl_is_packaged_as_a_wacz_that_validates_and_uploaded() -> Result<()> {
    let site = Site::start(SiteSpec::default()).await?;
    let s3 = crate::s3::S3Server::start("archive").await?;
    let warc = tempfile::tempdir()?;
    let config = format!(
        "[warc]\ndir = {:?}\nwacz = true\n{}",
        warc.path().display().to_string(),
        s3.config("spinneret")
    );
    let scratch = Scratch::new(&[("link", "link")], &config)?;
    let seed = site.archive_url(archived::INDEX);
    let mut cmd = scratch.command("run");
    cmd.args(["--spider", "link", "--seed", &seed, "--maxdepth", "1"])
        .args(["--output", &scratch.path("out.jsonl").to_string_lossy()])
        .envs(crate::s3::S3Server::env());
    let out = cmd.output().await?;
    let log = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.success(), "{log}");
    let packages = files(&warc.path().join("wacz"), ".wacz");
    ensure!(packages.len() == 1, "{packages:?}\n{log}");
    let check = std::process::Command::new(tools().join("py/bin/wacz"))
        .args(["validate", "-f", &packages[0].to_string_lossy()])
        .output()?;
    let said = String::from_utf8_lossy(&check.stdout);
    ensure!(
        check.status.success() && said.contains("is valid"),
        "{said}"
    );
    // Its index lists every page of the crawl; its pages list the HTML.
    let zip = std::fs::read(&packages[0])?;
    let text = String::from_utf8_lossy(&zip);
    for p in archived::PAGES.iter().filter(|p| !p.contains("/hop/")) {
        ensure!(
            text.contains(&format!("\"url\":\"{}\"", site.archive_url(p))),
            "{p} not in the WACZ"
        );
    }
    ensure!(text.contains("json-pages-1.0"));
    // The package and the sealed files went to the object store.
    let keys = s3.keys("spinneret/").await?;
    let name = packages[0]
        .file_name()
        .unwrap_or_default()
        .to_string_lossy();
    ensure!(keys.contains(&format!("spinneret/wacz/{name}")), "{keys:?}");
    ensure!(keys.iter().any(|k| k.ends_with(".warc.gz")), "{keys:?}");
    ensure!(keys.iter().any(|k| k.ends_with(".cdxj")), "{keys:?}");
    Ok(())
}

/// Two workers on one Redis, each archiving to a directory of its own
/// and uploading what it seals, with `warc.wacz` and a real S3 server.
struct ArchivingCluster {
    redis: crate::harness::RedisServer,
    site: Site,
    s3: crate::s3::S3Server,
    cluster: crate::cluster::Cluster,
    dirs: [tempfile::TempDir; 2],
}

impl ArchivingCluster {
    async fn start(bucket: &str) -> Result<ArchivingCluster> {
        let redis = crate::harness::RedisServer::start().await?;
        let site = Site::start(SiteSpec {
            pages: 60,
            hosts: 2,
            seed: 12,
        })
        .await?;
        let s3 = crate::s3::S3Server::start(bucket).await?;
        let mut cluster = crate::cluster::Cluster::new(&redis, &s3.config("spinneret"))?;
        let dirs = [tempfile::tempdir()?, tempfile::tempdir()?];
        let [aws_id, aws_key] = crate::s3::S3Server::env();
        for d in &dirs {
            let d = d.path().to_string_lossy();
            let warc = [
                ("SPINNERET_WARC__DIR", &*d),
                ("SPINNERET_WARC__WACZ", "true"),
            ];
            cluster.start_worker_with(&[warc[0], warc[1], aws_id, aws_key])?;
        }
        Ok(ArchivingCluster {
            redis,
            site,
            s3,
            cluster,
            dirs,
        })
    }

    /// The packages in the store once `crawlid`'s is (at most 60 s).
    async fn packaged(&self, crawlid: &str) -> Result<Vec<String>> {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let keys = self.s3.keys("spinneret/wacz/").await?;
            if keys.contains(&format!("spinneret/wacz/ops-{crawlid}.wacz")) {
                return Ok(keys);
            }
            ensure!(
                std::time::Instant::now() < deadline,
                "no WACZ of {crawlid} in the store after 60 s ({keys:?}):\n{}",
                self.cluster.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Crawl the site as `crawlid` until the crawl is done; its results.
    async fn crawl(&self, crawlid: &str) -> Result<Vec<Value>> {
        let request = crate::cluster::request(&self.site, crawlid, 3, serde_json::json!({}));
        self.cluster.submit(&["--request", &request]).await?;
        self.cluster.until_done("ops", crawlid).await?;
        let results = self.cluster.results();
        ensure!(results.len() > 10, "{} results", results.len());
        Ok(results)
    }
}

/// `wacz validate` passes on the package, and its index lists every page
/// of `results`.
fn check_package(wacz: &Path, results: &[Value]) -> Result<()> {
    let check = std::process::Command::new(tools().join("py/bin/wacz"))
        .args(["validate", "-f", &wacz.to_string_lossy()])
        .output()?;
    let said = String::from_utf8_lossy(&check.stdout);
    ensure!(
        check.status.success() && said.contains("is valid"),
        "{said}"
    );
    let text = String::from_utf8_lossy(&std::fs::read(wacz)?).into_owned();
    for r in results {
        let url = r["url"].as_str().context("url")?;
        ensure!(
            text.contains(&format!("\"url\":{}", serde_json::to_string(url)?)),
            "{url} not in the WACZ"
        );
    }
    Ok(())
}

/// A crawl two workers ran is packaged by the cluster itself once it has
/// ended: the workers seal the files holding it at once (not at
/// `warc.max_age`, 15 minutes), and one of them packages the records of
/// both from the object store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crawl_run_by_a_cluster_is_packaged_when_it_ends() -> Result<()> {
    let c = ArchivingCluster::start("ended").await?;
    let results = c.crawl("whole").await?;
    let keys = c.packaged("whole").await?;
    ensure!(keys == ["spinneret/wacz/ops-whole.wacz"], "{keys:?}");
    // One of the workers packaged it, once.
    let logs = c.cluster.logs();
    ensure!(
        logs.matches("crawl packaged as WACZ").count() == 1,
        "{logs}"
    );
    let wacz = c.dirs[0].path().join("ops-whole.wacz");
    std::fs::write(&wacz, c.s3.get(&format!("s3://ended/{}", keys[0])).await?)?;
    check_package(&wacz, &results)?;
    // Nothing was left staged.
    for d in &c.dirs {
        let staged: Vec<_> = std::fs::read_dir(d.path())?
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".gathered"))
            .collect();
        ensure!(staged.is_empty(), "{staged:?}");
    }
    Ok(())
}

/// One process at a time reads the ledger, and its turn passes on when it
/// stops: a crawl run afterwards is packaged by the worker left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_packagers_turn_passes_on_when_its_holder_stops() -> Result<()> {
    let mut c = ArchivingCluster::start("turn").await?;
    c.crawl("first").await?;
    c.packaged("first").await?;
    let holder = || -> Result<u32> {
        let mut con = c.redis.connection()?;
        let keys: Vec<String> = redis::cmd("KEYS").arg("*warc:packager").query(&mut con)?;
        ensure!(keys.len() == 1, "{keys:?}");
        let turn: String = redis::cmd("GET").arg(&keys[0]).query(&mut con)?;
        Ok(turn.split('-').next().unwrap_or_default().parse()?)
    };
    let first = holder()?;
    let i = (0..2)
        .find(|&i| c.cluster.worker_pid(i) == Some(first))
        .context("no worker holds the packager's turn")?;
    c.cluster.stop_worker(i).await?;
    let results: Vec<Value> = c
        .crawl("second")
        .await?
        .into_iter()
        .filter(|r| r["crawlid"] == "second")
        .collect();
    let keys = c.packaged("second").await?;
    ensure!(keys.len() == 2, "{keys:?}");
    let now = holder()?;
    ensure!(
        now != first && c.cluster.worker_pid(1 - i) == Some(now),
        "the turn is {now}'s, not the remaining worker's"
    );
    let wacz = c.dirs[0].path().join("ops-second.wacz");
    std::fs::write(
        &wacz,
        c.s3.get("s3://turn/spinneret/wacz/ops-second.wacz").await?,
    )?;
    check_package(&wacz, &results)
}

/// `wacz --from-store` packages a cluster's crawl by hand, on a machine
/// that ran none of it, from the files every worker uploaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crawl_run_by_a_cluster_is_packaged_from_the_object_store() -> Result<()> {
    let mut c = ArchivingCluster::start("by-hand").await?;
    let results = c.crawl("whole").await?;
    c.cluster.stop_workers().await?;
    let elsewhere = tempfile::tempdir()?;
    let out = c
        .cluster
        .scratch
        .command("wacz")
        .args(["--appid", "ops", "--crawlid", "whole", "--from-store"])
        .env("SPINNERET_WARC__DIR", elsewhere.path())
        .envs(crate::s3::S3Server::env())
        .output()
        .await?;
    let log = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.success(), "{log}");
    let packages = files(&elsewhere.path().join("wacz"), ".wacz");
    ensure!(packages.len() == 1, "{packages:?}\n{log}");
    check_package(&packages[0], &results)?;
    ensure!(
        files(elsewhere.path(), ".warc.gz").is_empty(),
        "staged files left behind"
    );
    Ok(())
}
