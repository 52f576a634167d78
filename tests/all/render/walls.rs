//! The walls (issue "render walls"): the browser is a tenant we do not
//! trust, with no way out but our fetcher: unprivileged, sandboxed, in its
//! own network namespace, and no rendering where no sandbox works unless
//! opted out.

use super::procs::{is_root, mid_render, nice, tree, uid_and_args};
use super::{site, HOST};
use crate::harness::Scratch;
use anyhow::{Context, Result};
use std::time::Duration;

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
