//! One request's path: expiry and robots checks, downloader middlewares,
//! fetch with retries, the spider, children to the scheduler, item
//! pipelines, the sink, and only then the lease ack.

use super::{result, Engine};
use crate::fetch::{error_chain, retryable_status, FetchError, Fetched, Hop, Outgoing};
use crate::links;
use crate::plugins::{
    CallError, ItemAction, Kind, Output, Page, RequestAction, ResponseAction, SpiderItem,
    SpiderRequest,
};
use crate::request::Job;
use crate::scheduler::{Lease, StoreError};
use serde_json::{Map, Value};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

enum Fetch {
    Got(Fetched),
    Failed(FetchError),
}

impl Engine {
    pub(super) async fn process(&self, lease: Lease) -> Result<(), StoreError> {
        let Lease { id, job } = lease;
        if job.crawl.expired(result::now_unix()) {
            self.stats.expired.fetch_add(1, Relaxed);
            return self.frontier.ack(id, None).await;
        }
        let Ok(url) = url::Url::parse(&job.url) else {
            return self
                .finish(
                    id,
                    &job,
                    None,
                    None,
                    Some(format!("invalid URL {}", job.url)),
                )
                .await;
        };
        if let Some(robots) = &self.robots {
            if !robots.allowed(&url).await {
                tracing::debug!(url = %job.url, "disallowed by robots.txt");
                self.stats.robots_denied.fetch_add(1, Relaxed);
                // The pop took a throttle slot for a request never sent.
                self.fetcher.refund_slot(&job.spiderid, &url).await;
                return self.frontier.ack(id, None).await;
            }
        }

        let (mut target, mut method, mut headers) = (
            job.url.clone(),
            job.method.clone(),
            self.request_headers(&job),
        );
        for name in &self.settings.plugins.middlewares {
            let Some(mw) = self.plugin(name, Kind::Middleware) else {
                continue;
            };
            let (u, m, h) = (target.clone(), method.clone(), headers.clone());
            match blocking(move || mw.process_request(u, m, h)).await {
                Ok(RequestAction::Proceed {
                    url,
                    method: m,
                    headers: h,
                }) => {
                    (target, method, headers) = (url, m, h);
                }
                Ok(RequestAction::Drop(reason)) => {
                    tracing::debug!(url = %job.url, middleware = %name, %reason, "request dropped");
                    self.stats.dropped.fetch_add(1, Relaxed);
                    return self.frontier.ack(id, None).await;
                }
                Err(e) => {
                    tracing::warn!(url = %job.url, error = %e, "middleware failed; request goes on unchanged")
                }
            }
        }

        let out = Outgoing {
            url: &target,
            method: &method,
            headers: &headers,
            body: job.body.as_deref(),
            follow_redirects: false,
        };
        let fetched = match self.fetcher.fetch(&out).await {
            Ok(f) => Fetch::Got(f),
            Err(e) => Fetch::Failed(e),
        };
        let retry_reason = match &fetched {
            Fetch::Got(f) if retryable_status(f.status) => Some(format!("HTTP {}", f.status)),
            Fetch::Failed(e) if e.retryable() => Some(e.to_string()),
            _ => None,
        };
        if let Some(reason) = retry_reason {
            if job.retries < self.settings.crawl.retries {
                return self.retry(id, &job, &reason).await;
            }
        }
        let fetched = match fetched {
            Fetch::Got(f) if f.location.is_some() => {
                return self.redirect(id, &job, &target, &method, &headers, f).await
            }
            Fetch::Got(f) => f,
            Fetch::Failed(e) => {
                let status = match e {
                    FetchError::TooLarge { status, .. } => status,
                    _ => 0,
                };
                let mut r = result::build(
                    &job,
                    None,
                    None,
                    Some(e.to_string()),
                    self.settings.kafka.base64_body,
                );
                r.insert("status_code".into(), status.into());
                return self.deliver(id, r).await;
            }
        };
        let page = Page {
            job: Arc::new(job.clone()),
            fetched: Arc::new(fetched),
        };

        for name in &self.settings.plugins.middlewares {
            let Some(mw) = self.plugin(name, Kind::Middleware) else {
                continue;
            };
            let p = page.clone();
            match blocking(move || mw.process_response(p)).await {
                Ok(ResponseAction::Proceed) => {}
                Ok(ResponseAction::Retry(reason)) if job.retries < self.settings.crawl.retries => {
                    return self
                        .retry(id, &job, &format!("middleware {name}: {reason}"))
                        .await;
                }
                Ok(ResponseAction::Retry(_)) => {}
                Ok(ResponseAction::Drop(reason)) => {
                    tracing::debug!(url = %job.url, middleware = %name, %reason, "response dropped");
                    self.stats.dropped.fetch_add(1, Relaxed);
                    return self.frontier.ack(id, None).await;
                }
                Err(e) => {
                    tracing::warn!(url = %job.url, error = %e, "middleware failed; response goes on unchanged")
                }
            }
        }

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
                tracing::warn!(url = %job.url, error = %e, "spider failed on this page; the crawl goes on");
                return self
                    .finish(id, &job, Some(&page.fetched), None, Some(e.to_string()))
                    .await;
            }
        };
        let mut children = Vec::new();
        let mut items = Vec::new();
        for o in outputs {
            match o {
                Output::Request(r) => {
                    children.extend(self.child(&job, &page.fetched.response_url, r))
                }
                Output::Item(i) => items.push(i),
            }
        }
        if !children.is_empty() && !job.crawl.expired(result::now_unix()) {
            self.enqueue_children(children).await?;
        }
        for item in &items {
            let r = result::build(
                &job,
                Some(&page.fetched),
                Some(item),
                None,
                self.settings.kafka.base64_body,
            );
            if let Some(r) = self.pipelines(r).await {
                self.publish(&r).await;
            }
        }
        let status = (!items.is_empty()).then_some(page.fetched.status);
        self.frontier.ack(id, status).await
    }

    /// Headers every fetch of this job carries: the crawl's user agent and
    /// cookie, then the request's own.
    fn request_headers(&self, job: &Job) -> Vec<(String, String)> {
        let mut h = Vec::with_capacity(job.headers.len() + 2);
        h.push((
            "User-Agent".to_string(),
            job.crawl
                .useragent
                .clone()
                .unwrap_or_else(|| self.settings.crawl.user_agent.clone()),
        ));
        if let Some(c) = &job.crawl.cookie {
            h.push(("Cookie".to_string(), c.clone()));
        }
        h.extend(job.headers.iter().cloned());
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
    fn child(&self, parent: &Job, base: &str, r: SpiderRequest) -> Option<Job> {
        let base = url::Url::parse(base).ok()?;
        let url = links::resolve(&base, &r.url)?;
        Some(Job {
            crawl: parent.crawl.clone(),
            url: url.into(),
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
        })
    }

    /// A redirect: the next hop is queued in this request's place, so it
    /// waits for its own throttle slot like any request. Its result reports
    /// the URL first asked for.
    async fn redirect(
        &self,
        id: u64,
        job: &Job,
        target: &str,
        method: &str,
        headers: &[(String, String)],
        f: Fetched,
    ) -> Result<(), StoreError> {
        let next = f.location.as_deref().and_then(|l| url::Url::parse(l).ok());
        let current = url::Url::parse(target).ok();
        let hop = match (next, current) {
            (Some(next), Some(url)) if (job.redirects as usize) < self.fetcher.max_redirects() => {
                let method =
                    reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::GET);
                let hop = Hop {
                    url,
                    method,
                    headers: headers.to_vec(),
                    body: job.body.clone(),
                };
                hop.redirect(f.status, next)
            }
            _ => Err(FetchError::TooManyRedirects(self.fetcher.max_redirects())),
        };
        match hop {
            Ok(hop) => {
                let mut next = job.clone();
                next.redirected_from = Some(
                    job.redirected_from
                        .clone()
                        .unwrap_or_else(|| job.url.clone()),
                );
                next.redirects += 1;
                next.url = hop.url.into();
                next.method = hop.method.to_string();
                // The crawl's own headers (user agent, cookie) are added again per hop.
                next.headers = hop
                    .headers
                    .into_iter()
                    .filter(|(k, _)| !is_crawl_header(k))
                    .collect();
                next.body = hop.body;
                next.dont_filter = true;
                self.frontier.retry(id, next).await?;
                self.wake.notify_waiters();
                Ok(())
            }
            Err(e) => {
                let r = result::build(
                    job,
                    Some(&f),
                    None,
                    Some(e.to_string()),
                    self.settings.kafka.base64_body,
                );
                self.deliver(id, r).await
            }
        }
    }

    async fn retry(&self, id: u64, job: &Job, reason: &str) -> Result<(), StoreError> {
        self.stats.retries.fetch_add(1, Relaxed);
        tracing::debug!(url = %job.url, attempt = job.retries + 1, %reason, "retrying");
        let mut again = job.clone();
        again.retries += 1;
        again.priority -= 10;
        self.frontier.retry(id, again).await?;
        self.wake.notify_waiters();
        Ok(())
    }

    /// Publish a result without spider output (errors), then ack.
    async fn finish(
        &self,
        id: u64,
        job: &Job,
        fetched: Option<&Fetched>,
        item: Option<&SpiderItem>,
        error: Option<String>,
    ) -> Result<(), StoreError> {
        let r = result::build(job, fetched, item, error, self.settings.kafka.base64_body);
        self.deliver(id, r).await
    }

    async fn deliver(&self, id: u64, r: Map<String, Value>) -> Result<(), StoreError> {
        let status = match self.pipelines(r).await {
            Some(r) => {
                self.publish(&r).await;
                Some(r.get("status_code").and_then(Value::as_u64).unwrap_or(0) as u16)
            }
            None => None,
        };
        self.frontier.ack(id, status).await
    }

    async fn publish(&self, r: &Map<String, Value>) {
        let status = r.get("status_code").and_then(Value::as_u64).unwrap_or(0) as u16;
        self.stats.page(status, r.contains_key("error"));
        if status > 0 {
            if let Some(ms) = r.get("fetch_ms").and_then(Value::as_f64) {
                self.stats.fetch_latency.observe(ms / 1000.0);
            }
        }
        if let Err(e) = self.sink.publish(r).await {
            tracing::error!(error = %error_chain(&e), "could not deliver a result");
        }
    }

    /// Run the item pipelines; `None` if one dropped the result.
    async fn pipelines(&self, mut r: Map<String, Value>) -> Option<Map<String, Value>> {
        for name in &self.settings.plugins.pipelines {
            let Some(p) = self.plugin(name, Kind::Pipeline) else {
                continue;
            };
            let fields = Arc::new(r.clone());
            match blocking(move || p.process_item(fields)).await {
                Ok(ItemAction::Keep(fields)) => r.extend(fields),
                Ok(ItemAction::Drop(reason)) => {
                    tracing::debug!(pipeline = %name, %reason, "result dropped");
                    self.stats.dropped.fetch_add(1, Relaxed);
                    return None;
                }
                Err(e) => tracing::warn!(error = %e, "pipeline failed; result goes on unchanged"),
            }
        }
        Some(r)
    }
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
