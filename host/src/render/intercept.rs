//! Every request a rendered page makes is paused by the DevTools `Fetch`
//! domain and answered here: the main document from the bytes our
//! fetcher already fetched (the leased, throttled, robots-checked
//! request), sub-resources by our fetcher (address policy after DNS and
//! on every redirect, body cap) within the render's count, byte and
//! concurrency bounds and, unless `render.third_party`, on the page's
//! registered domain; blocked types refused unfetched, and a later
//! top-frame navigation answered 204 so the page stays. Frames and
//! workers in processes of their own are followed: each is attached
//! paused, gets the same interception, then runs. The browser has no
//! network of its own (`browser.rs`), so a request we did not answer
//! goes nowhere.

use super::cdp::{Cdp, Event};
use crate::archive::{Archive, ArchiveError, Exchange, Owner};
use crate::fetch::{ByteBudget, FetchError, Fetched, Fetcher, Hop, Outgoing};
use base64::Engine as _;
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio::task::JoinSet;

/// The render's bounds on what its page may fetch.
pub(super) struct Limits {
    pub max_requests: usize,
    pub max_bytes: usize,
    pub parallel: usize,
    pub third_party: bool,
    /// Resource types refused unfetched (lower-case DevTools names).
    pub block: Vec<String>,
}

/// What one render's page asked for, and when it last did: the render
/// waits for this to go quiet (network idle).
pub(super) struct Traffic {
    open: AtomicUsize,
    last: Mutex<Instant>,
    requests: AtomicUsize,
    budget: ByteBudget,
    fetching: Semaphore,
    pub refused: AtomicUsize,
    /// Sessions of this render (the page's and its frames'), to forget
    /// when it ends.
    pub sessions: Mutex<Vec<String>>,
    crashed: AtomicBool,
    crash: Notify,
    /// Where sub-requests are archived, and for whom; taken when the
    /// render ends (see [`Traffic::stop_archiving`]).
    archive: Mutex<Option<(Arc<Archive>, Owner)>>,
    /// A sub-request that could not be archived: the render fails with it.
    pub unarchived: Mutex<Option<ArchiveError>>,
}

impl Traffic {
    pub fn new(limits: &Limits, archive: Option<(Arc<Archive>, Owner)>) -> Traffic {
        Traffic {
            open: AtomicUsize::new(0),
            last: Mutex::new(Instant::now()),
            requests: AtomicUsize::new(0),
            budget: ByteBudget::new(limits.max_bytes),
            fetching: Semaphore::new(limits.parallel),
            refused: AtomicUsize::new(0),
            sessions: Mutex::new(Vec::new()),
            crashed: AtomicBool::new(false),
            crash: Notify::new(),
            archive: Mutex::new(archive),
            unarchived: Mutex::new(None),
        }
    }

    /// Archive one hop of a sub-request, when the crawl archives.
    fn archive(&self, url: &str, method: &str, body: Option<&[u8]>, f: &mut Fetched) {
        // Held while writing: the render's end waits for it.
        let archiving = self.archive.lock();
        let Some((archive, owner)) = &*archiving else {
            return;
        };
        let written = archive.write(&Exchange {
            url,
            method,
            request_body: body,
            fetched: f,
            owner,
        });
        match written {
            Ok(a) => f.archived = Some(a),
            Err(e) => *self.unarchived.lock() = Some(e),
        }
    }

    /// The render is over: wait for a write under way, and write no more.
    /// The page's records must all be written before its settling asks
    /// for them to be on disk; an answer still being fetched is abandoned.
    pub fn stop_archiving(&self) {
        self.archive.lock().take();
    }

    fn begin(&self) {
        self.open.fetch_add(1, SeqCst);
        *self.last.lock() = Instant::now();
    }

    fn end(&self) {
        *self.last.lock() = Instant::now();
        self.open.fetch_sub(1, SeqCst);
    }

    /// Wait until no request has been open for `quiet`.
    pub async fn idle(&self, quiet: Duration) {
        loop {
            let since = self.last.lock().elapsed();
            if self.open.load(SeqCst) == 0 && since >= quiet {
                return;
            }
            let left = quiet.saturating_sub(since);
            tokio::time::sleep(left.max(Duration::from_millis(20))).await;
        }
    }

    /// Resolves when a process of the page crashed (out of memory past
    /// `render.max_heap_mb` or `render.process_limit_mb`, or killed).
    pub async fn crashed(&self) {
        loop {
            let notified = self.crash.notified();
            if self.crashed.load(SeqCst) {
                return;
            }
            notified.await;
        }
    }
}

/// The page this render serves.
pub(super) struct Page {
    pub cdp: Arc<Cdp>,
    pub main_frame: String,
    /// The page's registered domain: sub-requests stay on it unless
    /// `render.third_party`.
    pub domain: String,
    pub main: Arc<Fetched>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Paused {
    request_id: String,
    request: Request,
    frame_id: String,
    resource_type: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request {
    url: String,
    method: String,
    #[serde(default)]
    headers: HashMap<String, Value>,
    #[serde(default)]
    post_data_entries: Vec<PostData>,
}

#[derive(Deserialize)]
struct PostData {
    bytes: Option<String>,
}

/// How one paused request is answered.
enum Answer {
    /// With the main document we fetched.
    Main,
    /// By our fetcher.
    Fetch,
    /// 204: a navigation of the top frame after the first; the page stays
    /// (its target is not ours to fetch: it was not leased or throttled).
    Stay,
    Fail(&'static str),
}

/// Answer the page's requests, and follow its frames and workers, until
/// the render drops this task.
pub(super) async fn serve(
    page: Arc<Page>,
    tx: mpsc::Sender<Event>,
    mut events: mpsc::Receiver<Event>,
    fetcher: Fetcher,
    limits: Arc<Limits>,
    traffic: Arc<Traffic>,
) {
    let mut main_served = false;
    // Dropped with this task: answers still being fetched are abandoned.
    let mut answers = JoinSet::new();
    while let Some(ev) = events.recv().await {
        match ev.method.as_str() {
            "Fetch.requestPaused" => {}
            "Target.attachedToTarget" => {
                follow(&page.cdp, &tx, &traffic, ev.params);
                continue;
            }
            "Inspector.targetCrashed" => {
                traffic.crashed.store(true, SeqCst);
                traffic.crash.notify_waiters();
                continue;
            }
            _ => continue,
        }
        let Ok(paused) = serde_json::from_value::<Paused>(ev.params) else {
            continue;
        };
        traffic.begin();
        let answer = decide(&paused, &mut main_served, &page, &limits, &traffic);
        let (page, fetcher, traffic) = (page.clone(), fetcher.clone(), traffic.clone());
        let session = ev.session;
        answers.spawn(async move {
            let id = paused.request_id.clone();
            // The request stops counting as open once its answer is known:
            // the browser's acknowledgement of it is not network traffic
            // (and never comes for a navigation the answer cancels).
            let (method, params) = match answer {
                Answer::Main => ("Fetch.fulfillRequest", fulfilment(&id, &page.main)),
                Answer::Stay => {
                    tracing::debug!(url = %paused.request.url, "a rendered page navigated its top frame: it stays");
                    (
                        "Fetch.fulfillRequest",
                        json!({"requestId": id, "responseCode": 204}),
                    )
                }
                Answer::Fail(reason) => ("Fetch.failRequest", failed(&id, reason)),
                Answer::Fetch => {
                    let _slot = traffic.fetching.acquire().await.expect("never closed");
                    match fetch(&fetcher, &paused.request, &traffic).await {
                        Ok(f) => ("Fetch.fulfillRequest", fulfilment(&id, &f)),
                        Err(e) => {
                            if matches!(e, FetchError::Refused(_)) {
                                traffic.refused.fetch_add(1, SeqCst);
                                tracing::info!(url = %paused.request.url, reason = %e, "a rendered page's request was refused");
                            }
                            ("Fetch.failRequest", failed(&id, failure(&e)))
                        }
                    }
                }
            };
            traffic.end();
            // The request may be gone (the page moved on): nothing to do.
            page.cdp.send(&session, method, params);
        });
        while answers.try_join_next().is_some() {}
    }
}

/// A frame or worker in a process of its own, attached paused: its
/// requests are intercepted as the page's, then it runs.
fn follow(cdp: &Arc<Cdp>, tx: &mpsc::Sender<Event>, traffic: &Traffic, params: Value) {
    let Some(session) = params["sessionId"].as_str().map(String::from) else {
        return;
    };
    cdp.route(&session, tx.clone());
    traffic.sessions.lock().push(session.clone());
    let cdp = cdp.clone();
    tokio::spawn(async move {
        let s = Some(session.as_str());
        for (method, params) in intercept_commands() {
            let _ = cdp.call(s, method, params).await;
        }
        let _ = cdp
            .call(s, "Runtime.runIfWaitingForDebugger", json!({}))
            .await;
    });
}

/// What a page's session (and each of its frames' and workers') is told
/// before it runs: pause every request, attach what it starts, report a
/// crash.
pub(super) fn intercept_commands() -> [(&'static str, Value); 3] {
    [
        (
            "Fetch.enable",
            json!({"patterns": [{"urlPattern": "*", "requestStage": "Request"}]}),
        ),
        (
            "Target.setAutoAttach",
            json!({"autoAttach": true, "waitForDebuggerOnStart": true, "flatten": true}),
        ),
        ("Inspector.enable", json!({})),
    ]
}

fn decide(
    ev: &Paused,
    main_served: &mut bool,
    page: &Page,
    limits: &Limits,
    traffic: &Traffic,
) -> Answer {
    let document = ev.resource_type == "Document";
    if document && ev.frame_id == page.main_frame {
        if !*main_served {
            *main_served = true;
            return Answer::Main;
        }
        return Answer::Stay;
    }
    let kind = ev.resource_type.to_ascii_lowercase();
    if limits.block.contains(&kind) {
        return Answer::Fail("BlockedByClient");
    }
    // Counted before the domain rule: a page asking for other domains
    // spends its count too, so the refusals it can cause (and log) are
    // bounded by `render.max_requests`.
    if traffic.requests.fetch_add(1, SeqCst) >= limits.max_requests {
        return Answer::Fail("BlockedByClient");
    }
    if !limits.third_party && crate::links::domain::of_url(&ev.request.url) != page.domain {
        traffic.refused.fetch_add(1, SeqCst);
        tracing::info!(url = %ev.request.url, "a rendered page's request off its registered domain was refused (render.third_party)");
        return Answer::Fail("BlockedByClient");
    }
    Answer::Fetch
}

/// A sub-request through our fetcher: redirects followed here, each hop
/// checked by the address policy and archived (request body included) as
/// its own exchange; the crawl's credentials never sent; its body drawn
/// from the render's byte budget as it is read.
async fn fetch(fetcher: &Fetcher, r: &Request, traffic: &Traffic) -> Result<Fetched, FetchError> {
    let headers: Vec<(String, String)> = r
        .headers
        .iter()
        .filter(|(k, _)| !skipped_request_header(k))
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect();
    let body: Option<Vec<u8>> = (!r.post_data_entries.is_empty()).then(|| {
        let b64 = base64::engine::general_purpose::STANDARD;
        r.post_data_entries
            .iter()
            .filter_map(|e| e.bytes.as_ref())
            .filter_map(|b| b64.decode(b).ok())
            .flatten()
            .collect()
    });
    let mut hop = Hop {
        url: url::Url::parse(&r.url).map_err(|_| FetchError::InvalidUrl(r.url.clone()))?,
        method: reqwest::Method::from_bytes(r.method.as_bytes())
            .map_err(|_| FetchError::InvalidUrl(format!("{} (bad method {})", r.url, r.method)))?,
        headers,
        body,
    };
    let mut redirects = 0;
    loop {
        let mut f = fetcher
            .fetch(&Outgoing {
                url: hop.url.as_str(),
                method: hop.method.as_str(),
                headers: &hop.headers,
                body: hop.body.as_deref(),
                follow_redirects: false,
                redirects,
                truncate_at: None,
                budget: Some(&traffic.budget),
            })
            .await?;
        traffic.archive(
            hop.url.as_str(),
            hop.method.as_str(),
            hop.body.as_deref(),
            &mut f,
        );
        match f.redirect.take() {
            Some(next) => hop = next?,
            None => return Ok(f),
        }
        redirects += 1;
    }
}

/// The browser's own user agent and connection headers give way to ours.
fn skipped_request_header(name: &str) -> bool {
    [
        "user-agent",
        "host",
        "connection",
        "content-length",
        "cookie",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

/// Response headers that described the bytes on the wire, which the
/// fetcher has already decoded.
fn skipped_response_header(name: &str) -> bool {
    [
        "content-encoding",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

fn fulfilment(id: &str, f: &Fetched) -> Value {
    let headers: Vec<Value> = f
        .headers
        .iter()
        .filter(|(k, _)| !skipped_response_header(k))
        .map(|(k, v)| json!({"name": k, "value": v}))
        .collect();
    let mut p = json!({
        "requestId": id,
        "responseCode": f.status,
        "responseHeaders": headers,
        "body": base64::engine::general_purpose::STANDARD.encode(&f.body),
    });
    if !f.reason.is_empty() {
        p["responsePhrase"] = f.reason.clone().into();
    }
    p
}

fn failed(id: &str, reason: &str) -> Value {
    json!({"requestId": id, "errorReason": reason})
}

fn failure(e: &FetchError) -> &'static str {
    match e {
        FetchError::Refused(_) => "AddressUnreachable",
        FetchError::Timeout(_) => "TimedOut",
        FetchError::TooLarge { .. } => "BlockedByClient",
        _ => "Failed",
    }
}
