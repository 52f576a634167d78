//! What guests import: the `host` interface (log, count, random, links)
//! and the calls on the `response` and `crawl-result` resources, answered
//! from their host side (`resources.rs`).

use super::bindings::{host, types};
use super::plugin::field_bytes;
use super::resources::{CrawlResultRes, ResponseRes};
use super::store_data::StoreState;
use crate::links::{self, LinkFilters};
use crate::result::ResultJson;
use wasmtime::component::Resource;

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
        self.with_page(&r, ResponseRes::text)
    }
    fn select(
        &mut self,
        r: Resource<ResponseRes>,
        css: String,
    ) -> Result<Vec<types::Element>, String> {
        let found = self.with_page(&r, |p| p.select(&css));
        found.map_err(|e| e.to_string()).map(|els| {
            els.into_iter()
                .map(|e| types::Element {
                    tag: e.tag,
                    text: e.text,
                    texts: e.texts,
                    attrs: e.attrs,
                    html: e.html,
                    truncated: e.truncated,
                })
                .collect()
        })
    }
    fn emit(&mut self, r: Resource<ResponseRes>, fields: Vec<types::Field>) -> Result<(), String> {
        let bytes: u64 = fields.iter().map(|f| field_bytes(f) as u64).sum();
        let (max, max_bytes) = (self.limits.max_items, self.limits.max_output_bytes);
        let page = self
            .table
            .get_mut(&r)
            .expect("the host holds the page of its call");
        if !page.parsing {
            return Err("only a spider's parse can send records".into());
        }
        let over = if page.records.len() as u64 >= max {
            format!("more than {max} records (max_items)")
        } else if page.record_bytes + bytes > max_bytes {
            format!("more than {max_bytes} bytes of records (max_output_bytes)")
        } else {
            let mut record = Vec::with_capacity(fields.len());
            for f in fields {
                let value = serde_json::from_str(&f.value)
                    .map_err(|e| format!("record field `{}` is not JSON: {e}", f.name))?;
                record.push((f.name, value));
            }
            page.records.push(record);
            page.record_bytes += bytes;
            return Ok(());
        };
        let reason = format!("too many outputs: {over}");
        self.budget.exceed(|| reason.clone());
        Err(reason)
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
        self.with_page(&r, |p| {
            p.page
                .links()
                .iter()
                .map(|l| types::Link {
                    url: l.url.clone(),
                    text: l.text.clone(),
                })
                .collect()
        })
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
