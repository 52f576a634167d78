//! The crawl loop in process: embedded stores, a capturing sink that can be
//! told to fail, and a small HTTP server on loopback. Each test drives one
//! [`Outcome`] path through `process` and `settle`, and checks what the
//! sink got and what became of the lease.

use super::page::{Dropped, Outcome};
use super::Engine;
use crate::bus::{ResultSink, SinkError};
use crate::config::Settings;
use crate::fetch::Fetcher;
use crate::plugins::{Registry, Runtime};
use crate::politeness::throttle::EmbeddedThrottle;
use crate::request::{CrawlRequest, Job};
use crate::result::CrawlResult;
use crate::scheduler::{EmbeddedDedup, EmbeddedFrontier, Frontier, Lease, Pop};
use crate::shutdown::Shutdown;
use crate::telemetry::Stats;
use async_trait::async_trait;
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How the capturing sink answers `publish`.
#[derive(Clone, Copy)]
enum Fail {
    Never,
    /// A passing error this many times, then success.
    Retryable(u32),
    Always,
    Undeliverable,
}

struct Capture {
    delivered: Mutex<Vec<CrawlResult>>,
    dead: Mutex<Vec<String>>,
    fail: Mutex<Fail>,
}

#[async_trait]
impl ResultSink for Capture {
    async fn publish(&self, r: &CrawlResult) -> Result<(), SinkError> {
        let mut fail = self.fail.lock();
        match *fail {
            Fail::Never => {}
            Fail::Retryable(0) => *fail = Fail::Never,
            Fail::Retryable(n) => {
                *fail = Fail::Retryable(n - 1);
                return Err(SinkError::Retryable("disk full".into()));
            }
            Fail::Always => return Err(SinkError::Retryable("disk full".into())),
            Fail::Undeliverable => return Err(SinkError::Undeliverable("too large".into())),
        }
        self.delivered.lock().push(r.clone());
        Ok(())
    }

    async fn undeliverable(&self, _r: &CrawlResult, reason: &str) -> Result<(), SinkError> {
        self.dead.lock().push(reason.to_string());
        Ok(())
    }

    async fn flush(&self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// A loopback HTTP server: `/page` links to `/a` and `/b`, `/moved`
/// redirects to `/page`, `/busy` answers 503, `/broken` 500, anything
/// else 404.
async fn site() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut got = 0;
                while !buf[..got].windows(4).any(|w| w == b"\r\n\r\n") && got < buf.len() {
                    match sock.read(&mut buf[got..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got += n,
                    }
                }
                let head = String::from_utf8_lossy(&buf[..got]);
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                let (status, extra, body) = match path.as_str() {
                    "/page" => (
                        "200 OK",
                        "",
                        "<html><title>P</title><a href=\"/a\">A</a><a href=\"/b\">B</a></html>",
                    ),
                    "/moved" => ("302 Found", "Location: /page\r\n", ""),
                    "/busy" => ("503 Service Unavailable", "Retry-After: 1\r\n", "busy"),
                    "/broken" => ("500 Internal Server Error", "", "broken"),
                    _ => ("404 Not Found", "", "none"),
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/html\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}")
}

struct Rig {
    engine: Arc<Engine>,
    frontier: Arc<EmbeddedFrontier>,
    sink: Arc<Capture>,
    base: String,
    _cache: tempfile::TempDir,
}

/// An engine on embedded stores; `spider` loads `plugins/<spider>.wasm`
/// (built by `just guests`).
async fn rig(fail: Fail, spider: Option<&str>) -> Rig {
    rig_with(fail, spider, |_| {}).await
}

/// [`rig`] with settings changed by `tweak`.
async fn rig_with(fail: Fail, spider: Option<&str>, tweak: impl FnOnce(&mut Settings)) -> Rig {
    let cache = tempfile::tempdir().expect("tempdir");
    let mut settings = Settings::default();
    settings.crawl.allow_private = true;
    settings.crawl.obey_robots = false;
    settings.crawl.retries = 1;
    settings.crawl.delivery_timeout = Duration::from_secs(2);
    settings.throttle.hits = 10_000;
    settings.throttle.window = Duration::from_secs(1);
    settings.throttle.moderated = false;
    settings.plugins.cache_dir = cache.path().to_path_buf();
    tweak(&mut settings);
    let settings = Arc::new(settings);
    let stats = Arc::new(Stats::default());
    let runtime = Runtime::new(&settings.plugins, stats.clone()).expect("runtime");
    let registry = Registry::new(runtime);
    if let Some(name) = spider {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../plugins")
            .join(format!("{name}.wasm"));
        registry
            .load_file(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (run `just guests`)", path.display()));
    }
    let throttle = Arc::new(EmbeddedThrottle::new(settings.throttle.clone()));
    let frontier = Arc::new(EmbeddedFrontier::new(
        throttle.clone(),
        crate::politeness::Politeness::of(&settings.crawl, &settings.throttle),
    ));
    let sink = Arc::new(Capture {
        delivered: Mutex::new(Vec::new()),
        dead: Mutex::new(Vec::new()),
        fail: Mutex::new(fail),
    });
    let engine = Engine::new(
        frontier.clone(),
        Arc::new(EmbeddedDedup::new(Duration::from_secs(600))),
        sink.clone(),
        Fetcher::new(&settings.crawl).expect("fetcher"),
        throttle,
        registry,
        settings,
        stats,
        None,
    );
    Rig {
        engine,
        frontier,
        sink,
        base: site().await,
        _cache: cache,
    }
}

fn job(url: &str, extra: &str) -> Job {
    CrawlRequest::parse(
        &format!(r#"{{"url": "{url}", "appid": "app", "crawlid": "c1", "maxdepth": 1{extra}}}"#),
        3,
    )
    .expect("valid request")
    .into_seed()
}

impl Rig {
    /// Queue `job` and lease it, as a worker would.
    async fn lease(&self, job: Job) -> Lease {
        self.frontier.push(vec![job]).await.expect("push");
        match self.frontier.pop().await.expect("pop") {
            Pop::Leased(l) => l,
            other => panic!("expected a lease, got {other:?}"),
        }
    }

    /// Process and settle one request; the outcome it came to.
    async fn run(&self, job: Job) -> String {
        let lease = self.lease(job).await;
        let outcome = self.engine.process(&lease.job).await.expect("store");
        let shape = format!("{outcome:?}");
        self.engine.settle(lease, outcome).await.expect("settle");
        shape
    }

    async fn counts(&self) -> (u64, u64) {
        let c = self.frontier.counts().await.expect("counts");
        (c.queued, c.in_flight)
    }

    /// The next lease, polling until `deadline` from now.
    async fn pop_within(&self, deadline: Duration) -> Lease {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            match self.frontier.pop().await.expect("pop") {
                Pop::Leased(l) => return l,
                Pop::Wait(d) if tokio::time::Instant::now() + d <= until => {
                    tokio::time::sleep(d).await
                }
                other => panic!("no lease within {deadline:?}: {other:?}"),
            }
        }
    }
}

#[tokio::test]
async fn a_page_delivers_its_item_and_queues_its_links() {
    let rig = rig(Fail::Never, Some("link")).await;
    let url = format!("{}/page", rig.base);
    let shape = rig.run(job(&url, "")).await;
    assert!(shape.starts_with("Deliver"), "{shape}");
    let got = rig.sink.delivered.lock().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].url, url);
    assert_eq!(got[0].status(), 200);
    assert_eq!(got[0].links.len(), 2, "{:?}", got[0].links);
    // Acked, and the two links queued for depth 1.
    assert_eq!(rig.counts().await, (2, 0));
    assert_eq!(rig.engine.stats.crawl.pages.get(), 1);
}

#[tokio::test]
async fn links_past_the_cap_are_not_queued_and_the_result_says_so() {
    let rig = rig_with(Fail::Never, Some("link"), |s| {
        s.crawl.max_links_per_page = 1;
    })
    .await;
    rig.run(job(&format!("{}/page", rig.base), "")).await;
    let got = rig.sink.delivered.lock().clone();
    assert_eq!(got[0].links.len(), 1);
    assert!(got[0].links_truncated);
    assert_eq!(
        got[0].json(false).field("links_truncated").as_deref(),
        Some("true")
    );
    assert_eq!(rig.counts().await, (1, 0), "one child queued");
}

#[tokio::test]
async fn the_host_enforces_maxdepth_whatever_the_spider_yields() {
    // `link` follows every link at any depth; this page is at maxdepth.
    let rig = rig(Fail::Never, Some("link")).await;
    let mut deepest = job(&format!("{}/page", rig.base), "");
    deepest.depth = 1;
    rig.run(deepest).await;
    assert_eq!(rig.sink.delivered.lock().len(), 1);
    assert_eq!(rig.counts().await, (0, 0), "nothing queued past maxdepth");
}

#[tokio::test]
async fn a_walking_spider_steps_past_maxdepth_up_to_the_walk_limit() {
    // `wandering` marks its one request a walk step.
    for (depth, queued) in [(1, 1), (2, 0)] {
        let rig = rig_with(Fail::Never, Some("wandering"), |s| {
            s.crawl.max_walk_steps = 2;
        })
        .await;
        let mut page = job(
            &format!("{}/page", rig.base),
            r#", "spiderid": "wandering""#,
        );
        page.depth = depth;
        rig.run(page).await;
        assert_eq!(rig.counts().await, (queued, 0), "at depth {depth}");
    }
}

#[tokio::test]
async fn a_spider_over_its_request_cap_fails_the_page_with_the_reason() {
    let rig = rig_with(Fail::Never, Some("link"), |s| {
        s.plugins.limits.max_requests = 1;
    })
    .await;
    rig.run(job(&format!("{}/page", rig.base), "")).await;
    let got = rig.sink.delivered.lock().clone();
    let error = got[0].error.clone().unwrap_or_default();
    assert!(
        error.contains("too many outputs: 2 requests, the limit is 1"),
        "{error}"
    );
    assert_eq!(rig.counts().await, (0, 0));
}

#[tokio::test]
async fn a_500_is_retried_after_a_backoff_then_delivered_with_its_status() {
    let rig = rig_with(Fail::Never, Some("link"), |s| {
        s.crawl.retry_backoff = Duration::from_millis(400);
    })
    .await;
    let url = format!("{}/broken", rig.base);
    let shape = rig.run(job(&url, "")).await;
    assert!(shape.starts_with("Retry"), "{shape}");
    assert_eq!(rig.counts().await, (1, 0), "the retry replaces the lease");
    assert!(rig.sink.delivered.lock().is_empty());
    // It waits out its backoff (0.2-0.4 s) in the frontier, not before.
    let Pop::Wait(wait) = rig.frontier.pop().await.expect("pop") else {
        panic!("the retry waits for its backoff")
    };
    assert!(wait <= Duration::from_millis(400), "{wait:?}");
    let lease = rig.pop_within(Duration::from_secs(2)).await;
    assert_eq!(lease.job.retries, 1);
    // Retries (1) used up: this attempt delivers the 500.
    let outcome = rig.engine.process(&lease.job).await.expect("store");
    assert!(matches!(outcome, Outcome::Deliver(_)), "{outcome:?}");
    rig.engine.settle(lease, outcome).await.expect("settle");
    let got = rig.sink.delivered.lock().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].status(), 500);
    assert_eq!(rig.counts().await, (0, 0));
}

#[tokio::test]
async fn a_503_pauses_its_site_for_retry_after_and_is_not_a_failure() {
    let rig = rig_with(Fail::Never, Some("link"), |s| {
        s.crawl.max_pauses = 1;
        s.crawl.retries = 0;
    })
    .await;
    let url = format!("{}/busy", rig.base);
    let shape = rig.run(job(&url, "")).await;
    assert!(shape.starts_with("SlowDown"), "{shape}");
    assert_eq!(rig.counts().await, (1, 0), "put back in the lease's place");
    // Retry-After: 1 pauses the whole domain: another page waits too.
    rig.frontier
        .push(vec![job(&format!("{}/page", rig.base), "")])
        .await
        .expect("push");
    let Pop::Wait(wait) = rig.frontier.pop().await.expect("pop") else {
        panic!("the domain is paused")
    };
    assert!(wait > Duration::from_millis(500), "{wait:?}");
    let mut lease = rig.pop_within(Duration::from_secs(3)).await;
    if lease.job.url != url {
        rig.frontier.release(lease.id).await.expect("release");
        lease = rig.pop_within(Duration::from_secs(1)).await;
    }
    assert_eq!((lease.job.pauses, lease.job.retries), (1, 0));
    // Pauses (1) used up, then it is an ordinary retryable status (no
    // retries here): this 503 is delivered.
    let outcome = rig.engine.process(&lease.job).await.expect("store");
    assert!(matches!(outcome, Outcome::Deliver(_)), "{outcome:?}");
    rig.engine.settle(lease, outcome).await.expect("settle");
    assert_eq!(rig.sink.delivered.lock()[0].status(), 503);
}

#[tokio::test]
async fn a_redirect_queues_the_next_hop_in_the_leases_place() {
    let rig = rig(Fail::Never, Some("link")).await;
    let url = format!("{}/moved", rig.base);
    let lease = rig.lease(job(&url, "")).await;
    let outcome = rig.engine.process(&lease.job).await.expect("store");
    let Outcome::Redirect(next) = &outcome else {
        panic!("expected a redirect, got {outcome:?}")
    };
    assert_eq!(next.url, format!("{}/page", rig.base));
    assert_eq!(next.redirected_from.as_deref(), Some(url.as_str()));
    assert_eq!(next.redirects, 1);
    rig.engine.settle(lease, outcome).await.expect("settle");
    assert_eq!(rig.counts().await, (1, 0));
    assert!(rig.sink.delivered.lock().is_empty());
}

#[tokio::test]
async fn an_expired_request_is_dropped_and_acked() {
    let rig = rig(Fail::Never, None).await;
    let url = format!("{}/page", rig.base);
    let lease = rig.lease(job(&url, r#", "expires": 1"#)).await;
    let outcome = rig.engine.process(&lease.job).await.expect("store");
    assert!(
        matches!(outcome, Outcome::Drop(Dropped::Expired)),
        "{outcome:?}"
    );
    rig.engine.settle(lease, outcome).await.expect("settle");
    assert_eq!(rig.counts().await, (0, 0));
    assert_eq!(rig.engine.stats.crawl.expired.get(), 1);
    assert!(rig.sink.delivered.lock().is_empty());
}

#[tokio::test]
async fn a_missing_spider_is_an_error_result_not_a_loss() {
    let rig = rig(Fail::Never, None).await;
    let url = format!("{}/page", rig.base);
    rig.run(job(&url, "")).await;
    let got = rig.sink.delivered.lock().clone();
    assert_eq!(got.len(), 1);
    assert!(
        got[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("no spider named")),
        "{:?}",
        got[0].error
    );
    assert_eq!(rig.counts().await, (0, 0));
}

#[tokio::test]
async fn a_passing_sink_failure_is_retried_before_the_ack() {
    let rig = rig(Fail::Retryable(2), Some("link")).await;
    let url = format!("{}/page", rig.base);
    rig.run(job(&url, "")).await;
    assert_eq!(rig.sink.delivered.lock().len(), 1, "delivered once");
    assert!(rig.sink.dead.lock().is_empty());
    assert_eq!(rig.engine.stats.crawl.undelivered.get(), 0);
}

#[tokio::test]
async fn a_result_that_can_never_be_delivered_is_dead_lettered_and_counted() {
    let rig = rig(Fail::Undeliverable, Some("link")).await;
    let url = format!("{}/page", rig.base);
    rig.run(job(&url, "")).await;
    assert!(rig.sink.delivered.lock().is_empty());
    assert_eq!(*rig.sink.dead.lock(), vec!["too large".to_string()]);
    assert_eq!(rig.engine.stats.crawl.undelivered.get(), 1);
    assert_eq!(rig.engine.stats.crawl.pages.get(), 0);
}

#[tokio::test]
async fn a_sink_failing_past_the_delivery_timeout_is_reported_not_acked_silently() {
    let rig = rig(Fail::Always, Some("link")).await;
    let url = format!("{}/page", rig.base);
    rig.run(job(&url, "")).await;
    assert!(rig.sink.delivered.lock().is_empty());
    let dead = rig.sink.dead.lock().clone();
    assert_eq!(dead.len(), 1);
    assert!(dead[0].contains("crawl.delivery_timeout"), "{dead:?}");
    assert_eq!(rig.engine.stats.crawl.undelivered.get(), 1);
}

#[tokio::test]
async fn a_stop_gives_back_a_result_that_cannot_be_delivered_yet() {
    let rig = rig(Fail::Always, Some("link")).await;
    let url = format!("{}/page", rig.base);
    let lease = rig.lease(job(&url, "")).await;
    let outcome = rig.engine.process(&lease.job).await.expect("store");
    // The engine's own stop, as `run` sets it on a signal.
    rig.engine.state.stop.trigger();
    rig.engine.settle(lease, outcome).await.expect("settle");
    assert!(rig.sink.delivered.lock().is_empty());
    assert!(rig.sink.dead.lock().is_empty(), "not undeliverable: later");
    // Back in the queue (with its children), nothing in flight.
    let (queued, in_flight) = rig.counts().await;
    assert_eq!((queued, in_flight), (3, 0));
    assert_eq!(rig.engine.stats.crawl.released.get(), 1);
}

#[tokio::test]
async fn run_until_done_crawls_everything_and_acks_every_lease() {
    let rig = rig(Fail::Retryable(3), Some("link")).await;
    let url = format!("{}/page", rig.base);
    rig.engine
        .submit(
            CrawlRequest::parse(
                &format!(r#"{{"url": "{url}", "appid": "app", "crawlid": "c1", "maxdepth": 1}}"#),
                3,
            )
            .expect("valid"),
        )
        .await
        .expect("submit");
    tokio::time::timeout(
        Duration::from_secs(30),
        rig.engine.run(true, Shutdown::new()),
    )
    .await
    .expect("the crawl finishes");
    let mut urls: Vec<String> = rig
        .sink
        .delivered
        .lock()
        .iter()
        .map(|r| r.url.clone())
        .collect();
    urls.sort();
    let b = &rig.base;
    assert_eq!(
        urls,
        [format!("{b}/a"), format!("{b}/b"), format!("{b}/page")]
    );
    assert_eq!(rig.counts().await, (0, 0));
}
