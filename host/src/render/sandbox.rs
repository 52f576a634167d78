//! How this machine lets us wall the browser in, decided once at start:
//! which user it runs as, whether Chromium's sandbox can work, and whether
//! it gets a network namespace of its own. Where no sandbox can work,
//! rendering refuses to start unless `render.allow_unsandboxed` says
//! otherwise (ADR 0006, "Walls").

use crate::config;
use std::path::Path;
use std::process::{Command, Stdio};

/// How the browser's command is wrapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chain {
    /// `unshare --user --map-current-user --net`, run as the browser's
    /// user: a user namespace (which Chromium's sandbox also uses) and an
    /// empty network namespace.
    UserNamespace,
    /// `unshare --net` as root, then `setpriv` to the browser's user: no
    /// user namespaces here, so Chromium's setuid sandbox is used.
    RootNamespace,
    /// No namespace can be made: every channel `Fetch` does not see is
    /// closed by flags, and the proxy is a dead port.
    Direct,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The uid and gid the browser runs as, when they differ from ours.
    pub user: Option<(u32, u32)>,
    pub sandbox: bool,
    pub network_namespace: bool,
    pub chain: Chain,
}

/// What the machine offers, found by trying.
#[derive(Debug, Clone, Copy)]
pub struct Machine {
    pub root: bool,
    /// The browser's user as configured (None: not found).
    pub user: Option<(u32, u32)>,
    /// A user and network namespace can be made as the browser's user.
    pub user_namespaces: bool,
    /// A network namespace can be made as ourselves (root).
    pub net_namespace_as_root: bool,
    /// A setuid-root `chrome-sandbox` is next to the browser.
    pub setuid_helper: bool,
}

impl Machine {
    pub fn probe(settings: &config::Render, browser: &Path) -> Machine {
        let root = running_as_root();
        // A user we cannot switch to (unmapped in a user namespace) is none.
        let user = lookup_user(&settings.user).filter(|u| !root || works(&["true"], Some(*u)));
        let as_browser = if root { user } else { None };
        Machine {
            root,
            user,
            user_namespaces: (!root || user.is_some())
                && works(
                    &["unshare", "--user", "--map-current-user", "--net", "true"],
                    as_browser,
                ),
            net_namespace_as_root: root && works(&["unshare", "--net", "true"], None),
            setuid_helper: setuid_helper(browser),
        }
    }
}

/// The walls for `machine`, or why rendering cannot start.
pub fn plan(settings: &config::Render, m: &Machine) -> Result<Plan, String> {
    let user = if m.root { m.user } else { None };
    if m.root && user.is_none() && !settings.allow_unsandboxed {
        return Err(format!(
            "the worker runs as root and the browser's user {:?} does not exist or cannot be switched to: create it (scripts/setup --test does), set render.user to an unprivileged user, or set render.allow_unsandboxed = true (the browser would run as root: not for pages you do not trust)",
            settings.user
        ));
    }
    if m.user_namespaces {
        return Ok(Plan {
            user,
            sandbox: true,
            network_namespace: true,
            chain: Chain::UserNamespace,
        });
    }
    let ns = m.net_namespace_as_root;
    let chain = if ns {
        Chain::RootNamespace
    } else {
        Chain::Direct
    };
    if m.setuid_helper && (user.is_some() || !m.root) {
        return Ok(Plan {
            user,
            sandbox: true,
            network_namespace: ns,
            chain,
        });
    }
    if settings.allow_unsandboxed {
        return Ok(Plan {
            user,
            sandbox: false,
            network_namespace: ns,
            chain,
        });
    }
    Err("no sandbox can work for the browser on this machine: user namespaces are not allowed (sysctl user.max_user_namespaces, kernel.unprivileged_userns_clone or an AppArmor rule) and there is no setuid-root chrome-sandbox beside the browser. Allow user namespaces, install Chromium's setuid sandbox, or set render.allow_unsandboxed = true (not for pages you do not trust)".into())
}

/// `cmd` exits 0, run as `user` when given.
fn works(cmd: &[&str], user: Option<(u32, u32)>) -> bool {
    use std::os::unix::process::CommandExt;
    let mut c = Command::new(cmd[0]);
    c.args(&cmd[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some((uid, gid)) = user {
        c.uid(uid).gid(gid);
    }
    c.status().is_ok_and(|s| s.success())
}

/// `name` as `uid:gid` numbers, or looked up in `/etc/passwd`.
pub fn lookup_user(name: &str) -> Option<(u32, u32)> {
    if let Some((u, g)) = name.split_once(':') {
        return Some((u.parse().ok()?, g.parse().ok()?));
    }
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 3 && f[0] == name).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
    })
}

fn setuid_helper(browser: &Path) -> bool {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let real = std::fs::canonicalize(browser).unwrap_or(browser.to_path_buf());
    // Debian's /usr/bin/chromium is a script; its binary is in /usr/lib.
    let dirs = [
        real.parent().map(Path::to_path_buf),
        Some("/usr/lib/chromium".into()),
    ];
    dirs.iter().flatten().any(|d| {
        std::fs::metadata(d.join("chrome-sandbox"))
            .is_ok_and(|m| m.uid() == 0 && m.permissions().mode() & 0o4000 != 0)
    })
}

pub fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            == Some("0")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine() -> Machine {
        Machine {
            root: true,
            user: Some((999, 995)),
            user_namespaces: true,
            net_namespace_as_root: true,
            setuid_helper: false,
        }
    }

    #[test]
    fn user_namespaces_give_the_sandbox_and_an_empty_network() {
        let p = plan(&config::Render::default(), &machine()).expect("test");
        assert_eq!(p.chain, Chain::UserNamespace);
        assert_eq!(p.user, Some((999, 995)));
        assert!(p.sandbox && p.network_namespace);
    }

    #[test]
    fn without_user_namespaces_the_setuid_helper_serves_and_root_makes_the_namespace() {
        let m = Machine {
            user_namespaces: false,
            setuid_helper: true,
            ..machine()
        };
        let p = plan(&config::Render::default(), &m).expect("test");
        assert_eq!(p.chain, Chain::RootNamespace);
        assert!(p.sandbox);
    }

    #[test]
    fn no_sandbox_at_all_refuses_unless_the_opt_out_is_set() {
        let m = Machine {
            user_namespaces: false,
            net_namespace_as_root: false,
            ..machine()
        };
        let e = plan(&config::Render::default(), &m).expect_err("an error");
        assert!(e.contains("render.allow_unsandboxed"), "{e}");
        let opted = config::Render {
            allow_unsandboxed: true,
            ..Default::default()
        };
        let p = plan(&opted, &m).expect("test");
        assert!(!p.sandbox);
        assert_eq!(p.chain, Chain::Direct);
    }

    #[test]
    fn root_without_the_browser_user_refuses_and_says_what_to_do() {
        let m = Machine {
            user: None,
            ..machine()
        };
        let e = plan(&config::Render::default(), &m).expect_err("an error");
        assert!(e.contains("render.user"), "{e}");
    }

    #[test]
    fn a_user_is_named_or_given_as_numbers() {
        assert_eq!(lookup_user("root"), Some((0, 0)));
        assert_eq!(lookup_user("12:34"), Some((12, 34)));
        assert_eq!(lookup_user("no-such-user-here"), None);
    }
}
