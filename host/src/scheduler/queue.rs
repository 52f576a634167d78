//! One queue of the embedded frontier (a spider's requests for one
//! origin), each crawl's requests kept apart and the least served crawl
//! popped first: crawls sharing a site share its budget fairly whatever
//! their sizes or priorities; within a crawl, higher priority first, then
//! first come. The Redis frontier does the same in `store/frontier.lua`
//! (`queue_push`, `queue_pop`).

use crate::request::{CrawlKey, Job};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap};

/// A queued request: higher priority first; among equals, first come
/// first served.
pub(super) struct Queued {
    pub priority: i32,
    pub seq: u64,
    pub job: Job,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority
            .cmp(&other.priority)
            .then(other.seq.cmp(&self.seq))
    }
}

/// One crawl's requests in a queue, and the fetches it has been served,
/// each counting 1/weight of its app.
struct Lane {
    served: f64,
    jobs: BinaryHeap<Queued>,
}

#[derive(Default)]
pub(super) struct FairQueue {
    lanes: BTreeMap<CrawlKey, Lane>,
}

impl FairQueue {
    /// A crawl that joins starts half a fetch behind the least served, so
    /// it goes after it and then they alternate.
    pub fn push(&mut self, q: Queued) {
        let least = self.lanes.values().map(|l| l.served).min_by(f64::total_cmp);
        self.lanes
            .entry(q.job.crawl.key())
            .or_insert_with(|| Lane {
                served: least.map_or(0.0, |s| s + 0.5),
                jobs: BinaryHeap::new(),
            })
            .jobs
            .push(q);
    }

    /// The crawl to serve next: the least served whose app `may` have
    /// another fetch; `None` if there is none.
    fn pick(&self, may: impl Fn(&str) -> bool) -> Option<&CrawlKey> {
        self.lanes
            .iter()
            .filter(|(k, _)| may(&k.appid))
            .min_by(|a, b| a.1.served.total_cmp(&b.1.served))
            .map(|(k, _)| k)
    }

    /// Can a request be popped, apps being held by `may`?
    pub fn can_pop(&self, may: impl Fn(&str) -> bool) -> bool {
        self.pick(may).is_some()
    }

    /// The least served crawl's best request, of an app that `may` have
    /// another fetch; `weight` is an app's.
    pub fn pop(
        &mut self,
        weight: impl Fn(&str) -> u32,
        may: impl Fn(&str) -> bool,
    ) -> Option<Queued> {
        let key = self.pick(may)?.clone();
        let lane = self.lanes.get_mut(&key)?;
        let q = lane.jobs.pop();
        lane.served += 1.0 / f64::from(weight(&key.appid).max(1));
        if lane.jobs.is_empty() {
            self.lanes.remove(&key);
        }
        q
    }

    pub fn is_empty(&self) -> bool {
        self.lanes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::CrawlRequest;

    fn queued(appid: &str, crawlid: &str, seq: u64) -> Queued {
        let json = format!(
            r#"{{"url":"http://a.example/{seq}","appid":"{appid}","crawlid":"{crawlid}"}}"#
        );
        let job = CrawlRequest::parse(&json, 3).expect("valid").into_seed();
        Queued {
            priority: job.priority,
            seq,
            job,
        }
    }

    #[test]
    fn a_small_crawl_joining_a_big_one_gets_every_other_request() {
        let mut q = FairQueue::default();
        for i in 0..100 {
            q.push(queued("app", "big", i));
        }
        let first = q.pop(|_| 1, |_| true).expect("queued");
        assert_eq!(first.job.crawl.crawlid, "big");
        for i in 100..103 {
            q.push(queued("app", "small", i));
        }
        let order: Vec<String> = (0..6)
            .map(|_| {
                q.pop(|_| 1, |_| true)
                    .expect("queued")
                    .job
                    .crawl
                    .crawlid
                    .clone()
            })
            .collect();
        assert_eq!(order, ["big", "small", "big", "small", "big", "small"]);
        assert!(!q.is_empty());
    }

    #[test]
    fn an_app_of_weight_three_gets_three_requests_for_one() {
        let mut q = FairQueue::default();
        for i in 0..40 {
            q.push(queued("heavy", "h", i));
            q.push(queued("light", "l", 100 + i));
        }
        let weight = |app: &str| if app == "heavy" { 3 } else { 1 };
        let apps: Vec<String> = (0..20)
            .map(|_| {
                q.pop(weight, |_| true)
                    .expect("queued")
                    .job
                    .crawl
                    .appid
                    .clone()
            })
            .collect();
        let heavy = apps.iter().filter(|a| *a == "heavy").count();
        assert_eq!(heavy, 15, "{apps:?}");
    }

    #[test]
    fn an_app_at_its_cap_is_passed_over_for_the_next() {
        let mut q = FairQueue::default();
        q.push(queued("full", "f", 0));
        q.push(queued("other", "o", 1));
        let may = |app: &str| app != "full";
        assert!(q.can_pop(may));
        let got = q.pop(|_| 1, may).expect("queued");
        assert_eq!(got.job.crawl.appid, "other");
        assert!(!q.can_pop(may), "only the full app's request is left");
        assert!(q.pop(|_| 1, may).is_none());
    }
}
