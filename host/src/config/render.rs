//! `[render]`: the headless browser that renders script-built pages
//! (contract §3 "Rendering"). Every bound of a render is here.

use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Render {
    /// Render requests that ask for it. Off: the worker does not advertise
    /// rendering and never takes a request that needs it.
    pub enabled: bool,
    /// The browser binary; empty = the first of `chromium`,
    /// `chromium-browser`, `google-chrome` on `PATH`.
    pub browser: String,
    /// Renders at once per worker process (one browser context each).
    pub concurrency: usize,
    /// Wall time of one render, sub-resources included (s). Past it the
    /// request gets an error result.
    #[serde(deserialize_with = "super::seconds::read")]
    pub timeout: Duration,
    /// The page is done when no sub-request has been open for this long
    /// after its load event (s).
    #[serde(deserialize_with = "super::seconds::read")]
    pub idle: Duration,
    /// Sub-requests one render may make (the main document not counted);
    /// the rest are refused.
    pub max_requests: usize,
    /// Bytes of sub-resources one render may fetch; past it the rest are
    /// refused.
    pub max_bytes: usize,
    /// Resource types refused without fetching (DevTools names, lower
    /// case: image, media, font, stylesheet, script, xhr, fetch, ...).
    pub block: Vec<String>,
    /// `auto` renders a page whose visible text (outside script, style and
    /// template tags) is under this many bytes and that has a script.
    pub auto_text: usize,
    /// The browser is restarted after a render that leaves its processes
    /// above this resident memory (MiB).
    pub max_memory_mb: u64,
    /// The user the browser runs as when the worker is root (a name, or
    /// `uid:gid`); `scripts/setup --test` creates it.
    pub user: String,
    /// Run the browser without Chromium's sandbox where none can work
    /// (logged at every start). Off: rendering refuses to start there.
    pub allow_unsandboxed: bool,
    /// V8's heap per page (MiB): a page past it is stopped mid-render.
    pub max_heap_mb: u64,
    /// Data (heap and stacks) one browser process may map (MiB), set by
    /// the kernel (`RLIMIT_DATA`): past it the process fails mid-render.
    pub process_limit_mb: u64,
    /// Sub-requests of one render being fetched at once.
    pub parallel: usize,
    /// Sub-requests may go beyond the page's registered domain. Off: they
    /// are refused (they would skip that site's robots.txt and throttle).
    pub third_party: bool,
}

impl Default for Render {
    fn default() -> Self {
        Render {
            enabled: true,
            browser: String::new(),
            concurrency: 2,
            timeout: Duration::from_secs(20),
            idle: Duration::from_millis(500),
            max_requests: 100,
            max_bytes: 20 * 1024 * 1024,
            block: vec!["image".into(), "media".into(), "font".into()],
            auto_text: 200,
            max_memory_mb: 1024,
            user: "spinneret-browser".into(),
            allow_unsandboxed: false,
            max_heap_mb: 512,
            process_limit_mb: 4096,
            parallel: 6,
            third_party: false,
        }
    }
}

/// DevTools resource types a `render.block` entry may name.
pub const RESOURCE_TYPES: [&str; 14] = [
    "stylesheet",
    "image",
    "media",
    "font",
    "script",
    "texttrack",
    "xhr",
    "fetch",
    "prefetch",
    "eventsource",
    "websocket",
    "manifest",
    "ping",
    "other",
];

impl Render {
    /// Ranges and names; the message says what to change.
    pub fn check(&self) -> Result<(), String> {
        if self.concurrency == 0 || self.concurrency > 64 {
            return Err(format!(
                "render.concurrency must be from 1 to 64, got {}",
                self.concurrency
            ));
        }
        for (name, v) in [("timeout", self.timeout), ("idle", self.idle)] {
            let v = v.as_secs_f64();
            if !(v > 0.0 && v <= 600.0) {
                return Err(format!(
                    "render.{name} must be a number of seconds above 0 and at most 600, got {v}"
                ));
            }
        }
        if self.idle >= self.timeout {
            return Err("render.idle must be shorter than render.timeout".into());
        }
        if self.max_memory_mb < 128 {
            return Err(format!(
                "render.max_memory_mb must be at least 128, got {}",
                self.max_memory_mb
            ));
        }
        if !(64..=16384).contains(&self.max_heap_mb) {
            return Err(format!(
                "render.max_heap_mb must be from 64 to 16384, got {}",
                self.max_heap_mb
            ));
        }
        if self.process_limit_mb < 1024 || self.process_limit_mb < self.max_heap_mb * 2 {
            return Err(format!(
                "render.process_limit_mb must be at least 1024 and twice render.max_heap_mb (a browser process maps more than its heap), got {}",
                self.process_limit_mb
            ));
        }
        if self.parallel == 0 || self.parallel > 64 {
            return Err(format!(
                "render.parallel must be from 1 to 64, got {}",
                self.parallel
            ));
        }
        if self.user.is_empty() {
            return Err("render.user must name a user (or uid:gid)".into());
        }
        if let Some(b) = self
            .block
            .iter()
            .find(|b| !RESOURCE_TYPES.contains(&b.as_str()))
        {
            return Err(format!(
                "render.block: unknown resource type {b:?}; choose from {}",
                RESOURCE_TYPES.join(", ")
            ));
        }
        Ok(())
    }
}
