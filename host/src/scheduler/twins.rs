//! The twins proven equal: one set of politeness and lease scenarios run
//! in process against the embedded frontier and against the Redis one on
//! a real `redis-server` (started on a free loopback port, as `just test`'s
//! setup installs it). Each scenario is a script of frontier calls whose
//! pops are written down as [`Step`]s; both stores must write the same.

use super::{EmbeddedFrontier, Frontier, Pop, RedisFrontier, WorkerCard};
use crate::config::Settings;
use crate::politeness::throttle::EmbeddedThrottle;
use crate::politeness::{Politeness, Requeue};
use crate::request::{CrawlRequest, Job};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// What one pop found, in a form both stores can match: a lease by its
/// URL's path, or a wait in tenths of a second (rounded up).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Leased(String),
    Wait(u64),
    Idle,
    /// Queued and in flight, as `counts` says.
    Counts(u64, u64),
}

/// The settings both stores run under: no throttle in the way, short
/// pauses, one fetch per site at a time.
fn settings(redis_url: &str, namespace: &str) -> Settings {
    let mut s = Settings::default();
    s.redis.url = redis_url.to_string();
    s.redis.namespace = namespace.to_string();
    s.throttle.hits = 10_000;
    s.throttle.window = Duration::from_secs(1);
    s.throttle.moderated = false;
    s.crawl.pause_first = Duration::from_millis(200);
    s.crawl.max_pause = Duration::from_millis(800);
    s.crawl.max_in_flight = 1;
    s
}

/// A frontier under test and the leases it handed out, by path.
struct Twin {
    frontier: Arc<dyn Frontier>,
    leases: HashMap<String, u64>,
    steps: Vec<Step>,
}

impl Twin {
    async fn push(&mut self, paths: &[&str]) {
        self.push_of("c", paths).await;
    }

    async fn push_of(&mut self, crawlid: &str, paths: &[&str]) {
        let jobs = paths.iter().map(|p| job_of(crawlid, p)).collect();
        self.frontier.push(jobs).await.expect("push");
    }

    async fn pop(&mut self) {
        let step = match self.frontier.pop().await.expect("pop") {
            Pop::Leased(l) => {
                let path = url::Url::parse(&l.job.url).expect("url").path().to_string();
                self.leases.insert(path.clone(), l.id);
                Step::Leased(path)
            }
            Pop::Wait(d) => Step::Wait(d.as_millis().div_ceil(100) as u64),
            Pop::Idle => Step::Idle,
        };
        self.steps.push(step);
    }

    /// Pop until something is leased (the wait before it is not written
    /// down: how long it took is the scenario's `Wait` step).
    async fn pop_leased(&mut self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match self.frontier.pop().await.expect("pop") {
                Pop::Leased(l) => {
                    let path = url::Url::parse(&l.job.url).expect("url").path().to_string();
                    self.leases.insert(path.clone(), l.id);
                    self.steps.push(Step::Leased(path));
                    return;
                }
                Pop::Wait(d) => tokio::time::sleep(d.min(Duration::from_millis(50))).await,
                Pop::Idle => panic!("nothing queued"),
            }
            assert!(tokio::time::Instant::now() < deadline, "never leased");
        }
    }

    /// The path of the last step, a lease.
    fn last_leased(&self) -> String {
        match self.steps.last() {
            Some(Step::Leased(path)) => path.clone(),
            other => panic!("not leased: {other:?}"),
        }
    }

    fn lease(&self, path: &str) -> u64 {
        self.leases[path]
    }

    async fn ack(&mut self, path: &str, status: u16) {
        let id = self.lease(path);
        self.frontier
            .ack(
                id,
                crate::scheduler::Acked {
                    status: Some(status),
                    ..Default::default()
                },
            )
            .await
            .expect("ack");
    }

    /// The fetch of `path`'s lease is over (its site may take another).
    async fn fetched(&mut self, path: &str) {
        let id = self.lease(path);
        self.frontier.fetched(id).await;
    }

    async fn release(&mut self, path: &str) {
        let id = self.lease(path);
        self.frontier.release(id).await.expect("release");
    }

    async fn counts(&mut self) {
        let c = self.frontier.counts().await.expect("counts");
        self.steps.push(Step::Counts(c.queued, c.in_flight));
    }

    async fn retry(&mut self, path: &str, when: Requeue) {
        let id = self.lease(path);
        self.frontier
            .retry(id, job(path), when)
            .await
            .expect("retry");
    }
}

fn job(path: &str) -> Job {
    job_of("c", path)
}

/// A request of crawl `crawlid` (of another app than `job`'s unless "c").
fn job_of(crawlid: &str, path: &str) -> Job {
    let app = if crawlid == "c" { "app" } else { "other" };
    let json =
        format!(r#"{{"url":"http://twins.example{path}","appid":"{app}","crawlid":"{crawlid}"}}"#);
    CrawlRequest::parse(&json, 3).expect("valid").into_seed()
}

/// A scenario: what it does to a frontier, and the steps it must write.
type Scenario = fn(&mut Twin) -> futures::future::BoxFuture<'_, ()>;

/// Politeness after a 429: the site's rate cut, its pauses.
fn slow_down_scenarios() -> Vec<(&'static str, Scenario, Vec<Step>)> {
    use Step::*;
    let leased = |p: &str| Leased(p.to_string());
    vec![
        (
            "a 429 cuts the site's rate (its spacing from now), then pauses it longer each time in a row, Retry-After capped",
            |t| {
                Box::pin(async move {
                    t.push(&["/a"]).await;
                    t.pop().await;
                    t.retry("/a", Requeue::PauseSite(None)).await;
                    t.pop().await;
                    t.pop_leased().await;
                    t.retry("/a", Requeue::PauseSite(None)).await;
                    t.pop().await;
                    t.pop_leased().await;
                    t.retry("/a", Requeue::PauseSite(Some(Duration::from_secs(60))))
                        .await;
                    t.pop().await;
                })
            },
            vec![
                leased("/a"),
                Wait(10),
                leased("/a"),
                Wait(2),
                leased("/a"),
                Wait(8),
            ],
        ),
        (
            "a 429 to a fetch started before the last cut does not cut again; a success raises the rate",
            |t| {
                Box::pin(async move {
                    t.push(&["/a", "/b"]).await;
                    t.pop().await;
                    t.fetched("/a").await;
                    t.pop().await;
                    t.retry("/a", Requeue::PauseSite(None)).await;
                    t.retry("/b", Requeue::PauseSite(None)).await;
                    t.pop().await;
                    t.pop_leased().await;
                    t.ack("/a", 200).await;
                    t.pop().await;
                    t.pop_leased().await;
                })
            },
            // 1/s after the cut; 2/s after one success in slow start.
            vec![
                leased("/a"),
                leased("/b"),
                Wait(10),
                leased("/a"),
                Wait(5),
                leased("/b"),
            ],
        ),
    ]
}

/// Fairness: crawls share a site's queue.
fn sharing_scenarios() -> Vec<(&'static str, Scenario, Vec<Step>)> {
    use Step::*;
    let leased = |p: &str| Leased(p.to_string());
    vec![(
        "a crawl joining a site's queue shares it with the crawl already there",
        |t| {
            Box::pin(async move {
                t.push(&["/a1", "/a2", "/a3"]).await;
                t.pop().await;
                t.ack("/a1", 200).await;
                t.push_of("d", &["/b1", "/b2"]).await;
                for _ in 0..4 {
                    t.pop().await;
                    let path = t.last_leased();
                    t.ack(&path, 200).await;
                }
            })
        },
        vec![
            leased("/a1"),
            leased("/a2"),
            leased("/b1"),
            leased("/a3"),
            leased("/b2"),
        ],
    )]
}

/// Spacing: a retry's backoff, Crawl-delay, the in-flight cap.
fn spacing_scenarios() -> Vec<(&'static str, Scenario, Vec<Step>)> {
    use Step::*;
    let leased = |p: &str| Leased(p.to_string());
    vec![
        (
            "a retry waits out its backoff",
            |t| {
                Box::pin(async move {
                    t.push(&["/a"]).await;
                    t.pop().await;
                    t.retry("/a", Requeue::After(Duration::from_millis(300), None))
                        .await;
                    t.pop().await;
                    t.pop_leased().await;
                })
            },
            vec![leased("/a"), Wait(3), leased("/a")],
        ),
        (
            "a Crawl-delay spaces the site's fetches",
            |t| {
                Box::pin(async move {
                    t.frontier
                        .crawl_delay("http://twins.example", Some(Duration::from_millis(500)))
                        .await
                        .expect("crawl delay");
                    t.push(&["/a", "/b"]).await;
                    t.pop().await;
                    t.ack("/a", 200).await;
                    t.pop().await;
                    t.pop_leased().await;
                })
            },
            vec![leased("/a"), Wait(5), leased("/b")],
        ),
        (
            "the in-flight cap holds a site's second fetch until the first ends",
            |t| {
                Box::pin(async move {
                    t.push(&["/a", "/b"]).await;
                    t.pop().await;
                    t.pop().await;
                    t.ack("/a", 200).await;
                    t.pop().await;
                })
            },
            vec![leased("/a"), Wait(10), leased("/b")],
        ),
    ]
}

/// Counts, as `spinneret run`'s progress and done detection read them.
fn counting_scenarios() -> Vec<(&'static str, Scenario, Vec<Step>)> {
    use Step::*;
    let leased = |p: &str| Leased(p.to_string());
    vec![(
        "counts follow pushes, leases, give-backs and acks",
        |t| {
            Box::pin(async move {
                t.push(&["/a"]).await;
                t.counts().await;
                t.pop().await;
                t.counts().await;
                t.release("/a").await;
                t.counts().await;
                t.pop().await;
                t.ack("/a", 200).await;
                t.counts().await;
                t.pop().await;
            })
        },
        vec![
            Counts(1, 0),
            leased("/a"),
            Counts(0, 1),
            Counts(1, 0),
            leased("/a"),
            Counts(0, 0),
            Idle,
        ],
    )]
}

/// A worker's frontier on the test's Redis, as `spinneret worker` wires it.
async fn redis_frontier(s: &Settings) -> Arc<RedisFrontier> {
    let redis = crate::store::Redis::connect(s, Default::default())
        .await
        .expect("redis store");
    let monitors = crate::monitor::store::MonitorStore::new(redis.clone(), s);
    let card = Arc::new(WorkerCard::new(false, Default::default()));
    Arc::new(RedisFrontier::new(redis, s, card, Some(Arc::new(monitors))))
}

#[tokio::test]
async fn both_frontiers_pace_sites_alike() {
    let server = crate::store::test_server::Server::start().await;
    for (i, (name, scenario, expected)) in slow_down_scenarios()
        .into_iter()
        .chain(sharing_scenarios())
        .chain(spacing_scenarios())
        .chain(counting_scenarios())
        .enumerate()
    {
        let s = settings(&server.url, &format!("twins{i}"));
        let throttle = Arc::new(EmbeddedThrottle::new(s.throttle.clone()));
        let embedded: Arc<dyn Frontier> = Arc::new(EmbeddedFrontier::new(
            throttle,
            Politeness::of(&s.crawl, &s.throttle),
        ));
        let redis: Arc<dyn Frontier> = redis_frontier(&s).await;
        for (store, frontier) in [("embedded", embedded), ("redis", redis)] {
            let mut twin = Twin {
                frontier,
                leases: HashMap::new(),
                steps: Vec::new(),
            };
            scenario(&mut twin).await;
            assert_eq!(twin.steps, expected, "{name}: the {store} frontier");
        }
    }
}

/// Admission decides alike on both: a fingerprint seen is refused unless
/// forced, the crawl's per-domain cap and the global cap hold, and a
/// second crawl has its own seen set and caps.
#[tokio::test]
async fn both_dedup_stores_admit_alike() {
    use super::{Candidate, DedupStore, EmbeddedDedup};
    use crate::request::CrawlKey;
    let server = crate::store::test_server::Server::start().await;
    let s = settings(&server.url, "twins-admit");
    let embedded: Arc<dyn DedupStore> = Arc::new(EmbeddedDedup::new(Duration::from_secs(600)));
    let redis: Arc<dyn DedupStore> = redis_frontier(&s).await;
    // The Redis store keeps 8 of a fingerprint's 16 bytes, the high ones
    // (`wire::fingerprint_args`): the test's fingerprints differ there.
    let link = |n: u128, domain: &str, force: bool| Candidate {
        fingerprint: n << 64 | n,
        domain: domain.to_string(),
        domain_cap: Some(3),
        global_cap: Some(4),
        force,
    };
    let crawl = |id: &str| CrawlKey {
        appid: "app".into(),
        crawlid: id.into(),
    };
    // (crawl, links, what must be admitted)
    let rounds = [
        (
            "c1",
            vec![
                link(1, "a.example", false),
                link(1, "a.example", false),
                link(2, "a.example", false),
            ],
            vec![true, false, true],
        ),
        (
            "c1",
            vec![
                link(2, "a.example", false),
                link(2, "a.example", true),
                link(3, "a.example", false),
            ],
            vec![false, true, false],
        ),
        ("c1", vec![link(4, "b.example", false)], vec![true]),
        (
            "c2",
            vec![link(1, "a.example", false), link(5, "a.example", false)],
            vec![true, false],
        ),
    ];
    for (store, dedup) in [("embedded", embedded), ("redis", redis)] {
        for (i, (id, links, expected)) in rounds.iter().enumerate() {
            let got = dedup.admit(&crawl(id), links).await.expect("admit");
            assert_eq!(&got, expected, "round {i} on the {store} store");
        }
        // A new run of c1 reads its pages again, within its caps again
        // (the global cap spans runs and crawls: not asked here); c2 keeps
        // what it saw.
        dedup.new_run(&crawl("c1")).await.expect("new run");
        let link = |n: u128, domain: &str, force: bool| Candidate {
            global_cap: None,
            ..link(n, domain, force)
        };
        let again = [
            link(1, "a.example", false),
            link(2, "a.example", false),
            link(3, "a.example", false),
            link(6, "a.example", false),
        ];
        let got = dedup.admit(&crawl("c1"), &again).await.expect("admit");
        assert_eq!(
            got,
            [true, true, true, false],
            "after a new run on the {store} store"
        );
        let got = dedup
            .admit(&crawl("c2"), &[link(1, "b.example", false)])
            .await
            .expect("admit");
        assert_eq!(got, [false], "another crawl on the {store} store");
    }
}

/// What only the Redis store has (an embedded frontier's leases live as
/// long as its process, and control operations act on a cluster): a lease
/// not renewed within `lease_ttl` goes back to its queue for any worker;
/// `info` counts a crawl's queued and in-flight requests; `stop` purges
/// the crawl's queue and leaves other crawls' alone.
#[tokio::test]
async fn the_redis_store_expires_leases_counts_and_stops_crawls() {
    use crate::monitor::store::MonitorStore;
    let server = crate::store::test_server::Server::start().await;
    let mut s = settings(&server.url, "twins-redis");
    s.crawl.lease_ttl = Duration::from_millis(300);
    let redis = crate::store::Redis::connect(&s, Default::default())
        .await
        .expect("redis store");
    let monitors = MonitorStore::new(redis.clone(), &s);
    let card = Arc::new(WorkerCard::new(false, Default::default()));
    let frontier = RedisFrontier::new(redis, &s, card, Some(Arc::new(monitors.clone())));
    let job_of = |path: &str, crawl: &str| {
        let json =
            format!(r#"{{"url":"http://twins.example{path}","appid":"app","crawlid":"{crawl}"}}"#);
        CrawlRequest::parse(&json, 3).expect("valid").into_seed()
    };
    frontier
        .push(vec![
            job_of("/a", "c"),
            job_of("/b", "c"),
            job_of("/c", "c"),
        ])
        .await
        .expect("push");
    frontier
        .push(vec![job_of("/x", "other")])
        .await
        .expect("push");

    let Pop::Leased(first) = frontier.pop().await.expect("pop") else {
        panic!("nothing leased");
    };
    let info = |crawl: &'static str| {
        let m = monitors.clone();
        async move { m.crawl_info("app", crawl, "link").await.expect("info") }
    };
    let i = info("c").await;
    let leased_c = first.job.crawl.crawlid == "c";
    assert_eq!(
        (i.queued + i.in_flight, i.in_flight),
        (3, u64::from(leased_c)),
        "info counts crawl c's requests: {i:?}"
    );

    // Not renewed: reclaimed by upkeep once its deadline passes, then
    // leased again under a new id.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let again = loop {
        frontier.maintain().await.expect("upkeep");
        if let Pop::Leased(l) = frontier.pop().await.expect("pop") {
            if l.job.url == first.job.url {
                break l;
            }
            frontier.release(l.id).await.expect("release");
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the lease never expired"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_ne!(again.id, first.id, "a reclaimed request is leased anew");
    frontier.release(again.id).await.expect("release");

    let purged = monitors.stop("app", "c", None).await.expect("stop");
    assert_eq!(purged, 3, "stop purges crawl c's queued requests");
    let left = frontier.counts().await.expect("counts");
    assert_eq!(
        (left.queued, left.in_flight),
        (1, 0),
        "the other crawl stays"
    );
    let Pop::Leased(l) = frontier.pop().await.expect("pop") else {
        panic!("the other crawl's request is gone");
    };
    assert_eq!(l.job.crawl.crawlid, "other");
}
