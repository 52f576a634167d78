//! The spider stage: the spider's call on a page, its items and links,
//! and the children it asks for (depth, walks, the crawl's caps).

use super::page::*;
use super::Engine;
use crate::config::redact;
use crate::extract::{formats, Format, Formatted};
use crate::links;
use crate::links::domain;
use crate::plugins::{CallError, Kind, Output, Page, SpiderRequest};
use crate::request::Job;
use crate::result::{self, CrawlResult};
use crate::scheduler::StoreError;
use std::sync::Arc;

impl Engine {
    /// The spider: its requests are queued here (a store error is the
    /// caller's), its items become results, its records results of their
    /// own (`CrawlResult::record`).
    pub(super) async fn parse(&self, job: &Job, page: Page) -> Result<Outcome, StoreError> {
        let outputs = match self.spider(&job.spiderid).await {
            Some(spider) => {
                let p = page.clone();
                blocking(move || spider.parse(p)).await
            }
            None => Err(CallError::Guest {
                plugin: job.spiderid.clone(),
                reason: format!("no spider named `{}` is loaded", job.spiderid),
            }),
        };
        let outputs = match outputs {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(url = %redact(&job.url), error = %e, "spider failed on this page; the crawl goes on");
                return Ok(Outcome::Deliver(vec![CrawlResult::new(
                    job,
                    Some(page.fetched),
                    Some(e.to_string()),
                )]));
            }
        };
        let formatted = self.formatted(job, &page).await;
        let max = self.settings.crawl.max_links_per_page;
        let mut children = Vec::new();
        let (mut results, mut records) = (Vec::new(), Vec::new());
        let (mut refused, mut truncated) = (0, page.links_truncated());
        // Parsed once, for requests that are not among the page's links.
        let mut base: Option<Option<url::Url>> = None;
        // A page's first walk step (see `child`); any more obey maxdepth.
        let mut walked = false;
        for o in outputs {
            match o {
                Output::Request(r) if children.len() < max => {
                    let resolve = |href: &str| {
                        page.link_url(href).or_else(|| {
                            let base = base.get_or_insert_with(|| {
                                url::Url::parse(&page.fetched.response_url).ok()
                            });
                            links::resolve(base.as_ref()?, href)
                        })
                    };
                    let walk = !walked && is_walk_step(&r);
                    match self.child(job, r, walk, resolve) {
                        Some(c) => {
                            walked |= walk;
                            children.push(c)
                        }
                        None => refused += 1,
                    }
                }
                Output::Request(_) => truncated = true,
                Output::Item(mut i) => {
                    truncated |= i.links.len() > max;
                    i.links.truncate(max);
                    self.reserved_fields(&job.spiderid, &mut i.fields);
                    let mut r = CrawlResult::new(job, Some(page.fetched.clone()), None);
                    r.links = i.links;
                    r.fields = i.fields.into_iter().collect();
                    r.formatted = formatted.clone();
                    results.push(r)
                }
                Output::Record(mut fields) => {
                    self.reserved_fields(&job.spiderid, &mut fields);
                    records.push(CrawlResult::record(job, fields.into_iter().collect()));
                }
            }
        }
        if refused > 0 {
            tracing::debug!(url = %redact(&job.url), refused, "requests past maxdepth, too long or not http(s) were dropped");
        }
        for r in &mut results {
            r.links_truncated = truncated;
        }
        // The page's records go out before its own result.
        records.append(&mut results);
        let results = records;
        // `maxdepth: 0` is the seed alone: no sitemap is read.
        if job.depth == 0 && job.crawl.sitemaps && job.crawl.maxdepth > 0 {
            children.extend(self.sitemap_children(job).await);
        }
        if !children.is_empty() && !job.crawl.expired(result::now_unix()) {
            let origin = domain::of_url(&job.url);
            self.enqueue_children(children, &origin).await?;
        }
        Ok(Outcome::Deliver(results))
    }

    /// The page's `formats`, made once for all its results, off the async
    /// threads (`text` parses the page). A page that is not HTML has none
    /// of them (and no body unless `html` is asked for).
    async fn formatted(&self, job: &Job, page: &Page) -> Option<Arc<Formatted>> {
        let formats = job.crawl.formats.clone()?;
        let (fetched, main) = (page.fetched.clone(), job.crawl.main_content);
        let made = blocking(move || {
            let ctype = fetched.header("content-type").unwrap_or("text/html");
            if !ctype.to_ascii_lowercase().contains("html") {
                return Ok(Formatted {
                    no_body: !formats.contains(&Format::Html),
                    ..Formatted::default()
                });
            }
            let enc = crate::fetch::encoding_of(Some(ctype), &fetched.body);
            let body = enc.decode(&fetched.body).0;
            Ok(formats::make(&body, &fetched.response_url, &formats, main))
        });
        // A panic in the writers costs the formats, not the page: the
        // result goes out with the reason in `error`.
        Some(Arc::new(made.await.unwrap_or_else(|e| Formatted {
            error: Some(format!("no formats: {e}")),
            ..Formatted::default()
        })))
    }

    /// The spider `name`; if it is on its first compile (a new spider, or a
    /// worker just started), wait for it. A loaded spider never waits: a
    /// new version compiles while the old one serves.
    pub(super) async fn spider(&self, name: &str) -> Option<Arc<crate::plugins::Plugin>> {
        if let Some(p) = self.plugin(name, Kind::Spider) {
            return Some(p);
        }
        if !self.registry.pending(name) {
            return None;
        }
        let (registry, name) = (self.registry.clone(), name.to_string());
        tokio::task::spawn_blocking(move || {
            registry.wait_for(&name, crate::plugins::FIRST_LOAD_WAIT)
        })
        .await
        .ok()
        .flatten()
        .filter(|p| p.kind == Kind::Spider)
    }

    /// A spider's request as a queued child: resolved, canonical, one level
    /// deeper, ten priority points lower unless the spider says otherwise.
    /// `None` past the crawl's `maxdepth` (the host enforces it, whatever
    /// the spider does) unless it is the page's walk step, which is bounded
    /// by `crawl.max_walk_steps` instead; for a URL that is not http(s) or
    /// too long, or a spider name outside the contract's characters. The
    /// child comes with its URL parsed (by `resolve`), for the robots and
    /// domain checks.
    pub(super) fn child(
        &self,
        parent: &Job,
        r: SpiderRequest,
        walk: bool,
        resolve: impl FnOnce(&str) -> Option<url::Url>,
    ) -> Option<(Job, url::Url)> {
        let walks_on = walk && parent.depth < self.settings.crawl.max_walk_steps;
        if parent.depth >= parent.crawl.maxdepth && !walks_on {
            return None;
        }
        if let Some(name) = &r.spiderid {
            crate::request::check_spiderid(name).ok()?;
        }
        let url = resolve(&r.url)?;
        let job = Job {
            crawl: parent.crawl.clone(),
            url: url.to_string(),
            spiderid: r.spiderid.unwrap_or_else(|| parent.spiderid.clone()),
            priority: r.priority.unwrap_or(parent.priority - 10),
            depth: parent.depth + 1,
            method: r
                .method
                .map(|m| m.to_ascii_uppercase())
                .unwrap_or_else(|| "GET".into()),
            headers: r.headers,
            body: r.body,
            meta: r.meta,
            retries: 0,
            dont_filter: r.dont_filter,
            redirected_from: None,
            redirects: 0,
            pauses: 0,
            spaced: false,
            prior: None,
        };
        Some((job, url))
    }

    /// Drop a plugin's values for fields only the host writes; say so once
    /// per plugin.
    pub(super) fn reserved_fields<T>(&self, plugin: &str, fields: &mut Vec<(String, T)>) {
        let tried = result::strip_reserved(fields);
        if !tried.is_empty() && self.state.warned.lock().insert(plugin.to_string()) {
            tracing::warn!(plugin, fields = ?tried, "a plugin set result fields only the host writes; its values are dropped");
        }
    }
}

/// A request a spider marks as a step of its walk (meta `walk: true`): a
/// spider that follows one link per page, as the reference's wandering
/// spider, walks past `maxdepth` up to `crawl.max_walk_steps`.
pub(super) fn is_walk_step(r: &SpiderRequest) -> bool {
    r.meta
        .iter()
        .any(|(k, v)| k == WALK_META && v.trim() == "true")
}

/// The request meta entry that marks a walk step.
pub const WALK_META: &str = "walk";
