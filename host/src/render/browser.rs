//! One headless Chromium process, started behind walls (ADR 0006):
//! - an unprivileged user (`render.user`) when the worker is root, with
//!   Chromium's own sandbox on and an environment holding only `PATH` and
//!   `HOME`;
//! - its own network namespace with no interface up, so it has no network
//!   at all: every byte a page gets comes from our fetcher through the
//!   DevTools `Fetch` domain (`intercept.rs`);
//! - DevTools over a pipe (`cdp.rs`), never a port;
//! - a per-process data limit (`prlimit --data`) and a V8 heap bound;
//! - a home directory the worker owns and locks for the browser's life,
//!   so a later worker stops only browsers whose worker is gone.
//!
//! How the walls are put up on this machine is decided once, at start
//! (`sandbox.rs`).

use super::cdp::Cdp;
use super::procs::{self, cpu_ticks, descendants, exited, start_time};
use super::sandbox::{Chain, Plan};
use crate::config;
use parking_lot::Mutex;
use serde_json::json;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::process::Child;

/// Our browsers' home directories (in the temp directory) start so.
pub(super) const HOME_PREFIX: &str = "spinneret-browser-";

/// The last bytes of the browser's stderr kept to explain a failed start.
const STDERR_TAIL: usize = 4096;

pub(super) struct Browser {
    pub cdp: Arc<Cdp>,
    child: Child,
    pid: u32,
    /// Its home: lock, pid file and profile; removed with it.
    _home: Home,
    /// Where a request the interception does not pause would go without a
    /// network namespace: a port this worker holds and answers with nothing.
    _dead_proxy: Option<tokio::task::JoinHandle<()>>,
}

/// The proxy the browser is given, so a request the interception does not
/// pause goes nowhere: any address in an empty network namespace, else a
/// dead port this worker holds (and the task holding it).
async fn proxy_for(plan: &Plan) -> Result<(String, Option<tokio::task::JoinHandle<()>>), String> {
    if plan.network_namespace {
        // Nothing listens in the namespace: any address is dead.
        Ok(("http://127.0.0.1:9".to_string(), None))
    } else {
        let (addr, task) = dead_proxy().await?;
        Ok((format!("http://{addr}"), Some(task)))
    }
}

/// Keep the last `STDERR_TAIL` bytes the browser writes to stderr in
/// `tail` (to explain a failed start), reading to the end: a chatty
/// browser would block on a full pipe.
fn keep_tail(mut err: tokio::process::ChildStderr, tail: Arc<Mutex<String>>) {
    tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = err.read(&mut buf).await {
            let mut t = tail.lock();
            t.push_str(&String::from_utf8_lossy(&buf[..n]));
            if t.len() > 2 * STDERR_TAIL {
                let cut = t.len() - STDERR_TAIL;
                let cut = (cut..t.len()).find(|i| t.is_char_boundary(*i)).unwrap_or(0);
                t.drain(..cut);
            }
        }
    });
}

impl Browser {
    pub async fn launch(
        settings: &config::Render,
        plan: &Plan,
        user_agent: &str,
        max_message: usize,
    ) -> Result<Browser, String> {
        let exe = executable(&settings.browser)?;
        reap_orphans();
        let home = Home::new(plan.user)?;
        let (proxy, dead_proxy) = proxy_for(plan).await?;
        let mut cmd = plan.command();
        cmd.args([
            "prlimit",
            &format!("--data={}", settings.process_limit_mb << 20),
            "--",
            "sh",
            "-c",
            // The pipe's ends as the fds `--remote-debugging-pipe` uses.
            r#"exec "$0" "$@" 3<&0 4>&1 </dev/null >/dev/null"#,
        ])
        .arg(&exe)
        .args(args(settings, plan, user_agent, &home.profile, &proxy))
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", &home.profile)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
        let pid = child.id().ok_or("the browser exited at once")?;
        home.record(pid)?;
        let tail = Arc::new(Mutex::new(String::new()));
        if let Some(err) = child.stderr.take() {
            keep_tail(err, tail.clone());
        }
        let (Some(write), Some(read)) = (child.stdin.take(), child.stdout.take()) else {
            return Err("the browser's pipe was not made".into());
        };
        let cdp = Arc::new(Cdp::start(write, read, max_message));
        let started = tokio::time::timeout(
            Duration::from_secs(20),
            cdp.call(None, "Browser.getVersion", json!({})),
        )
        .await;
        if !matches!(started, Ok(Ok(_))) {
            let _ = child.kill().await;
            // Its last words come after its exit.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let said = tail.lock().clone();
            return Err(explain_failed_start(&exe, &said));
        }
        tracing::info!(
            browser = %exe.display(),
            pid,
            uid = plan.user.map(|u| u.0),
            sandbox = plan.sandbox,
            network_namespace = plan.network_namespace,
            "browser started"
        );
        // A root browser sets its own priorities; ours cannot.
        if plan.user.is_some() || !super::sandbox::running_as_root() {
            procs::set_priorities(pid).await;
        }
        Ok(Browser {
            cdp,
            child,
            pid,
            _home: home,
            _dead_proxy: dead_proxy,
        })
    }

    /// Its pipe is open and its process runs. The process is looked at
    /// too: a render failing because the browser was just killed may see
    /// its error before the pipe's end is noticed.
    pub fn alive(&self) -> bool {
        self.cdp.open() && !exited(self.pid)
    }

    /// Memory (MiB, proportional set size) and CPU time of the browser and
    /// every process under it, exited ones included (the browser reaps its
    /// renderers, so their time is in its children's time).
    pub fn usage(&self) -> (u64, Duration) {
        let (mut pss_kb, mut ticks) = (
            procs::pss_kb(self.pid).unwrap_or(0),
            cpu_ticks(self.pid, true).unwrap_or(0),
        );
        for p in descendants(self.pid) {
            pss_kb += procs::pss_kb(p).unwrap_or(0);
            ticks += cpu_ticks(p, false).unwrap_or(0);
        }
        // USER_HZ is 100 on Linux.
        (pss_kb / 1024, Duration::from_millis(ticks * 10))
    }

    /// Close it and reap its process (killed if it does not close).
    pub async fn close(&mut self) {
        let bound = Duration::from_secs(5);
        let closed =
            tokio::time::timeout(bound, self.cdp.call(None, "Browser.close", json!({}))).await;
        if !matches!(closed, Ok(Ok(_))) {
            let _ = self.child.start_kill();
        }
        if tokio::time::timeout(bound, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(t) = &self._dead_proxy {
            t.abort();
        }
        // The child was spawned with kill-on-drop; its renderers follow it.
    }
}

/// Our flags. No network of its own (every request the page makes is
/// answered by our fetcher through `Fetch`), no channel that `Fetch` does
/// not see (QUIC, WebRTC's UDP, DNS prefetch), no background traffic,
/// site isolation on (our interception follows frames into their own
/// processes, `intercept.rs`).
fn args(
    settings: &config::Render,
    plan: &Plan,
    user_agent: &str,
    profile: &Path,
    proxy: &str,
) -> Vec<String> {
    let mut a: Vec<String> = [
        "--headless",
        "--remote-debugging-pipe",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-background-timer-throttling",
        "--disable-backgrounding-occluded-windows",
        "--disable-renderer-backgrounding",
        "--disable-breakpad",
        "--disable-client-side-phishing-detection",
        "--disable-component-extensions-with-background-pages",
        "--disable-component-update",
        "--disable-default-apps",
        "--disable-extensions",
        "--disable-dev-shm-usage",
        "--disable-domain-reliability",
        "--disable-hang-monitor",
        "--disable-ipc-flooding-protection",
        "--disable-popup-blocking",
        "--disable-prompt-on-repost",
        "--disable-sync",
        "--disable-quic",
        "--dns-prefetch-disable",
        "--no-pings",
        "--metrics-recording-only",
        "--use-mock-keychain",
        "--password-store=basic",
        "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
        "--webrtc-ip-handling-policy=disable_non_proxied_udp",
        "--disable-features=TranslateUI,OptimizationHints,MediaRouter,NetworkPrediction,WebTransport,DialMediaRouteProvider",
        // Chromium bypasses a proxy for loopback unless told not to.
        "--proxy-bypass-list=<-loopback>",
    ]
    .map(String::from)
    .to_vec();
    a.push(format!("--proxy-server={proxy}"));
    a.push(format!("--user-data-dir={}", profile.display()));
    a.push(format!("--user-agent={user_agent}"));
    a.push(format!(
        "--js-flags=--max-old-space-size={}",
        settings.max_heap_mb
    ));
    if !plan.sandbox {
        a.push("--no-sandbox".into());
    }
    a
}

/// A listener on an ephemeral loopback port that this worker holds and
/// that answers nothing: the browser's proxy when it has a network.
async fn dead_proxy() -> Result<(std::net::SocketAddr, tokio::task::JoinHandle<()>), String> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot bind the browser's dead proxy: {e}"))?;
    let addr = l.local_addr().map_err(|e| e.to_string())?;
    let task = tokio::spawn(async move {
        while let Ok((conn, _)) = l.accept().await {
            tracing::warn!("the browser tried to open a connection of its own: closed");
            drop(conn);
        }
    });
    Ok((addr, task))
}

/// Why the browser did not start, with what to change.
fn explain_failed_start(exe: &Path, stderr: &str) -> String {
    let last: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.contains("dbus") && !l.trim().is_empty())
        .collect();
    let last = last[last.len().saturating_sub(3)..].join(" | ");
    if stderr.contains("No usable sandbox") || stderr.contains("sandbox") {
        return format!(
            "{} could not start its sandbox ({last}): allow unprivileged user namespaces, or install a setuid chrome-sandbox, or set render.allow_unsandboxed = true (not for pages you do not trust)",
            exe.display()
        );
    }
    format!("{} did not start: {last}", exe.display())
}

/// A browser's home in the temp directory: `lock` (held by its worker for
/// the browser's life), `pid` (the browser's pid and start time) and
/// `profile/` (the browser's own, writable by its user alone). The home
/// itself belongs to the worker: the browser cannot touch the lock.
struct Home {
    dir: tempfile::TempDir,
    profile: PathBuf,
    _lock: File,
}

impl Home {
    fn new(user: Option<(u32, u32)>) -> Result<Home, String> {
        let fail = |what: &str, e: std::io::Error| format!("the browser's home: {what}: {e}");
        let dir = tempfile::Builder::new()
            .prefix(HOME_PREFIX)
            .tempdir()
            .map_err(|e| fail("create", e))?;
        let lock = File::create(dir.path().join("lock")).map_err(|e| fail("lock file", e))?;
        lock.try_lock()
            .map_err(|e| format!("the browser's home: lock: {e}"))?;
        let profile = dir.path().join("profile");
        std::fs::create_dir(&profile).map_err(|e| fail("profile", e))?;
        if let Some((uid, gid)) = user {
            use std::os::unix::fs::PermissionsExt;
            // The browser's user passes through the home to its profile.
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711))
                .map_err(|e| fail("permissions", e))?;
            std::os::unix::fs::chown(&profile, Some(uid), Some(gid))
                .map_err(|e| fail("chown profile", e))?;
        }
        Ok(Home {
            dir,
            profile,
            _lock: lock,
        })
    }

    fn record(&self, pid: u32) -> Result<(), String> {
        let start = start_time(pid).ok_or("the browser exited at once")?;
        std::fs::write(self.dir.path().join("pid"), format!("{pid} {start}\n"))
            .map_err(|e| format!("the browser's home: pid file: {e}"))
    }
}

/// Stop the browsers whose worker is gone (killed outright: SIGKILL, the
/// OOM killer), and remove their homes. A home whose lock is free has no
/// worker; its browser is the process its pid file names, if that process
/// still has the start time recorded (a pid reused since is left alone).
/// Nothing is ever killed for what its command line says.
pub(super) fn reap_orphans() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        if !e.file_name().to_string_lossy().starts_with(HOME_PREFIX) {
            continue;
        }
        let home = e.path();
        let Ok(lock) = File::open(home.join("lock")) else {
            // A home being made has its lock within a moment.
            if older_than(&home, Duration::from_secs(60)) {
                let _ = std::fs::remove_dir_all(&home);
            }
            continue;
        };
        if lock.try_lock().is_err() {
            continue; // Its worker is alive.
        }
        if let Some((pid, start)) = std::fs::read_to_string(home.join("pid"))
            .ok()
            .and_then(|s| {
                let (p, t) = s.trim().split_once(' ')?;
                Some((p.parse::<u32>().ok()?, t.parse::<u64>().ok()?))
            })
        {
            if start_time(pid) == Some(start) && !exited(pid) {
                stop_orphan(pid);
            }
        }
        // A home that will not go (a process of another user still in it)
        // is tried again by the next reaper: its lock stays free.
        let _ = std::fs::remove_dir_all(&home);
    }
}

/// Kill an orphaned browser and every process under it, and wait (up to
/// two seconds) until they are gone: its renderers write to the profile
/// while they live, and a home emptied under them is not removed.
fn stop_orphan(pid: u32) {
    let mut all = descendants(pid);
    all.push(pid);
    let _ = std::process::Command::new("kill")
        .arg("-9")
        .args(all.iter().map(u32::to_string))
        .stderr(Stdio::null())
        .status();
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while !all.iter().all(|p| exited(*p)) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    tracing::info!(
        pid,
        processes = all.len(),
        "stopped a browser whose worker was killed"
    );
}

fn older_than(p: &Path, age: Duration) -> bool {
    std::fs::metadata(p)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t.elapsed().is_ok_and(|a| a > age))
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

// The plan's command prefix lives with the plan.
impl Plan {
    /// The command that puts the walls up, to which the browser's own
    /// command line is appended.
    fn command(&self) -> tokio::process::Command {
        let mut cmd = match &self.chain {
            Chain::Direct => tokio::process::Command::new("env"),
            Chain::UserNamespace => {
                let mut c = tokio::process::Command::new("unshare");
                c.args(["--user", "--map-current-user", "--net", "--"]);
                c
            }
            Chain::RootNamespace => {
                let mut c = tokio::process::Command::new("unshare");
                c.args(["--net", "--"]);
                if let Some((uid, gid)) = self.user {
                    c.args([
                        "setpriv",
                        &format!("--reuid={uid}"),
                        &format!("--regid={gid}"),
                        "--clear-groups",
                        "--",
                    ]);
                }
                return c;
            }
        };
        // Switched before `unshare` runs: the namespaces are the user's own.
        if let Some((uid, gid)) = self.user {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_home_whose_lock_is_held_is_left_and_a_free_one_is_reaped_without_killing_a_stranger() {
        let held = Home::new(None).expect("test");
        // A free home whose pid file names this very process with another
        // start time: a reused pid, never killed.
        let free = tempfile::Builder::new()
            .prefix(HOME_PREFIX)
            .tempdir()
            .expect("test")
            .keep();
        File::create(free.join("lock")).expect("test");
        let me = std::process::id();
        let wrong = start_time(me).expect("test") + 1;
        std::fs::write(free.join("pid"), format!("{me} {wrong}\n")).expect("test");
        reap_orphans();
        assert!(held.dir.path().exists());
        assert!(!free.exists());
        // Still running to say so.
        assert!(!exited(me));
    }
}
