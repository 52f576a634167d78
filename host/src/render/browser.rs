//! One headless Chromium process: launched with a fresh profile and
//! flags that leave it no network of its own, watched for a crash, and
//! measured for the memory bound.

use crate::config;
use chromiumoxide::browser::{Browser as Cdp, BrowserConfig, BrowserConfigBuilder};
use futures::StreamExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::task::JoinHandle;

/// Where the browser's own connections go: a closed port, so a request
/// that the DevTools `Fetch` interception does not pause (a WebSocket, a
/// service worker, a popup's) fails instead of reaching the network.
const DEAD_PROXY: &str = "http://127.0.0.1:9";

/// Our browsers' profile directories (in the temp directory) start so.
const PROFILE_PREFIX: &str = "spinneret-browser-";

pub(super) struct Browser {
    pub cdp: Cdp,
    handler: JoinHandle<()>,
    alive: Arc<AtomicBool>,
    pid: Option<u32>,
    /// Its profile, removed with it.
    _profile: tempfile::TempDir,
}

impl Browser {
    pub async fn launch(settings: &config::Render, user_agent: &str) -> Result<Browser, String> {
        let exe = executable(&settings.browser)?;
        reap_orphans();
        let profile = tempfile::Builder::new()
            .prefix(PROFILE_PREFIX)
            .tempdir()
            .map_err(|e| format!("cannot make the browser's profile directory: {e}"))?;
        let mut builder = with_args(BrowserConfig::builder(), user_agent)
            .chrome_executable(&exe)
            .user_data_dir(profile.path())
            .disable_default_args()
            .enable_request_intercept()
            .disable_cache()
            .launch_timeout(Duration::from_secs(20))
            // Our own timeout (render.timeout) comes first.
            .request_timeout(Duration::from_secs_f64(settings.timeout + 5.0));
        // Chromium's sandbox cannot start as root (CI containers).
        if running_as_root() {
            builder = builder.no_sandbox();
        }
        let config = builder.build()?;
        let (mut cdp, mut handler) = Cdp::launch(config)
            .await
            .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
        let pid = cdp.get_mut_child().and_then(|c| c.inner.id());
        // Its stderr is a pipe nobody else reads: a chatty browser would
        // block on a full one.
        if let Some(mut err) = cdp
            .get_mut_child()
            .and_then(|c| c.stderr.take())
            .map(|e| e.into_inner())
        {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while matches!(err.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
        let alive = Arc::new(AtomicBool::new(true));
        let flag = alive.clone();
        let handler = tokio::spawn(async move {
            while let Some(event) = handler.next().await {
                if let Err(e) = event {
                    tracing::debug!(error = %e, "browser connection event");
                    if matches!(e, chromiumoxide::error::CdpError::Ws(_)) {
                        break;
                    }
                }
            }
            flag.store(false, Ordering::SeqCst);
        });
        tracing::info!(browser = %exe.display(), pid, "browser started");
        Ok(Browser {
            cdp,
            handler,
            alive,
            pid,
            _profile: profile,
        })
    }

    /// Its process runs and its connection is up. The process is looked
    /// at too: a render failing because the browser was just killed may
    /// see its error before the connection's end is noticed.
    pub fn alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst) && !self.handler.is_finished() && !self.exited()
    }

    /// Its process is gone or a zombie.
    fn exited(&self) -> bool {
        let Some(pid) = self.pid else { return false };
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            // The state follows the parenthesised command name.
            Ok(stat) => stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
            Err(_) => true,
        }
    }

    /// Memory (MiB, proportional set size) and CPU time of the browser and every
    /// process under it, exited ones included (the browser reaps its
    /// renderers, so their time is in its children's time).
    pub fn usage(&self) -> Option<(u64, Duration)> {
        let pid = self.pid?;
        let (mut pss_kb_total, mut ticks) = (0, 0);
        let mut todo = vec![(pid, true)];
        while let Some((p, top)) = todo.pop() {
            pss_kb_total += pss_kb(p).unwrap_or(0);
            ticks += cpu_ticks(p, top).unwrap_or(0);
            todo.extend(children(p).into_iter().map(|c| (c, false)));
        }
        // USER_HZ is 100 on Linux.
        Some((pss_kb_total / 1024, Duration::from_millis(ticks * 10)))
    }

    /// Close it and reap its process (killed if it does not close).
    pub async fn close(&mut self) {
        let bound = Duration::from_secs(5);
        let closed = tokio::time::timeout(bound, self.cdp.close()).await;
        if !matches!(closed, Ok(Ok(_))) {
            let _ = self.cdp.kill().await;
        }
        let _ = tokio::time::timeout(bound, self.cdp.wait()).await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.handler.abort();
        // The child was spawned with kill-on-drop; its renderers follow it.
    }
}

/// Our flags, not the crate's defaults (it adds `--headless`): no
/// network of its own (every request the page makes is answered by our
/// fetcher through `Fetch`), iframes in the page's process (so its
/// interception sees them), no background traffic.
fn with_args(b: BrowserConfigBuilder, user_agent: &str) -> BrowserConfigBuilder {
    b.args([
        "no-first-run",
        "disable-background-networking",
        "disable-background-timer-throttling",
        "disable-backgrounding-occluded-windows",
        "disable-renderer-backgrounding",
        "disable-breakpad",
        "disable-client-side-phishing-detection",
        "disable-component-extensions-with-background-pages",
        "disable-component-update",
        "disable-default-apps",
        "disable-dev-shm-usage",
        "disable-domain-reliability",
        "disable-hang-monitor",
        "disable-ipc-flooding-protection",
        "disable-popup-blocking",
        "disable-prompt-on-repost",
        "disable-sync",
        "disable-site-isolation-trials",
        "dns-prefetch-disable",
        "metrics-recording-only",
        "use-mock-keychain",
    ])
    .arg((
        "disable-features",
        &[
            "TranslateUI",
            "IsolateOrigins",
            "site-per-process",
            "OptimizationHints",
            "MediaRouter",
        ][..],
    ))
    .arg(("password-store", "basic"))
    .arg(("proxy-server", DEAD_PROXY))
    // Chromium bypasses a proxy for loopback unless told not to.
    .arg(("proxy-bypass-list", "<-loopback>"))
    .arg(("user-agent", user_agent))
}

/// Stop the browsers a worker killed outright (SIGKILL, the OOM killer)
/// left behind: their parent is no longer a `spinneret`, and their profile
/// is one of ours. A clean stop closes its browser; nothing else can,
/// without unsafe code to make the kernel kill a child with its parent.
fn reap_orphans() {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return;
    };
    let temp = std::env::temp_dir();
    let ours = temp.join(PROFILE_PREFIX);
    let ours = ours.to_string_lossy();
    let mut in_use = std::collections::HashSet::new();
    for pid in procs
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
    {
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let Some(profile) = cmdline
            .split(|b| *b == 0)
            .filter_map(|a| std::str::from_utf8(a).ok())
            .find_map(|a| a.strip_prefix("--user-data-dir="))
            .filter(|p| p.starts_with(&*ours))
            .map(std::path::PathBuf::from)
        else {
            continue;
        };
        // The browser's own children have the browser as parent: only its
        // main process is killed, and they follow it.
        if parent_is_spinneret(pid) {
            in_use.insert(profile);
            continue;
        }
        let killed = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if killed {
            tracing::info!(pid, "stopped a browser whose worker was killed");
        }
    }
    // Profiles no browser uses (a killed worker's), left a minute so a
    // profile just made for a browser that is starting is never taken.
    let Ok(entries) = std::fs::read_dir(&temp) else {
        return;
    };
    for e in entries.flatten() {
        let stale = e
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > Duration::from_secs(60)));
        let name = e.file_name();
        if stale
            && name.to_string_lossy().starts_with(PROFILE_PREFIX)
            && !in_use.contains(&e.path())
        {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Whether `pid`'s parent is a `spinneret` process (or a browser process:
/// a child of a live browser is that browser's business).
fn parent_is_spinneret(pid: u32) -> bool {
    let ppid = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse::<u32>()
                .ok()
        });
    let Some(ppid) = ppid else { return true };
    let comm = std::fs::read_to_string(format!("/proc/{ppid}/comm")).unwrap_or_default();
    matches!(comm.trim(), "spinneret" | "chromium" | "chrome")
}

/// The configured browser, or the first known one on `PATH`.
fn executable(configured: &str) -> Result<PathBuf, String> {
    if !configured.is_empty() {
        return Ok(PathBuf::from(configured));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if is_executable(&p) {
                return Ok(p);
            }
        }
    }
    Err(
        "no browser found: install chromium or set render.browser (or render.enabled = false)"
            .into(),
    )
}

/// The browser this configuration would start, if one is there.
pub fn find(settings: &config::Render) -> Option<PathBuf> {
    executable(&settings.browser)
        .ok()
        .filter(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            == Some("0")
    })
}

/// The process's proportional share of memory (PSS): summed over the
/// browser's processes it counts their shared pages once, where RSS
/// would count them in each.
fn pss_kb(pid: u32) -> Option<u64> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    rollup
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// utime + stime of `pid` (fields 14 and 15 of its stat), plus its
/// reaped children's (16 and 17) when `with_reaped`.
fn cpu_ticks(pid: u32, with_reaped: bool) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<u64> = stat
        .rsplit_once(')')?
        .1
        .split_whitespace()
        .skip(11)
        .take(4)
        .filter_map(|v| v.parse().ok())
        .collect();
    let n = if with_reaped { 4 } else { 2 };
    Some(f.iter().take(n).sum())
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
