//! The browser's processes as `/proc` shows them: whether one lives, what
//! it costs, which are its children, and the priorities the worker sets
//! on them.

use std::process::Stdio;
use std::time::Duration;
use tokio::time::Instant;

/// Nice values Chromium gives its processes when it may bring them back
/// (as root, or with `CAP_SYS_NICE` or an `RLIMIT_NICE` of 20): its own
/// process above the rest, so DevTools calls and frame scheduling are not
/// starved by pages; renderers below, so a busy page yields to the browser,
/// the worker and the fetcher. The unprivileged browser may not, and
/// renders at about 0.7x the pages/s without them (docs/rendering.md,
/// "What the walls cost").
const BROWSER_NICE: i32 = -8;
const RENDERER_NICE: i32 = 5;

/// Set those priorities from the worker: the browser's at once, its
/// sandboxed zygotes' (which fork every renderer, each inheriting the
/// zygote's nice) and any renderer forked before them as they appear
/// after start, watched for a few seconds.
/// The browser never holds a right to change priorities, so it cannot
/// raise its own: the worker alone does, by `renice` (util-linux's, in
/// every Debian; no unsafe code). A boost the worker may not give (not
/// root) is skipped: only the renderers are lowered. The unsandboxed
/// zygote, which starts the GPU process, is left at normal priority.
pub async fn set_priorities(browser: u32) {
    renice(BROWSER_NICE, &[browser]).await;
    tokio::spawn(async move {
        let mut done: Vec<u32> = Vec::new();
        let mut quiet_since = None;
        let deadline = Instant::now() + ZYGOTE_WATCH;
        while Instant::now() < deadline && !exited(browser) {
            let new: Vec<u32> = descendants(browser)
                .into_iter()
                .filter(|p| !done.contains(p) && lowered(*p))
                .collect();
            if new.is_empty() {
                // Chromium starts its zygote and that zygote's fork server
                // together: once one is seen, a quiet moment means all are.
                if quiet_since.is_some_and(|t: Instant| t.elapsed() > ZYGOTE_QUIET) {
                    return;
                }
            } else {
                renice(RENDERER_NICE, &new).await;
                done.extend(new);
                quiet_since = Some(Instant::now());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if done.is_empty() {
            tracing::debug!(
                browser,
                "no sandboxed zygote seen: renderer priority unchanged"
            );
        }
    });
}

/// How long after start the browser's zygotes are looked for.
const ZYGOTE_WATCH: Duration = Duration::from_secs(10);
const ZYGOTE_QUIET: Duration = Duration::from_millis(500);

/// A sandboxed zygote, or a renderer it forked before we lowered it.
fn lowered(pid: u32) -> bool {
    let args = cmdline(pid);
    let has = |flag: &str| args.iter().any(|a| a == flag);
    has("--type=renderer") || (has("--type=zygote") && !has("--no-zygote-sandbox"))
}

async fn renice(nice: i32, pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    let done = tokio::process::Command::new("renice")
        // `--priority` is absolute in every util-linux (a bare `-n` became
        // relative under POSIXLY_CORRECT in later ones).
        .args(["--priority", &nice.to_string(), "-p"])
        .args(pids.iter().map(u32::to_string))
        .env_clear()
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
    if !matches!(done, Ok(s) if s.success()) {
        // Not fatal: rendering works at normal priorities, only slower.
        tracing::debug!(nice, ?pids, "renice refused");
    }
}

/// Every process under `pid`, not `pid` itself.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut todo = children(pid);
    while let Some(p) = todo.pop() {
        todo.extend(children(p));
        out.push(p);
    }
    out
}

/// The words of a process's command line. Chromium rewrites its
/// children's as one string with spaces, so NULs and spaces both split.
fn cmdline(pid: u32) -> Vec<String> {
    // A process gone (or not ours to read) has no command line.
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            String::from_utf8_lossy(&b)
                .split(['\0', ' '])
                .filter(|w| !w.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// The fields of `/proc/PID/stat` after the parenthesised command name
/// (so field 3, the state, is the first).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(
        stat.rsplit_once(')')?
            .1
            .split_whitespace()
            .map(String::from)
            .collect(),
    )
}

/// The process's start time (clock ticks after boot, field 22).
pub fn start_time(pid: u32) -> Option<u64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// Its process is gone or a zombie.
pub fn exited(pid: u32) -> bool {
    stat_fields(pid)
        .and_then(|f| f.first().cloned())
        .is_none_or(|state| state.starts_with(['Z', 'X']))
}

/// The process's proportional share of memory (PSS): summed over the
/// browser's processes it counts their shared pages once, where RSS
/// would count them in each.
pub fn pss_kb(pid: u32) -> Option<u64> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    rollup
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// utime + stime of `pid` (fields 14 and 15), plus its reaped children's
/// (16 and 17) when `with_reaped`.
pub fn cpu_ticks(pid: u32, with_reaped: bool) -> Option<u64> {
    let f = stat_fields(pid)?;
    let n = if with_reaped { 4 } else { 2 };
    Some(
        f.iter()
            .skip(11)
            .take(n)
            .filter_map(|v| v.parse::<u64>().ok())
            .sum(),
    )
}

fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        if let Ok(c) = std::fs::read_to_string(t.path().join("children")) {
            out.extend(c.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
        }
    }
    out
}
