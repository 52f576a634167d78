//! The worker's browser as `/proc` shows it: a render caught in flight, the
//! processes under a worker, their uid, command line and nice value, and
//! the browser homes left in the temp directory.

use super::HOST;
use crate::harness::{eventually, Scratch, Site};
use anyhow::{Context, Result};
use std::time::Duration;

/// `spinneret run` rendering the slow page, once its render is in flight
/// (the page's slow script was asked for): the worker, its browser
/// processes, and its results and log files.
pub(super) async fn mid_render(
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
pub(super) fn children(pid: u32) -> Vec<u32> {
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

/// `pid` and every process under it.
pub(super) fn tree(pid: u32) -> Vec<u32> {
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        all.extend(children(all[i]));
        i += 1;
    }
    all
}

/// The uid of `pid` and its command line.
pub(super) fn uid_and_args(pid: u32) -> Option<(u32, String)> {
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

/// The nice value of `pid` (field 19 of `/proc/PID/stat`).
pub(super) fn nice(pid: u32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(16)?
        .parse()
        .ok()
}

pub(super) fn is_root() -> bool {
    uid_and_args(std::process::id()).is_some_and(|(uid, _)| uid == 0)
}

/// Whether a browser home in the temp directory records one of `pids`.
pub(super) fn homes_of(pids: &[u32]) -> bool {
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
