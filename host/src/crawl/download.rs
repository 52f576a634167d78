//! The fetch stage: the crawl's own headers, the fetch with its retry,
//! slow-down and redirect decisions, and rendering a page that needs it.

use super::page::*;
use super::Engine;
use crate::archive::{ArchiveError, Exchange, Owner};
use crate::config::redact;
use crate::fetch::{retryable_status, FetchError, Fetched, Hop, Outgoing};
use crate::plugins::Page;
use crate::politeness;
use crate::request::{Job, RenderMode};
use crate::result::CrawlResult;
use std::sync::Arc;
use std::time::{Duration, Instant};

impl Engine {
    /// The fetch, and what its answer means: a retry, a redirect hop, an
    /// error result, or a page for the spider.
    pub(super) async fn fetch(&self, job: &Job, req: &Request) -> Stage<Page> {
        let out = Outgoing {
            url: &req.url,
            method: &req.method,
            headers: &req.headers,
            body: job.body.as_deref(),
            follow_redirects: false,
            redirects: job.redirects as usize,
            truncate_at: None,
            budget: None,
        };
        let started = Instant::now();
        let mut fetched = self.fetching.fetcher.fetch(&out).await;
        let took = started.elapsed();
        let archived = match &mut fetched {
            Ok(f) => self.archive_fetch(job, req, f),
            Err(_) => Ok(()),
        };
        if let Err(e) = archived {
            // A full disk: fetched again later while retries last, then
            // the page is delivered with the reason (only its record is
            // missing).
            if job.retries < self.settings.crawl.retries {
                return Err(self.retry(job, &e.to_string(), Some(took)));
            }
            tracing::error!(url = %redact(&job.url), error = %e, "a page could not be archived");
            let error = Some(format!("not archived: {e}"));
            let page = fetched.ok().map(Arc::new);
            return Err(Outcome::Deliver(vec![CrawlResult::new(job, page, error)]));
        }
        if let Ok(f) = &fetched {
            if politeness::slows_down(f.status) && job.pauses < self.settings.crawl.max_pauses {
                let asked = f
                    .header("retry-after")
                    .and_then(|v| politeness::retry_after(v, std::time::SystemTime::now()));
                tracing::debug!(url = %redact(&job.url), status = f.status, ?asked, "the site asks to slow down; its domain pauses");
                let mut again = job.clone();
                again.pauses += 1;
                return Err(Outcome::SlowDown {
                    job: Box::new(again),
                    asked,
                    status: f.status,
                });
            }
        }
        let retry_reason = match &fetched {
            Ok(f) if retryable_status(f.status) => Some(format!("HTTP {}", f.status)),
            Err(e) if e.retryable() => Some(e.to_string()),
            _ => None,
        };
        if let Some(reason) = retry_reason {
            if job.retries < self.settings.crawl.retries {
                return Err(self.retry(job, &reason, Some(took)));
            }
        }
        let mut fetched = match fetched {
            Ok(f) => f,
            Err(e) => {
                let mut r = CrawlResult::new(job, None, Some(e.to_string()));
                if let FetchError::TooLarge { status, .. } = e {
                    r.status_override = Some(status);
                }
                return Err(Outcome::Deliver(vec![r]));
            }
        };
        match fetched.redirect.take() {
            Some(Ok(hop)) => Err(Outcome::Redirect(Box::new(next_hop(job, hop)))),
            Some(Err(e)) => Err(Outcome::Deliver(vec![CrawlResult::new(
                job,
                Some(Arc::new(fetched)),
                Some(e.to_string()),
            )])),
            None => Ok(Page::new(
                Arc::new(job.clone()),
                self.rendered(job, Arc::new(fetched)).await?,
                self.settings.crawl.max_links_per_page,
            )),
        }
    }

    /// The page as the crawl's `render` wants it: rendered in the headless
    /// browser (always, or under `auto` when it looks script-built) if it
    /// is an HTML success, else as fetched. A browser that failed is
    /// retried (its lease still held); a render that timed out or failed
    /// gives an error result with the plain page.
    pub(super) async fn rendered(&self, job: &Job, fetched: Arc<Fetched>) -> Stage<Arc<Fetched>> {
        let mode = job.crawl.render;
        if mode == RenderMode::Never || !renderable(&fetched) {
            return Ok(fetched);
        }
        let Some(renderer) = &self.fetching.renderer else {
            let why = "not rendered: this worker has no browser (render.enabled, render.browser)";
            return Err(Outcome::Deliver(vec![CrawlResult::new(
                job,
                Some(fetched),
                Some(why.into()),
            )]));
        };
        if mode == RenderMode::Auto && !renderer.wants(&fetched.body) {
            return Ok(fetched);
        }
        match renderer.render(&job.url, fetched.clone(), owner(job)).await {
            Ok(r) => Ok(Arc::new(r)),
            Err(e) if e.retryable() && job.retries < self.settings.crawl.retries => {
                Err(self.retry(job, &e.to_string(), Some(fetched.elapsed)))
            }
            Err(e) => {
                tracing::info!(url = %redact(&job.url), error = %e, "render failed; the plain page is delivered with the error");
                Err(Outcome::Deliver(vec![CrawlResult::new(
                    job,
                    Some(fetched),
                    Some(e.to_string()),
                )]))
            }
        }
    }

    /// Write the fetch to the archive, when the crawl keeps one; the
    /// result then says where (`warc`).
    fn archive_fetch(&self, job: &Job, req: &Request, f: &mut Fetched) -> Result<(), ArchiveError> {
        let Some(archive) = &self.fetching.archive else {
            return Ok(());
        };
        f.archived = Some(archive.write(&Exchange {
            url: &req.url,
            method: &req.method,
            request_body: job.body.as_deref(),
            fetched: f,
            owner: &owner(job),
        })?);
        Ok(())
    }

    pub(super) fn retry(&self, job: &Job, reason: &str, took: Option<Duration>) -> Outcome {
        tracing::debug!(url = %redact(&job.url), attempt = job.retries + 1, %reason, "retrying");
        let mut again = job.clone();
        again.retries += 1;
        again.priority -= 10;
        Outcome::Retry {
            job: Box::new(again),
            after: self.retry_backoff(job.retries),
            took,
        }
    }

    /// The wait before retry number `done + 1`: `crawl.retry_backoff`
    /// doubled per retry done, at most `crawl.retry_backoff_max`, of which
    /// a random half to all (so the retries of one outage spread out).
    pub(super) fn retry_backoff(&self, done: u32) -> Duration {
        let c = &self.settings.crawl;
        let full = c
            .retry_backoff
            .saturating_mul(1 << done.min(30))
            .min(c.retry_backoff_max);
        full.mul_f64(0.5 + fastrand::f64() / 2.0)
    }

    /// Headers every fetch of this job carries: the crawl's user agent and
    /// cookie, then the request's own. Credentials (the cookie, credential
    /// headers) go only to the seed's registered domain (contract §3).
    pub(super) fn request_headers(&self, job: &Job) -> Vec<(String, String)> {
        // Resolving the site costs a URL parse: only when there is a
        // credential to send.
        let credentials = job.crawl.cookie.is_some()
            || job
                .headers
                .iter()
                .any(|(k, _)| crate::fetch::is_credential_header(k));
        let trusted = credentials && job.crawl.trusts(&job.url);
        let mut h = Vec::with_capacity(job.headers.len() + 2);
        h.push((
            "User-Agent".to_string(),
            job.crawl
                .useragent
                .clone()
                .unwrap_or_else(|| self.settings.crawl.user_agent.clone()),
        ));
        if let Some(c) = job.crawl.cookie.as_ref().filter(|_| trusted) {
            h.push(("Cookie".to_string(), c.clone()));
        }
        h.extend(
            job.headers
                .iter()
                .filter(|(k, _)| trusted || !crate::fetch::is_credential_header(k))
                .cloned(),
        );
        // A revisited page asks only for a changed body (not a rendered
        // one: the browser fetches its own way).
        let conditional =
            job.crawl.revisit.is_some_and(|r| r.conditional) && job.crawl.render.is_never();
        if let Some(prior) = job.prior.as_ref().filter(|p| conditional && !p.gone) {
            h.extend(prior.validators());
        }
        h
    }
}

/// Whose fetch it is, as the archive records it.
fn owner(job: &Job) -> Owner {
    Owner {
        appid: job.crawl.appid.clone(),
        crawlid: job.crawl.crawlid.clone(),
        spiderid: job.spiderid.clone(),
        depth: job.depth,
        via: None,
    }
}

/// A response worth rendering: a success whose body is HTML.
pub(super) fn renderable(f: &Fetched) -> bool {
    (200..300).contains(&f.status)
        && f.header("content-type").is_none_or(|t| {
            let t = t.trim_start().to_ascii_lowercase();
            t.starts_with("text/html") || t.starts_with("application/xhtml")
        })
}

/// The job for a redirect's next hop (made by the fetcher): it reports the
/// URL first asked for, and the crawl's own headers (user agent, cookie)
/// are added again when it is fetched.
pub(super) fn next_hop(job: &Job, hop: Hop) -> Job {
    let mut next = job.clone();
    next.redirected_from = Some(
        job.redirected_from
            .clone()
            .unwrap_or_else(|| job.url.clone()),
    );
    next.redirects += 1;
    next.url = hop.url.into();
    next.method = hop.method.to_string();
    next.headers = hop
        .headers
        .into_iter()
        .filter(|(k, _)| !is_crawl_header(k))
        .collect();
    next.body = hop.body;
    next.dont_filter = true;
    // What was kept is the first URL's, not the next hop's.
    next.prior = None;
    next
}

/// Headers the host adds to every fetch from the crawl's settings.
pub(super) fn is_crawl_header(name: &str) -> bool {
    name.eq_ignore_ascii_case("user-agent") || name.eq_ignore_ascii_case("cookie")
}
