//! Acting on an outcome ([`Engine::settle`]): the item pipelines, delivery
//! of each result, then the ack, requeue or pause of the lease.

use super::page::*;
use super::Engine;
use crate::backoff::Backoff;
use crate::bus::SinkError;
use crate::config::redact;
use crate::fetch::error_chain;
use crate::plugins::{ItemAction, Kind};
use crate::politeness::{Requeue, Sample};
use crate::request::Job;
use crate::result::CrawlResult;
use crate::scheduler::{Acked, Lease, StoreError};
use crate::telemetry::Event;
use std::sync::Arc;
use std::time::{Duration, Instant};

impl Engine {
    /// Act on an outcome: the only place a lease is acked, requeued or
    /// released. Results are acked only once delivered, or reported as
    /// undeliverable with the reason.
    pub(crate) async fn settle(&self, lease: Lease, outcome: Outcome) -> Result<(), StoreError> {
        let id = lease.id;
        tracing::debug!(url = %redact(&lease.job.url), from = %lease.job.redirected_from.as_deref().map(redact).unwrap_or_default(), lease = id, outcome = outcome.kind(), "settling");
        // The fetch's records are on disk before its lease moves on (one
        // fsync for all the pages settling at once); if they cannot be,
        // the request goes back to be crawled again.
        if let Some(a) = &self.fetching.archive {
            if let Err(e) = a.durable().await {
                tracing::warn!(url = %redact(&lease.job.url), error = %e, "records not on disk; the request goes back to the queue");
                self.stats.emit(Event::Released);
                return self.frontier.release(id).await;
            }
        }
        match outcome {
            Outcome::Deliver(results) => self.deliver_all(&lease, results).await,
            // The lease is finished at once: the wait is the frontier's.
            Outcome::Retry { job, after, took } => {
                self.stats.emit(Event::Retried);
                let sample = took.and_then(|t| self.sample(t, true));
                self.frontier
                    .retry(id, *job, Requeue::After(after, sample))
                    .await
            }
            Outcome::SlowDown { job, asked, status } => {
                self.slow_down(id, *job, asked, status).await
            }
            Outcome::Redirect(job) | Outcome::Again(job) => {
                self.frontier.retry(id, *job, Requeue::Now).await?;
                self.wake_for(1);
                Ok(())
            }
            Outcome::Drop(why) => self.drop_request(id, why).await,
        }
    }

    /// Deliver a page's results (through the item pipelines), then ack
    /// the lease with what the run's figures need; released if a result
    /// must wait for the sink. A revisited page unchanged (quiet) is acked
    /// without sending.
    async fn deliver_all(
        &self,
        lease: &Lease,
        mut results: Vec<CrawlResult>,
    ) -> Result<(), StoreError> {
        let id = lease.id;
        let sample = results
            .iter()
            .find_map(|r| r.fetched.as_ref())
            .and_then(|f| self.sample(f.elapsed, f.status >= 500));
        let revisited = self.revisited(&lease.job, &mut results);
        let quiet = revisited.as_ref().is_some_and(|r| r.quiet);
        let mut acked = Acked {
            sample,
            bytes: results
                .iter()
                .find_map(|r| r.fetched.as_ref())
                .map_or(0, |f| f.body.len() as u64),
            error: results.iter().any(|r| r.error.is_some()).then_some("fetch"),
            ..Acked::default()
        };
        for mut r in results {
            if quiet {
                // The same as the last run: counted in the run's
                // figures, not sent (nor are its records).
                if !r.record {
                    acked.status.get_or_insert(r.status());
                }
                continue;
            }
            r.redact_credentials = !self.settings.crawl.publish_credentials.contains(&r.appid);
            let Some(r) = self.pipelines(r).await else {
                self.stats.emit(Event::Dropped);
                continue;
            };
            match self.deliver(&r).await {
                Delivery::Done if r.record => self.stats.emit(Event::RecordSent),
                Delivery::Done => {
                    self.count_page(&r);
                    acked.status.get_or_insert(r.status());
                }
                Delivery::Never(reason) => {
                    self.undeliverable(&r, &reason).await;
                    acked.error = Some("undelivered");
                }
                Delivery::Later => {
                    self.stats.emit(Event::Released);
                    return self.frontier.release(id).await;
                }
            }
        }
        if let Some(r) = revisited {
            acked.change = Some(r.change);
            acked.page = Some(r.page);
        }
        self.frontier.ack(id, acked).await
    }

    /// A 429 or 503: the site paused (for as long as it `asked`, if it
    /// did), the pause noted for its crawl's event, the request queued
    /// again.
    async fn slow_down(
        &self,
        id: u64,
        job: Job,
        asked: Option<Duration>,
        status: u16,
    ) -> Result<(), StoreError> {
        self.stats.emit(Event::Paused { status });
        let origin = crate::links::domain::origin_of(&job.url);
        let crawl = (job.crawl.appid.clone(), job.crawl.crawlid.clone());
        self.pauses.note(crawl, job.crawl.run, origin, status);
        self.frontier
            .retry(id, job, Requeue::PauseSite(asked))
            .await
    }

    /// A request not crawled (expired, refused by robots.txt, dropped by
    /// a middleware): counted, and its lease acked with the reason.
    async fn drop_request(&self, id: u64, why: Dropped) -> Result<(), StoreError> {
        self.stats.emit(match why {
            Dropped::Expired => Event::Expired,
            Dropped::Robots => Event::RobotsDenied { requests: 1 },
            Dropped::Middleware => Event::Dropped,
        });
        let error = match why {
            Dropped::Expired => "expired",
            Dropped::Robots => "robots",
            Dropped::Middleware => "dropped",
        };
        let acked = Acked {
            error: Some(error),
            ..Acked::default()
        };
        self.frontier.ack(id, acked).await
    }

    /// A fetch's sample for the adaptive throttle, when that is on.
    pub(super) fn sample(&self, latency: Duration, failed: bool) -> Option<Sample> {
        self.settings
            .crawl
            .adaptive_throttle
            .then_some(Sample { latency, failed })
    }

    /// Hand one result to the sink; a passing failure (a full disk) is
    /// retried with backoff, the lease renewed meanwhile, for at most
    /// `crawl.delivery_timeout`.
    pub(super) async fn deliver(&self, r: &CrawlResult) -> Delivery {
        let limit = self.settings.crawl.delivery_timeout;
        let started = Instant::now();
        let mut backoff = Backoff::standard();
        loop {
            let e = match self.sink.publish(r).await {
                Ok(()) => return Delivery::Done,
                Err(e) if !e.retryable() => return Delivery::Never(e.to_string()),
                Err(e) => e,
            };
            if started.elapsed() >= limit && matches!(e, SinkError::Unavailable(_)) {
                tracing::warn!(url = %redact(&r.url), error = %e, "result not delivered within crawl.delivery_timeout; the request goes back to the queue");
                return Delivery::Later;
            }
            if started.elapsed() >= limit {
                return Delivery::Never(format!(
                    "{e} (still failing after crawl.delivery_timeout, {limit:?})"
                ));
            }
            if self.state.stop.is_triggered() {
                return Delivery::Later;
            }
            tracing::warn!(url = %redact(&r.url), error = %e, "result not delivered yet; retrying");
            tokio::select! {
                _ = backoff.wait() => {}
                _ = self.state.stop.wait() => {}
            }
        }
    }

    /// A result that can never be delivered: reported where an operator
    /// sees it (the sink's dead letters), counted, and the lease acked,
    /// since crawling the page again would come to the same.
    pub(super) async fn undeliverable(&self, r: &CrawlResult, reason: &str) {
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

    pub(super) fn count_page(&self, r: &CrawlResult) {
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
    pub(super) async fn pipelines(&self, r: CrawlResult) -> Option<CrawlResult> {
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
}

/// How delivering one result went.
pub(super) enum Delivery {
    Done,
    /// It can never be delivered: why.
    Never(String),
    /// It could not be delivered yet and the process is stopping: the lease
    /// goes back so another worker crawls it.
    Later,
}
