//! One request's path, as stages that each end the request with one
//! [`Outcome`] or hand it on: checks (expiry, URL, robots), request
//! middlewares, the fetch (with its retry and redirect decisions,
//! `download.rs`), response middlewares, the spider (children go to the
//! scheduler, `spider.rs`). The stages only decide; [`Engine::settle`]
//! (`settle.rs`) acts on what they decided: it
//! runs the item pipelines, delivers results, and only then acks, requeues
//! or releases the lease. (The loop itself tells the frontier when a fetch
//! is over, and gives a lease back after a store error: `crawl/mod.rs`.)

use super::Engine;
use crate::config::redact;
use crate::plugins::{CallError, Kind, Page, RequestAction, ResponseAction};
use crate::politeness;
use crate::request::Job;
use crate::result::{self, CrawlResult};
use crate::scheduler::StoreError;
use std::sync::Arc;
use std::time::Duration;

/// What became of one request.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Results to deliver (after the pipelines); then the lease is acked.
    /// Empty: the page was handled and gave no item.
    Deliver(Vec<CrawlResult>),
    /// Queue the request again in the lease's place after `after`
    /// (network trouble, a retryable status, a middleware's wish); how
    /// long the failed fetch took, when there was one.
    Retry {
        job: Box<Job>,
        after: Duration,
        took: Option<Duration>,
    },
    /// The site answered 429 or 503: its domain pauses (for `asked`, its
    /// `Retry-After`, else its growing pause) and the request is queued
    /// again in the lease's place.
    SlowDown {
        job: Box<Job>,
        asked: Option<Duration>,
        /// 429 or 503.
        status: u16,
    },
    /// The next hop of a redirect, queued in the lease's place so it waits
    /// for its own throttle slot.
    Redirect(Box<Job>),
    /// The same request queued in the lease's place: its throttle slot
    /// went to fetching the origin's robots.txt.
    Again(Box<Job>),
    /// Nothing to deliver, on purpose: the lease is acked.
    Drop(Dropped),
}

impl Outcome {
    /// Bytes of the bodies it holds.
    pub(crate) fn body_bytes(&self) -> usize {
        match self {
            Outcome::Deliver(results) => results
                .iter()
                .filter_map(|r| r.fetched.as_ref())
                .map(|f| f.body.len())
                .sum(),
            _ => 0,
        }
    }
}

/// Why a request ended without a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dropped {
    Expired,
    Robots,
    Middleware,
}

/// A stage's verdict: go on with `T`, or the request ends with an outcome.
pub(super) type Stage<T> = Result<T, Outcome>;

/// The request as it goes out, after the request middlewares.
pub(super) struct Request {
    pub(super) url: String,
    pub(super) method: String,
    pub(super) headers: Vec<(String, String)>,
}

impl Engine {
    /// Run the request's stages to their outcome. A store error (queuing
    /// children) leaves the outcome undecided: the caller gives the lease
    /// back.
    pub(crate) async fn process(&self, job: &Job) -> Result<Outcome, StoreError> {
        match self.fetch_stages(job).await {
            Ok(page) => self.parse(job, page).await,
            Err(outcome) => Ok(outcome),
        }
    }

    /// Everything up to a page for the spider.
    async fn fetch_stages(&self, job: &Job) -> Stage<Page> {
        self.admit(job).await?;
        let req = self.request_middlewares(job).await?;
        let page = self.fetch(job, &req).await?;
        self.response_middlewares(job, &page).await?;
        Ok(page)
    }

    /// Expiry, a parseable URL, robots.txt.
    async fn admit(&self, job: &Job) -> Stage<()> {
        if job.crawl.expired(result::now_unix()) {
            return Err(Outcome::Drop(Dropped::Expired));
        }
        let Ok(url) = url::Url::parse(&job.url) else {
            return Err(unfetched(job, format!("invalid URL {}", job.url)));
        };
        // A spider nobody has loaded: no fetch at all, so made-up names
        // (each with a throttle bucket of its own) cannot multiply a
        // domain's rate. The request still gets its error result.
        if self.spider(&job.spiderid).await.is_none() {
            self.refund_slot(&job.spiderid, &url).await;
            let error = format!("no spider named `{}` is loaded", job.spiderid);
            return Err(unfetched(job, error));
        }
        if let Some(robots) = &self.fetching.robots {
            let verdict = robots.allowed(&url).await;
            if !verdict.allowed {
                tracing::debug!(url = %redact(&job.url), "disallowed by robots.txt");
                if !verdict.fetched {
                    self.refund_slot(&job.spiderid, &url).await;
                }
                return Err(Outcome::Drop(Dropped::Robots));
            }
            let crawl_delay =
                politeness::Politeness::of(&self.settings.crawl, &self.settings.throttle)
                    .crawl_delay(verdict.crawl_delay);
            if verdict.fetched {
                self.share_crawl_delay(&url, crawl_delay).await;
                // robots.txt took this request's throttle slot.
                return Err(Outcome::Again(Box::new(job.clone())));
            }
            if !job.spaced && crawl_delay.is_some() {
                // Leased before the store knew the site's Crawl-delay: back
                // to the queue, to be spaced like the rest.
                self.refund_slot(&job.spiderid, &url).await;
                return Err(Outcome::Again(Box::new(job.clone())));
            }
        }
        Ok(())
    }

    /// robots.txt was just read for `url`'s origin: its `Crawl-delay`
    /// (capped by `crawl.max_crawl_delay`) paces that origin, not its
    /// whole domain, for every worker. If the store cannot take it now,
    /// the next read of the file (`crawl.robots_ttl`) offers it again;
    /// until then the throttle alone paces the site.
    async fn share_crawl_delay(&self, url: &url::Url, delay: Option<Duration>) {
        let origin = url.origin().ascii_serialization();
        if let Err(e) = self.frontier.crawl_delay(&origin, delay).await {
            // Read again by the next request, which stores it then.
            tracing::warn!(%origin, error = %e, "could not store the site's Crawl-delay");
            if let Some(r) = &self.fetching.robots {
                r.forget(url);
            }
        }
    }

    /// The pop took a throttle slot for a request that is never sent.
    async fn refund_slot(&self, spider: &str, url: &url::Url) {
        let domain = crate::links::domain::registered(url.host_str().unwrap_or_default());
        if let Err(e) = self.throttle.refund(spider, &domain).await {
            // At worst the domain waits one slot longer than it had to.
            tracing::debug!(error = %e, "could not refund a throttle slot");
        }
    }

    async fn request_middlewares(&self, job: &Job) -> Stage<Request> {
        let mut req = Request {
            url: job.url.clone(),
            method: job.method.clone(),
            headers: self.request_headers(job),
        };
        for name in &self.settings.plugins.middlewares {
            let Some(mw) = self.plugin(name, Kind::Middleware) else {
                continue;
            };
            let (u, m, h) = (req.url.clone(), req.method.clone(), req.headers.clone());
            match blocking(move || mw.process_request(u, m, h)).await {
                Ok(RequestAction::Proceed {
                    url,
                    method,
                    headers,
                }) => {
                    req = Request {
                        url,
                        method,
                        headers,
                    }
                }
                Ok(RequestAction::Drop(reason)) => {
                    tracing::debug!(url = %redact(&job.url), middleware = %name, %reason, "request dropped");
                    return Err(Outcome::Drop(Dropped::Middleware));
                }
                // A failing middleware is reported and skipped: the request
                // goes on as it was, so nothing is lost.
                Err(e) => {
                    tracing::warn!(url = %redact(&job.url), error = %e, "middleware failed; request goes on unchanged")
                }
            }
        }
        Ok(req)
    }

    async fn response_middlewares(&self, job: &Job, page: &Page) -> Stage<()> {
        for name in &self.settings.plugins.middlewares {
            let Some(mw) = self.plugin(name, Kind::Middleware) else {
                continue;
            };
            let p = page.clone();
            match blocking(move || mw.process_response(p)).await {
                Ok(ResponseAction::Proceed) => {}
                Ok(ResponseAction::Retry(reason)) if job.retries < self.settings.crawl.retries => {
                    let why = format!("middleware {name}: {reason}");
                    return Err(self.retry(job, &why, Some(page.fetched.elapsed)));
                }
                Ok(ResponseAction::Retry(_)) => {}
                Ok(ResponseAction::Drop(reason)) => {
                    tracing::debug!(url = %redact(&job.url), middleware = %name, %reason, "response dropped");
                    return Err(Outcome::Drop(Dropped::Middleware));
                }
                Err(e) => {
                    tracing::warn!(url = %redact(&job.url), error = %e, "middleware failed; response goes on unchanged")
                }
            }
        }
        Ok(())
    }

    pub(super) fn plugin(&self, name: &str, kind: Kind) -> Option<Arc<crate::plugins::Plugin>> {
        self.registry.get(name).filter(|p| p.kind == kind)
    }
}

impl Outcome {
    /// Its name, for the debug log.
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Outcome::Deliver(_) => "deliver",
            Outcome::Retry { .. } => "retry",
            Outcome::SlowDown { .. } => "slow down",
            Outcome::Redirect(_) => "redirect",
            Outcome::Again(_) => "again",
            Outcome::Drop(_) => "drop",
        }
    }
}

/// A request that ends, unfetched, in an error result.
pub(super) fn unfetched(job: &Job, error: String) -> Outcome {
    Outcome::Deliver(vec![CrawlResult::new(job, None, Some(error))])
}

/// Run a plugin call on the blocking pool; a panic there is a failed call.
pub(super) async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> Result<R, CallError> + Send + 'static,
) -> Result<R, CallError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(CallError::Trap {
            plugin: "host".into(),
            reason: format!("plugin call panicked: {e}"),
        })
    })
}
