//! The host side of the resources guests hold handles to: a fetched page
//! (`response`) and a crawl result (`crawl-result`). Their data stays
//! here; `host_api` answers the guests' calls on them.

use crate::extract::{Bounds, Document, Element, SelectError};
use crate::fetch::Fetched;
use crate::links;
use crate::request::Job;
use crate::result::CrawlResult;
use serde_json::Value;
use std::cell::OnceCell;
use std::sync::{Arc, OnceLock};

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

    /// The page's links with the crawl's filters.
    pub(super) fn links(&self) -> &[links::Link] {
        &self.extracted().links
    }

    /// A meta value: the parent's meta first, then the crawl's own fields.
    pub(super) fn meta(&self, name: &str) -> Option<String> {
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
    pub(super) page: Page,
    /// The page parsed for selectors, once the guest first asks.
    document: OnceCell<Result<Document, SelectError>>,
    /// Data records the guest sent (`emit`) during the call, and their
    /// bytes (names and JSON texts), counted against the output caps.
    pub(super) records: Vec<Vec<(String, Value)>>,
    pub(super) record_bytes: u64,
    /// Lent to a spider's `parse`, the one call whose records are sent.
    pub(super) parsing: bool,
}

impl ResponseRes {
    pub fn new(page: Page) -> Self {
        ResponseRes {
            page,
            document: OnceCell::new(),
            records: Vec::new(),
            record_bytes: 0,
            parsing: false,
        }
    }

    /// The page as a spider's `parse` gets it: it may send records.
    pub fn parsing(page: Page) -> Self {
        ResponseRes {
            parsing: true,
            ..Self::new(page)
        }
    }

    /// The body decoded with the page's charset.
    pub(super) fn text(&self) -> String {
        let f = &self.page.fetched;
        let enc = crate::fetch::encoding_of(f.header("content-type"), &f.body);
        enc.decode(&f.body).0.into_owned()
    }

    /// The elements `css` matches, the page parsed on the first call.
    pub(super) fn select(&self, css: &str) -> Result<Vec<Element>, SelectError> {
        let bounds = Bounds::default();
        let document = self
            .document
            .get_or_init(|| Document::parse(&self.text(), &bounds));
        document
            .as_ref()
            .map_err(Clone::clone)?
            .select(css, &bounds)
    }
}

/// The `crawl-result` resource's host side: the result itself, read a
/// field at a time from its contract JSON (the body written as the sinks
/// write it); the whole JSON is never built for a pipeline.
pub struct CrawlResultRes {
    pub result: Arc<CrawlResult>,
    pub base64_body: bool,
}
