//! A crawl with `sitemaps: true` is also seeded from its site's sitemaps
//! (contract §2.1): the `Sitemap:` lines of the seed origin's robots.txt,
//! else `/sitemap.xml`; indexes followed one level; gzip read. Every file
//! is fetched through the fetcher (address policy) and takes a throttle
//! slot of its domain like a page. Bounded by `crawl.max_sitemaps` files,
//! `crawl.max_sitemap_urls` URLs (and the crawl's `domain_max_pages`), and
//! `crawl.sitemap_timeout` for all of it. Each file is read only where
//! its own host's robots.txt allows, and its `<loc>`s are taken only on
//! its own host (or on the seed's host for a file the seed's robots.txt
//! names: the sitemaps protocol's cross-host rule). Page URLs enter the
//! crawl at depth 1 under its link filters, robots.txt, dedup and caps.

use super::Engine;
use crate::fetch::sitemap::{self, Sitemap};
use crate::fetch::Outgoing;
use crate::links;
use crate::links::domain;
use crate::politeness::throttle::Admission;
use crate::request::Job;
use std::collections::VecDeque;
use std::time::Duration;
use tokio::time::Instant;
use url::Url;

/// Index levels followed: an index's sitemaps, not an index within them.
const MAX_LEVEL: u8 = 1;

impl Engine {
    /// The seed's sitemap URLs, as requests of depth 1 with their URL.
    pub(super) async fn sitemap_children(&self, seed: &Job) -> Vec<(Job, Url)> {
        let Ok(seed_url) = Url::parse(&seed.url) else {
            return Vec::new();
        };
        let c = &self.settings.crawl;
        let deadline = Instant::now() + c.sitemap_timeout;
        let max_urls = seed
            .crawl
            .domain_max_pages
            .map_or(c.max_sitemap_urls, |m| (m as usize).min(c.max_sitemap_urls));
        let listed = self
            .fetching
            .robots
            .as_ref()
            .and_then(|r| r.rules(&seed_url))
            .map(|r| r.sitemaps().to_vec())
            .unwrap_or_default();
        // (file, index level, named by the seed's robots.txt)
        let mut files: VecDeque<(Url, u8, bool)> = if listed.is_empty() {
            seed_url
                .join("/sitemap.xml")
                .into_iter()
                .map(|u| (u, 0, false))
                .collect()
        } else {
            listed.into_iter().map(|u| (u, 0, true)).collect()
        };
        let (mut read, mut out) = (0, Vec::new());
        while let Some((file, level, named)) = files.pop_front() {
            if read >= c.max_sitemaps || out.len() >= max_urls {
                break;
            }
            read += 1;
            let Some(body) = self.sitemap_file(seed, &file, deadline).await else {
                continue;
            };
            let left = max_urls - out.len();
            let parsed = tokio::task::spawn_blocking(move || sitemap::parse(&body, left)).await;
            match parsed {
                Ok(Ok(Sitemap::Index(more))) if level < MAX_LEVEL => files.extend(
                    more.iter()
                        .filter_map(|u| Url::parse(u).ok())
                        .map(|u| (u, level + 1, false)),
                ),
                Ok(Ok(Sitemap::Index(_))) => {
                    tracing::debug!(sitemap = %file, "an index within an index is not followed")
                }
                Ok(Ok(Sitemap::Pages(urls))) => {
                    let before = out.len();
                    out.extend(
                        urls.iter()
                            .filter_map(|u| self.sitemap_child(seed, u))
                            .filter(|(_, u)| {
                                same_host(u, &file) || (named && same_host(u, &seed_url))
                            }),
                    );
                    let off_host = urls.len() - (out.len() - before);
                    if off_host > 0 {
                        tracing::debug!(sitemap = %file, dropped = off_host, "sitemap URLs off its host or outside the crawl's rules were dropped");
                    }
                }
                Ok(Err(e)) => tracing::info!(sitemap = %file, error = %e, "sitemap not read"),
                Err(e) => tracing::warn!(sitemap = %file, error = %e, "sitemap parse failed"),
            }
        }
        out.truncate(max_urls);
        tracing::debug!(url = %seed.url, files = read, urls = out.len(), "sitemaps read");
        out
    }

    /// One sitemap file's bytes once its domain's throttle lets it go, or
    /// `None` (the deadline, an error, a status other than 2xx).
    async fn sitemap_file(&self, seed: &Job, url: &Url, deadline: Instant) -> Option<bytes::Bytes> {
        if let Some(robots) = &self.fetching.robots {
            if !robots.allowed(url).await.allowed {
                tracing::info!(sitemap = %url, "sitemap not read: its host's robots.txt disallows it");
                return None;
            }
        }
        let d = domain::of_parsed(url);
        loop {
            let wait = match self.throttle.acquire(&seed.spiderid, &d).await {
                Ok(Admission::Go) => break,
                Ok(Admission::Wait(w)) => w,
                Err(e) => {
                    tracing::debug!(error = %e, "throttle unavailable for a sitemap; retrying");
                    Duration::from_millis(500)
                }
            };
            if Instant::now() + wait >= deadline {
                return None;
            }
            tokio::time::sleep(wait).await;
        }
        let agent = seed
            .crawl
            .useragent
            .clone()
            .unwrap_or_else(|| self.settings.crawl.user_agent.clone());
        let headers = [("User-Agent".to_string(), agent)];
        let out = Outgoing {
            url: url.as_str(),
            method: "GET",
            headers: &headers,
            body: None,
            follow_redirects: true,
            redirects: 0,
            truncate_at: None,
            budget: None,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, self.fetching.fetcher.fetch(&out)).await {
            Ok(Ok(f)) if (200..300).contains(&f.status) => Some(f.body),
            Ok(Ok(f)) => {
                tracing::debug!(sitemap = %url, status = f.status, "no sitemap here");
                None
            }
            Ok(Err(e)) => {
                tracing::info!(sitemap = %url, error = %e, "sitemap not fetched");
                None
            }
            Err(_) => None,
        }
    }

    /// A sitemap's page URL as a request of depth 1, if the crawl's link
    /// rules take it (http(s), not too long, its filters).
    fn sitemap_child(&self, seed: &Job, loc: &str) -> Option<(Job, Url)> {
        let url = links::canonical(Url::parse(loc).ok()?)?;
        if url.as_str().len() > links::MAX_URL_BYTES || !seed.crawl.filters().allows(&url) {
            return None;
        }
        let mut job = seed.clone();
        job.url = url.to_string();
        job.depth = 1;
        job.priority = seed.priority - 10;
        job.method = "GET".into();
        job.headers = Vec::new();
        job.body = None;
        job.meta = Vec::new();
        job.retries = 0;
        job.pauses = 0;
        job.dont_filter = false;
        job.redirected_from = None;
        job.redirects = 0;
        job.spaced = false;
        Some((job, url))
    }
}

/// Same host and port.
fn same_host(a: &Url, b: &Url) -> bool {
    a.host_str() == b.host_str() && a.port_or_known_default() == b.port_or_known_default()
}
