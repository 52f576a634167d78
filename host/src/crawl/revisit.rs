//! A revisited page in its run: its change since the last run, marked on
//! its results, and the state the store keeps for the next (carried by
//! the ack, so it costs no call of its own).

use super::Engine;
use crate::request::Job;
use crate::result::CrawlResult;
use crate::revisit::{observe, Change, Emit, PageState};

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
        let (change, page) = observe(job.prior.as_deref(), page, &fetched, revisit.change);
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
