//! What guests import: the `host` interface and the `response` and
//! `crawl-result` resources, which keep page data on the host side.

use super::bindings::{host, types};
use crate::config::Limits;
use crate::fetch::Fetched;
use crate::links::{self, LinkFilters};
use crate::request::Job;
use crate::result::{CrawlResult, ResultJson};
use crate::telemetry::Stats;
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use wasmtime::component::{Resource, ResourceTable};
use wasmtime::ResourceLimiter;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// A fetched page and the request that asked for it, as a spider or
/// middleware sees it.
#[derive(Clone)]
pub struct Page {
    pub job: Arc<Job>,
    pub fetched: Arc<Fetched>,
    links: Arc<PageLinks>,
}

/// The page's links, extracted on first use, at most `max` of them.
struct PageLinks {
    max: usize,
    cell: OnceLock<links::Extracted>,
}

impl Page {
    /// `max_links` is `crawl.max_links_per_page`.
    pub fn new(job: Arc<Job>, fetched: Arc<Fetched>, max_links: usize) -> Page {
        Page {
            job,
            fetched,
            links: Arc::new(PageLinks {
                max: max_links,
                cell: OnceLock::new(),
            }),
        }
    }

    /// The page's links with the crawl's filters, computed once per page.
    fn extracted(&self) -> &links::Extracted {
        self.links.cell.get_or_init(|| {
            let base = url::Url::parse(&self.fetched.response_url)
                .or_else(|_| url::Url::parse(&self.job.url));
            match base {
                Ok(base) => links::extract(
                    &self.fetched.body,
                    &base,
                    self.job.crawl.filters(),
                    self.links.max,
                ),
                Err(_) => links::Extracted::default(),
            }
        })
    }

    /// One of the page's extracted links, parsed (when a plugin asked for
    /// the links and `url` is one of them).
    pub fn link_url(&self, url: &str) -> Option<url::Url> {
        self.links.cell.get()?.parsed(url).cloned()
    }

    /// Whether the page had more links than the cap (known once a plugin
    /// asked for them).
    pub fn links_truncated(&self) -> bool {
        self.links.cell.get().is_some_and(|e| e.truncated)
    }

    fn links(&self) -> Vec<types::Link> {
        self.extracted()
            .links
            .iter()
            .map(|l| types::Link {
                url: l.url.clone(),
                text: l.text.clone(),
            })
            .collect()
    }

    /// A meta value: the parent's meta first, then the crawl's own fields.
    fn meta(&self, name: &str) -> Option<String> {
        if let Some((_, v)) = self.job.meta.iter().rev().find(|(k, _)| k == name) {
            return Some(v.clone());
        }
        let c = &self.job.crawl;
        let v = match name {
            "appid" => Value::from(c.appid.as_str()),
            "crawlid" => Value::from(c.crawlid.as_str()),
            "spiderid" => Value::from(self.job.spiderid.as_str()),
            "attrs" => c.attrs.clone().unwrap_or(Value::Null),
            "maxdepth" => Value::from(c.maxdepth),
            "depth" | "curdepth" => Value::from(self.job.depth),
            "priority" => Value::from(self.job.priority),
            "retries" => Value::from(self.job.retries),
            "useragent" => c.useragent.clone().map(Value::from)?,
            "cookie" => c.cookie.clone().map(Value::from)?,
            "expires" => Value::from(c.expires),
            _ => return None,
        };
        Some(v.to_string())
    }
}

/// The `response` resource's host side.
pub struct ResponseRes {
    page: Page,
}

impl ResponseRes {
    pub fn new(page: Page) -> Self {
        ResponseRes { page }
    }
}

/// The `crawl-result` resource's host side: the result itself, read a
/// field at a time from its contract JSON (the body written as the sinks
/// write it); the whole JSON is never built for a pipeline.
pub struct CrawlResultRes {
    pub result: Arc<CrawlResult>,
    pub base64_body: bool,
}

/// Memory accounting and cap for one store: the cap is on the sum of
/// every linear memory in it (a component has one per core instance, and
/// a core module may have several), each growth counted by its delta.
pub struct MemoryCap {
    pub max_bytes: usize,
    pub current: usize,
    pub denied: bool,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = (self.current + desired).saturating_sub(current);
        if total > self.max_bytes {
            self.denied = true;
            return Ok(false);
        }
        self.current = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// Everything one plugin instance's store holds.
pub struct StoreState {
    pub(super) wasi: WasiCtx,
    pub(super) table: ResourceTable,
    pub(super) memory: MemoryCap,
    pub(super) plugin: Arc<str>,
    pub(super) rng: u64,
    pub(super) stats: Arc<Stats>,
    pub(super) limits: Limits,
    pub(super) budget: CallBudget,
}

/// What the current call may still do. [`Plugin::call`] resets it, and
/// fails a call that went over any of it even if the guest returned.
///
/// [`Plugin::call`]: super::plugin::Plugin
#[derive(Default)]
pub struct CallBudget {
    /// When the call's wall-time limit runs out: a guest's sleep (WASI
    /// clocks) is cut there, and the call then fails as timed out.
    pub deadline: Option<Instant>,
    pub overslept: bool,
    /// `log` calls and stdout/stderr lines, shared with the output streams.
    pub lines: Arc<AtomicU64>,
    /// The first cap the call went over.
    pub over: Option<String>,
}

impl CallBudget {
    pub fn start(&mut self, limit: Duration) {
        self.deadline = Some(Instant::now() + limit);
        self.overslept = false;
        self.lines.store(0, Ordering::Relaxed);
        self.over = None;
    }

    fn exceed(&mut self, why: impl FnOnce() -> String) {
        if self.over.is_none() {
            self.over = Some(why());
        }
    }

    /// How long a sleep of `asked` may last: never past the deadline.
    pub fn sleep(&mut self, asked: Duration) -> Duration {
        let left = self
            .deadline
            .map_or(asked, |d| d.saturating_duration_since(Instant::now()));
        if asked > left {
            self.overslept = true;
        }
        asked.min(left)
    }
}

impl StoreState {
    pub fn new(plugin: Arc<str>, limits: Limits, seed: u64, stats: Arc<Stats>) -> Self {
        let budget = CallBudget::default();
        let out = GuestOutput {
            plugin: plugin.clone(),
            lines: budget.lines.clone(),
            max: limits.max_log_lines,
        };
        let wasi = WasiCtx::builder()
            .stdout(out.clone())
            .stderr(out)
            .monotonic_clock(super::sleep::Clock)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        StoreState {
            wasi,
            table: ResourceTable::new(),
            memory: MemoryCap {
                max_bytes: (limits.memory_mb as usize) << 20,
                current: 0,
                denied: false,
            },
            plugin,
            rng: seed | 1,
            stats,
            limits,
            budget,
        }
    }

    /// Count one log line; false once the call is over its cap (the call
    /// then fails when it returns: `Plugin::within_budget`).
    fn log_line(&mut self) -> bool {
        self.budget.lines.fetch_add(1, Ordering::Relaxed) < self.limits.max_log_lines
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A guest's stdout/stderr: each line becomes a log event, up to the
/// call's `max_log_lines` (counted with its `log` calls).
#[derive(Clone)]
struct GuestOutput {
    plugin: Arc<str>,
    lines: Arc<AtomicU64>,
    max: u64,
}

impl wasmtime_wasi::cli::IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn wasmtime_wasi::p2::OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(tokio::io::sink())
    }
}

#[wasmtime_wasi::async_trait]
impl wasmtime_wasi::p2::Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl wasmtime_wasi::p2::OutputStream for GuestOutput {
    fn write(&mut self, bytes: bytes::Bytes) -> wasmtime_wasi::p2::StreamResult<()> {
        let text = String::from_utf8_lossy(&bytes);
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            // Past the cap the lines are dropped; the call fails when it
            // returns (the host sees the count).
            if self.lines.fetch_add(1, Ordering::Relaxed) < self.max {
                tracing::info!(plugin = %self.plugin, "{line}");
            }
        }
        Ok(())
    }
    fn flush(&mut self) -> wasmtime_wasi::p2::StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> wasmtime_wasi::p2::StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl host::Host for StoreState {
    fn log(&mut self, level: host::Level, message: String) {
        if !self.log_line() {
            return;
        }
        let p = &*self.plugin;
        match level {
            host::Level::Trace => tracing::trace!(plugin = p, "{message}"),
            host::Level::Debug => tracing::debug!(plugin = p, "{message}"),
            host::Level::Info => tracing::info!(plugin = p, "{message}"),
            host::Level::Warn => tracing::warn!(plugin = p, "{message}"),
            host::Level::Error => tracing::error!(plugin = p, "{message}"),
        }
    }

    fn count(&mut self, name: String, delta: i64) {
        let max = self.limits.max_counters;
        if !self.stats.plugin_counter(&self.plugin, &name, delta, max) {
            self.budget
                .exceed(|| format!("more than {max} distinct counter names (max_counters)"));
        }
    }

    fn random(&mut self) -> u64 {
        // xorshift64*: fast, and reproducible under `plugins.random_seed`.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn extract_links(&mut self, html: String, base: String) -> Vec<types::Link> {
        let Ok(base) = url::Url::parse(&base) else {
            return Vec::new();
        };
        let none =
            LinkFilters::new(None, None, None, Some(&[])).expect("filters without regexes build");
        // No more links than the plugin may yield requests.
        let max = self.limits.max_requests as usize;
        links::extract(html.as_bytes(), &base, &none, max)
            .links
            .into_iter()
            .map(|l| types::Link {
                url: l.url,
                text: l.text,
            })
            .collect()
    }
}

impl types::Host for StoreState {}

impl types::HostResponse for StoreState {
    fn url(&mut self, r: Resource<ResponseRes>) -> String {
        self.with_page(&r, |p| p.page.job.url.clone())
    }
    fn response_url(&mut self, r: Resource<ResponseRes>) -> String {
        self.with_page(&r, |p| p.page.fetched.response_url.clone())
    }
    fn status(&mut self, r: Resource<ResponseRes>) -> u16 {
        self.with_page(&r, |p| p.page.fetched.status)
    }
    fn header(&mut self, r: Resource<ResponseRes>, name: String) -> Option<String> {
        self.with_page(&r, |p| p.page.fetched.header(&name).map(str::to_string))
    }
    fn headers(&mut self, r: Resource<ResponseRes>) -> Vec<(String, String)> {
        self.with_page(&r, |p| p.page.fetched.headers.clone())
    }
    fn body(&mut self, r: Resource<ResponseRes>) -> Vec<u8> {
        self.with_page(&r, |p| p.page.fetched.body.to_vec())
    }
    fn text(&mut self, r: Resource<ResponseRes>) -> String {
        self.with_page(&r, |p| {
            let f = &p.page.fetched;
            let enc = crate::fetch::encoding_of(f.header("content-type"), &f.body);
            enc.decode(&f.body).0.into_owned()
        })
    }
    fn depth(&mut self, r: Resource<ResponseRes>) -> u32 {
        self.with_page(&r, |p| p.page.job.depth)
    }
    fn maxdepth(&mut self, r: Resource<ResponseRes>) -> u32 {
        self.with_page(&r, |p| p.page.job.crawl.maxdepth)
    }
    fn meta(&mut self, r: Resource<ResponseRes>, name: String) -> Option<String> {
        self.with_page(&r, |p| p.page.meta(&name))
    }
    fn links(&mut self, r: Resource<ResponseRes>) -> Vec<types::Link> {
        self.with_page(&r, |p| p.page.links())
    }
    fn drop(&mut self, r: Resource<ResponseRes>) -> wasmtime::Result<()> {
        self.table.delete(r)?;
        Ok(())
    }
}

impl types::HostCrawlResult for StoreState {
    fn url(&mut self, r: Resource<CrawlResultRes>) -> String {
        // A result without a url or status answers "" or 0: the WIT returns plain values.
        self.with_result(&r, |f| f.str("url").unwrap_or_default().to_string())
    }
    fn status(&mut self, r: Resource<CrawlResultRes>) -> u16 {
        self.with_result(&r, |f| f.u64("status_code").unwrap_or(0) as u16)
    }
    fn field(&mut self, r: Resource<CrawlResultRes>, name: String) -> Option<String> {
        self.with_result(&r, |f| f.field(&name))
    }
    fn drop(&mut self, r: Resource<CrawlResultRes>) -> wasmtime::Result<()> {
        self.table.delete(r)?;
        Ok(())
    }
}

impl StoreState {
    /// Resources are only ever handed out by the host for the duration of a
    /// call, and a guest cannot forge one (wasmtime checks its handles), so
    /// a missing one is a host bug: the panic fails this plugin call
    /// (`crawl::page::blocking` turns it into a trap) instead of answering
    /// with a made-up value.
    fn with_page<R>(&mut self, r: &Resource<ResponseRes>, f: impl FnOnce(&ResponseRes) -> R) -> R {
        f(self
            .table
            .get(r)
            .expect("the host holds the page of its call"))
    }

    fn with_result<R>(
        &mut self,
        r: &Resource<CrawlResultRes>,
        f: impl FnOnce(&ResultJson<'_>) -> R,
    ) -> R {
        let res = self
            .table
            .get(r)
            .expect("the host holds the result of its call");
        f(&res.result.json(res.base64_body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_cap_is_on_the_sum_of_every_memory() {
        let mib = 1 << 20;
        let mut cap = MemoryCap {
            max_bytes: 10 * mib,
            current: 0,
            denied: false,
        };
        // Two memories of 4 MiB each, made (from 0), then one grown by 1.
        assert!(cap.memory_growing(0, 4 * mib, None).expect("no trap"));
        assert!(cap.memory_growing(0, 4 * mib, None).expect("no trap"));
        assert!(cap.memory_growing(4 * mib, 5 * mib, None).expect("no trap"));
        assert_eq!(cap.current, 9 * mib);
        // Each is under the cap alone; together they would pass it.
        assert!(!cap.memory_growing(4 * mib, 6 * mib, None).expect("no trap"));
        assert!(cap.denied);
        assert_eq!(cap.current, 9 * mib);
    }
}
