//! One request's path, as stages that each end the request with one
//! [`Outcome`] or hand it on: checks (expiry, URL, robots), request
//! middlewares, the fetch (with its retry and redirect decisions),
//! response middlewares, the spider (children go to the scheduler). The
//! stages only decide; [`Engine::settle`] acts on what they decided: it
//! runs the item pipelines, delivers results, and only then acks, requeues
//! or releases the lease. (The loop itself tells the frontier when a fetch
//! is over, and gives a lease back after a store error: `crawl/mod.rs`.)

use super::Engine;
use crate::backoff::Backoff;
use crate::config::redact;
use crate::fetch::{error_chain, retryable_status, FetchError, Fetched, Hop, Outgoing};
use crate::links;
use crate::links::domain;
use crate::plugins::{
    CallError, ItemAction, Kind, Output, Page, RequestAction, ResponseAction, SpiderRequest,
};
use crate::politeness::{self, Requeue, Sample};
use crate::request::{Job, RenderMode};
use crate::result::{self, CrawlResult};
use crate::scheduler::{Lease, StoreError};
use crate::telemetry::Event;
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// How delivering one result went.
enum Delivery {
    Done,
    /// It can never be delivered: why.
    Never(String),
    /// It could not be delivered yet and the process is stopping: the lease
    /// goes back so another worker crawls it.
    Later,
}

/// A stage's verdict: go on with `T`, or the request ends with an outcome.
type Stage<T> = Result<T, Outcome>;

/// The request as it goes out, after the request middlewares.
struct Request {
    url: String,
    method: String,
    headers: Vec<(String, String)>,
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
        if let Some(robots) = &self.robots {
            let verdict = robots.allowed(&url).await;
            if !verdict.allowed {
                tracing::debug!(url = %redact(&job.url), "disallowed by robots.txt");
                if !verdict.fetched {
                    self.refund_slot(&job.spiderid, &url).await;
                }
                return Err(Outcome::Drop(Dropped::Robots));
            }
            let crawl_delay =
                politeness::Politeness::of(&self.settings.crawl).crawl_delay(verdict.crawl_delay);
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
    /// (capped by `crawl.max_crawl_delay`) paces the domain for every
    /// worker. If the store cannot take it now, the next read of the file
    /// (`crawl.robots_ttl`) offers it again; until then the throttle alone
    /// paces the site.
    async fn share_crawl_delay(&self, url: &url::Url, delay: Option<Duration>) {
        let domain = domain::of_parsed(url);
        if let Err(e) = self.frontier.crawl_delay(&domain, delay).await {
            // Read again by the next request, which stores it then.
            tracing::warn!(%domain, error = %e, "could not store the site's Crawl-delay");
            if let Some(r) = &self.robots {
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

    /// The fetch, and what its answer means: a retry, a redirect hop, an
    /// error result, or a page for the spider.
    async fn fetch(&self, job: &Job, req: &Request) -> Stage<Page> {
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
        let fetched = self.fetcher.fetch(&out).await;
        let took = started.elapsed();
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
    async fn rendered(&self, job: &Job, fetched: Arc<Fetched>) -> Stage<Arc<Fetched>> {
        let mode = job.crawl.render;
        if mode == RenderMode::Never || !renderable(&fetched) {
            return Ok(fetched);
        }
        let Some(renderer) = &self.renderer else {
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
        match renderer.render(&job.url, fetched.clone()).await {
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

    fn retry(&self, job: &Job, reason: &str, took: Option<Duration>) -> Outcome {
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
    fn retry_backoff(&self, done: u32) -> Duration {
        let c = &self.settings.crawl;
        let full = (c.retry_backoff * 2f64.powi(done.min(30) as i32)).min(c.retry_backoff_max);
        Duration::from_secs_f64(full * (0.5 + fastrand::f64() / 2.0))
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

    /// The spider: its requests are queued here (a store error is the
    /// caller's), its items become results.
    async fn parse(&self, job: &Job, page: Page) -> Result<Outcome, StoreError> {
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
        let max = self.settings.crawl.max_links_per_page;
        let mut children = Vec::new();
        let mut results = Vec::new();
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
                    results.push(r)
                }
            }
        }
        if refused > 0 {
            tracing::debug!(url = %redact(&job.url), refused, "requests past maxdepth, too long or not http(s) were dropped");
        }
        for r in &mut results {
            r.links_truncated = truncated;
        }
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

    /// Act on an outcome: the only place a lease is acked, requeued or
    /// released. Results are acked only once delivered, or reported as
    /// undeliverable with the reason.
    pub(crate) async fn settle(&self, lease: Lease, outcome: Outcome) -> Result<(), StoreError> {
        let id = lease.id;
        tracing::debug!(url = %redact(&lease.job.url), from = %lease.job.redirected_from.as_deref().map(redact).unwrap_or_default(), lease = id, outcome = outcome.kind(), "settling");
        match outcome {
            Outcome::Deliver(results) => {
                let sample = results
                    .iter()
                    .find_map(|r| r.fetched.as_ref())
                    .and_then(|f| self.sample(f.elapsed, f.status >= 500));
                let mut status = None;
                for mut r in results {
                    r.redact_credentials =
                        !self.settings.crawl.publish_credentials.contains(&r.appid);
                    let Some(r) = self.pipelines(r).await else {
                        self.stats.emit(Event::Dropped);
                        continue;
                    };
                    match self.deliver(&r).await {
                        Delivery::Done => {
                            self.count_page(&r);
                            status.get_or_insert(r.status());
                        }
                        Delivery::Never(reason) => self.undeliverable(&r, &reason).await,
                        Delivery::Later => {
                            self.stats.emit(Event::Released);
                            return self.frontier.release(id).await;
                        }
                    }
                }
                self.frontier.ack(id, status, sample).await
            }
            // The lease is finished at once: the wait is the frontier's.
            Outcome::Retry { job, after, took } => {
                self.stats.emit(Event::Retried);
                let sample = took.and_then(|t| self.sample(t, true));
                self.frontier
                    .retry(id, *job, Requeue::After(after, sample))
                    .await
            }
            Outcome::SlowDown { job, asked } => {
                self.stats.emit(Event::Paused);
                self.frontier
                    .retry(id, *job, Requeue::PauseSite(asked))
                    .await
            }
            Outcome::Redirect(job) | Outcome::Again(job) => {
                self.frontier.retry(id, *job, Requeue::Now).await?;
                self.wake_for(1);
                Ok(())
            }
            Outcome::Drop(why) => {
                self.stats.emit(match why {
                    Dropped::Expired => Event::Expired,
                    Dropped::Robots => Event::RobotsDenied { requests: 1 },
                    Dropped::Middleware => Event::Dropped,
                });
                self.frontier.ack(id, None, None).await
            }
        }
    }

    /// A fetch's sample for the adaptive throttle, when that is on.
    fn sample(&self, latency: Duration, failed: bool) -> Option<Sample> {
        self.settings
            .crawl
            .adaptive_throttle
            .then_some(Sample { latency, failed })
    }

    /// Hand one result to the sink; a passing failure (a full disk) is
    /// retried with backoff, the lease renewed meanwhile, for at most
    /// `crawl.delivery_timeout`.
    async fn deliver(&self, r: &CrawlResult) -> Delivery {
        let limit = Duration::from_secs_f64(self.settings.crawl.delivery_timeout);
        let started = Instant::now();
        let mut backoff = Backoff::standard();
        loop {
            let e = match self.sink.publish(r).await {
                Ok(()) => return Delivery::Done,
                Err(e) if !e.retryable() => return Delivery::Never(e.to_string()),
                Err(e) => e,
            };
            if started.elapsed() >= limit {
                return Delivery::Never(format!(
                    "{e} (still failing after crawl.delivery_timeout, {limit:?})"
                ));
            }
            if self.stop.is_triggered() {
                return Delivery::Later;
            }
            tracing::warn!(url = %redact(&r.url), error = %e, "result not delivered yet; retrying");
            tokio::select! {
                _ = backoff.wait() => {}
                _ = self.stop.wait() => {}
            }
        }
    }

    /// A result that can never be delivered: reported where an operator
    /// sees it (the sink's dead letters), counted, and the lease acked,
    /// since crawling the page again would come to the same.
    async fn undeliverable(&self, r: &CrawlResult, reason: &str) {
        self.stats.emit(Event::Undelivered {
            url: &redact(&r.url),
            crawlid: &r.crawlid,
            reason,
        });
        if let Err(e) = self.sink.undeliverable(r, reason).await {
            // The event's log line is then the only trace: say so loudly.
            tracing::error!(url = %redact(&r.url), summary = %r.summary(), error = %error_chain(&e), "dead letter not delivered either");
        }
    }

    fn count_page(&self, r: &CrawlResult) {
        // Contract §3: one line per crawled page, never the body.
        self.stats.emit(Event::PageCrawled {
            status: r.status(),
            failed: r.error.is_some(),
            fetch: r.fetched.as_ref().map(|f| f.elapsed),
            crawlid: &r.crawlid,
            url: &redact(&r.url),
            spiderid: &r.spiderid,
        });
    }

    /// Run the item pipelines; `None` if one dropped the result. Each
    /// sees the result itself (shared, not copied) and reads the fields it
    /// asks for; no JSON of the whole result is built for it.
    async fn pipelines(&self, r: CrawlResult) -> Option<CrawlResult> {
        if self.settings.plugins.pipelines.is_empty() {
            return Some(r);
        }
        let mut r = Arc::new(r);
        for name in &self.settings.plugins.pipelines {
            let Some(p) = self.plugin(name, Kind::Pipeline) else {
                continue;
            };
            let (seen, base64_body) = (r.clone(), self.settings.kafka.base64_body);
            match blocking(move || p.process_item(seen, base64_body)).await {
                Ok(ItemAction::Keep(mut fields)) => {
                    self.reserved_fields(name, &mut fields);
                    // The call is over, so `r` is the only holder again.
                    Arc::make_mut(&mut r).fields.extend(fields)
                }
                Ok(ItemAction::Drop(reason)) => {
                    tracing::debug!(pipeline = %name, %reason, "result dropped");
                    return None;
                }
                Err(e) => tracing::warn!(error = %e, "pipeline failed; result goes on unchanged"),
            }
        }
        Some(Arc::try_unwrap(r).unwrap_or_else(|shared| (*shared).clone()))
    }

    /// Drop a plugin's values for fields only the host writes; say so once
    /// per plugin.
    fn reserved_fields<T>(&self, plugin: &str, fields: &mut Vec<(String, T)>) {
        let tried = result::strip_reserved(fields);
        if !tried.is_empty() && self.warned.lock().insert(plugin.to_string()) {
            tracing::warn!(plugin, fields = ?tried, "a plugin set result fields only the host writes; its values are dropped");
        }
    }

    /// Headers every fetch of this job carries: the crawl's user agent and
    /// cookie, then the request's own. Credentials (the cookie, credential
    /// headers) go only to the seed's registered domain (contract §3).
    fn request_headers(&self, job: &Job) -> Vec<(String, String)> {
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
        h
    }

    fn plugin(&self, name: &str, kind: Kind) -> Option<Arc<crate::plugins::Plugin>> {
        self.registry.get(name).filter(|p| p.kind == kind)
    }

    /// The spider `name`; if it is on its first compile (a new spider, or a
    /// worker just started), wait for it. A loaded spider never waits: a
    /// new version compiles while the old one serves.
    async fn spider(&self, name: &str) -> Option<Arc<crate::plugins::Plugin>> {
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
    fn child(
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
        };
        Some((job, url))
    }
}

impl Outcome {
    /// Its name, for the debug log.
    fn kind(&self) -> &'static str {
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
/// A response worth rendering: a success whose body is HTML.
fn renderable(f: &Fetched) -> bool {
    (200..300).contains(&f.status)
        && f.header("content-type").is_none_or(|t| {
            let t = t.trim_start().to_ascii_lowercase();
            t.starts_with("text/html") || t.starts_with("application/xhtml")
        })
}

fn unfetched(job: &Job, error: String) -> Outcome {
    Outcome::Deliver(vec![CrawlResult::new(job, None, Some(error))])
}

/// The job for a redirect's next hop (made by the fetcher): it reports the
/// URL first asked for, and the crawl's own headers (user agent, cookie)
/// are added again when it is fetched.
fn next_hop(job: &Job, hop: Hop) -> Job {
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
    next
}

/// Headers the host adds to every fetch from the crawl's settings.
fn is_crawl_header(name: &str) -> bool {
    name.eq_ignore_ascii_case("user-agent") || name.eq_ignore_ascii_case("cookie")
}

/// Run a plugin call on the blocking pool; a panic there is a failed call.
async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> Result<R, CallError> + Send + 'static,
) -> Result<R, CallError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(CallError::Trap {
            plugin: "host".into(),
            reason: format!("plugin call panicked: {e}"),
        })
    })
}

/// A request a spider marks as a step of its walk (meta `walk: true`): a
/// spider that follows one link per page, as the reference's wandering
/// spider, walks past `maxdepth` up to `crawl.max_walk_steps`.
fn is_walk_step(r: &SpiderRequest) -> bool {
    r.meta
        .iter()
        .any(|(k, v)| k == WALK_META && v.trim() == "true")
}

/// The request meta entry that marks a walk step.
pub const WALK_META: &str = "walk";
