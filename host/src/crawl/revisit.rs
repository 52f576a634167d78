//! A recurring crawl in the loop: a run queued (its seed and the pages the
//! last run knew), a revisited page's change since the last run marked on
//! its results with the state the store keeps for the next (carried by
//! the ack, so it costs no call of its own), and pages a run did not reach
//! reported `removed`.

use super::Engine;
use crate::links::domain;
use crate::request::Job;
use crate::result::CrawlResult;
use crate::revisit::{observe, Change, Emit, PageState};
use crate::scheduler::{Candidate, StoreError};
use std::sync::Arc;

/// What one fetch of a revisited page made of it.
pub(super) struct Revisited {
    pub(super) change: Change,
    pub(super) page: PageState,
    /// Its results are not sent (`emit: changed` and it is the same).
    pub(super) quiet: bool,
}

impl Engine {
    /// Mark `results` with the page's change; `None` when the crawl is not
    /// revisited or nothing was fetched (a failure tells nothing of the
    /// page: what was kept stays).
    pub(super) fn revisited(&self, job: &Job, results: &mut [CrawlResult]) -> Option<Revisited> {
        let revisit = job.crawl.revisit?;
        let fetched = results.iter().find_map(|r| r.fetched.clone())?;
        let page = (job.url.as_str(), job.depth, job.crawl.run);
        let how = (revisit.change, revisit.adaptive.as_ref());
        let (change, page) = observe(job.prior.as_deref(), page, &fetched, how);
        for r in results.iter_mut() {
            r.change = Some(change);
        }
        Some(Revisited {
            change,
            page,
            quiet: revisit.emit == Emit::Changed && change == Change::Same,
        })
    }
}

impl Engine {
    /// Queue run `seed.crawl.run` of a recurring crawl: its seed, and every
    /// page the last run knew (`known`), so a page that answers 304 still
    /// leads to those under it. One store call, so the run cannot seem
    /// over before all of it is queued. Pages `resting` this run
    /// (`adaptive`) are marked seen first, so no link queues them either.
    /// Returns how many were queued.
    pub async fn submit_run(
        &self,
        seed: Job,
        known: &[Arc<PageState>],
        resting: &[Arc<PageState>],
    ) -> Result<usize, StoreError> {
        let global = self.settings.crawl.global_page_per_domain_limit;
        let global_cap = (global > 0).then_some(global);
        let key = seed.crawl.key();
        let page_job = |p: &Arc<PageState>| Job {
            url: p.url.clone(),
            depth: p.depth,
            priority: seed.priority - 10 * p.depth.min(10) as i32,
            method: "GET".into(),
            headers: Vec::new(),
            body: None,
            prior: Some(p.clone()),
            ..seed.clone()
        };
        if !resting.is_empty() {
            let seen: Vec<Candidate> = resting
                .iter()
                .map(|p| Candidate {
                    fingerprint: page_job(p).fingerprint(),
                    domain: domain::of_url(&p.url),
                    domain_cap: None,
                    global_cap: None,
                    force: true,
                })
                .collect();
            self.dedup.admit(&key, &seen).await?;
        }
        // Each page carries what was kept of it, so its validators reach
        // the worker that pops it (a shared store keeps no other copy on
        // the way); the seed is one of the pages.
        let first = Job {
            prior: known.iter().find(|p| p.url == seed.url).cloned(),
            ..seed.clone()
        };
        let pages = known.iter().filter(|p| p.url != seed.url).map(page_job);
        let jobs: Vec<Job> = std::iter::once(first).chain(pages).collect();
        let cands: Vec<Candidate> = jobs
            .iter()
            .enumerate()
            .map(|(i, j)| Candidate {
                fingerprint: j.fingerprint(),
                domain: domain::of_url(&j.url),
                domain_cap: if i == 0 {
                    None
                } else {
                    j.crawl.domain_max_pages
                },
                global_cap,
                force: i == 0,
            })
            .collect();
        let n = self
            .dedup
            .admit_and_push(&*self.frontier, &key, &cands, jobs, "")
            .await?;
        self.wake_for(n);
        Ok(n)
    }

    /// Report pages the last run knew and run `seed.crawl.run` did not
    /// reach, each as a result marked `removed`; how many were delivered.
    /// (No lease holds them: one that cannot be delivered is reported as
    /// undeliverable, as any result.)
    pub async fn deliver_removed(&self, seed: &Job, pages: &[std::sync::Arc<PageState>]) -> u64 {
        let mut delivered = 0;
        for p in pages {
            let job = Job {
                url: p.url.clone(),
                depth: p.depth,
                ..seed.clone()
            };
            let mut r = CrawlResult::new(&job, None, None);
            r.change = Some(Change::Removed);
            r.request_headers.clear();
            match self.deliver(&r).await {
                super::settle::Delivery::Done => delivered += 1,
                super::settle::Delivery::Never(reason) => self.undeliverable(&r, &reason).await,
                super::settle::Delivery::Later => {
                    self.undeliverable(&r, "stopping before it was delivered")
                        .await
                }
            }
        }
        delivered
    }
}
