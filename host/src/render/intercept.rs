//! Every request a rendered page makes is paused by the DevTools `Fetch`
//! domain and answered here: the main document from the bytes our
//! fetcher already fetched (the leased, throttled, robots-checked
//! request), sub-resources by our fetcher (address policy after DNS and
//! on every redirect, body cap) within the render's count and byte
//! budget, blocked types refused unfetched, and a later top-frame
//! navigation answered 204 so the page stays. The browser itself opens
//! no connection for a page (see `browser.rs`: its proxy is a dead port).

use crate::fetch::{FetchError, Fetched, Fetcher, Outgoing};
use base64::Engine as _;
use chromiumoxide::cdp::browser_protocol::fetch::{
    EventRequestPaused, FailRequestParams, FulfillRequestParams, HeaderEntry, RequestId,
};
use chromiumoxide::cdp::browser_protocol::network::{ErrorReason, ResourceType};
use chromiumoxide::cdp::browser_protocol::page::FrameId;
use chromiumoxide::listeners::EventStream;
use chromiumoxide::Page;
use futures::StreamExt;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// The render's bounds on what its page may fetch.
pub(super) struct Limits {
    pub max_requests: usize,
    pub max_bytes: usize,
    /// Resource types refused unfetched (lower-case DevTools names).
    pub block: Vec<String>,
}

/// What one render's page asked for, and when it last did: the render
/// waits for this to go quiet (network idle).
pub(super) struct Traffic {
    open: AtomicUsize,
    last: Mutex<Instant>,
    requests: AtomicUsize,
    bytes: AtomicUsize,
    pub refused: AtomicUsize,
}

impl Traffic {
    pub fn new() -> Traffic {
        Traffic {
            open: AtomicUsize::new(0),
            last: Mutex::new(Instant::now()),
            requests: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
        }
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
    Fail(ErrorReason),
}

/// Answer the page's requests until the render drops this task.
pub(super) async fn serve(
    page: Page,
    mut events: EventStream<EventRequestPaused>,
    main: Arc<Fetched>,
    fetcher: Fetcher,
    limits: Arc<Limits>,
    traffic: Arc<Traffic>,
) {
    let mut main_frame: Option<FrameId> = None;
    // Dropped with this task: answers still being fetched are abandoned.
    let mut answers = JoinSet::new();
    while let Some(ev) = events.next().await {
        traffic.begin();
        let answer = decide(&ev, &mut main_frame, &limits, &traffic);
        let (page, main, fetcher) = (page.clone(), main.clone(), fetcher.clone());
        let (limits, traffic) = (limits.clone(), traffic.clone());
        answers.spawn(async move {
            let id = ev.request_id.clone();
            // The request stops counting as open once its answer is known:
            // the browser's acknowledgement of it is not network traffic
            // (and never comes for a navigation the answer cancels).
            let command = match answer {
                Answer::Main => Reply::Fulfill(fulfilment(id, &main)),
                Answer::Stay => {
                    tracing::debug!(url = %ev.request.url, "a rendered page navigated its top frame: it stays");
                    Reply::Fulfill(FulfillRequestParams::new(id, 204))
                }
                Answer::Fail(reason) => Reply::Fail(FailRequestParams::new(id, reason)),
                Answer::Fetch => match fetch(&fetcher, &ev).await {
                    Ok(f) if traffic.bytes.fetch_add(f.body.len(), SeqCst) + f.body.len() <= limits.max_bytes => {
                        Reply::Fulfill(fulfilment(id, &f))
                    }
                    Ok(_) => Reply::Fail(FailRequestParams::new(id, ErrorReason::BlockedByClient)),
                    Err(e) => {
                        if matches!(e, FetchError::Refused(_)) {
                            traffic.refused.fetch_add(1, SeqCst);
                            tracing::info!(url = %ev.request.url, reason = %e, "a rendered page's request was refused");
                        }
                        Reply::Fail(FailRequestParams::new(id, failure(&e)))
                    }
                },
            };
            traffic.end();
            // The request may be gone (the page moved on): nothing to do.
            let _ = match command {
                Reply::Fulfill(p) => page.execute(p).await.map(|_| ()),
                Reply::Fail(p) => page.execute(p).await.map(|_| ()),
            };
        });
        while answers.try_join_next().is_some() {}
    }
}

fn decide(
    ev: &EventRequestPaused,
    main_frame: &mut Option<FrameId>,
    limits: &Limits,
    traffic: &Traffic,
) -> Answer {
    let document = ev.resource_type == ResourceType::Document;
    if document && main_frame.is_none() {
        // The page starts at about:blank: its first document is ours.
        *main_frame = Some(ev.frame_id.clone());
        return Answer::Main;
    }
    if document && main_frame.as_ref() == Some(&ev.frame_id) {
        return Answer::Stay;
    }
    let kind = ev.resource_type.as_ref().to_ascii_lowercase();
    if limits.block.contains(&kind) {
        return Answer::Fail(ErrorReason::BlockedByClient);
    }
    if traffic.requests.fetch_add(1, SeqCst) >= limits.max_requests {
        return Answer::Fail(ErrorReason::BlockedByClient);
    }
    Answer::Fetch
}

/// A sub-request through our fetcher: redirects followed here, each hop
/// checked by the address policy; the crawl's credentials never sent.
async fn fetch(fetcher: &Fetcher, ev: &EventRequestPaused) -> Result<Fetched, FetchError> {
    let r = &ev.request;
    let headers: Vec<(String, String)> = r
        .headers
        .inner()
        .as_object()
        .map(|h| {
            h.iter()
                .filter(|(k, _)| !skipped_request_header(k))
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    let body: Option<Vec<u8>> = r.post_data_entries.as_ref().map(|entries| {
        let b64 = base64::engine::general_purpose::STANDARD;
        entries
            .iter()
            .filter_map(|e| e.bytes.as_ref())
            .filter_map(|b| b64.decode(AsRef::<str>::as_ref(b)).ok())
            .flatten()
            .collect()
    });
    fetcher
        .fetch(&Outgoing {
            url: &r.url,
            method: &r.method,
            headers: &headers,
            body: body.as_deref(),
            follow_redirects: true,
            redirects: 0,
            truncate_at: None,
        })
        .await
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

enum Reply {
    Fulfill(FulfillRequestParams),
    Fail(FailRequestParams),
}

fn fulfilment(id: RequestId, f: &Fetched) -> FulfillRequestParams {
    let mut p = FulfillRequestParams::new(id, f.status as i64);
    p.response_headers = Some(
        f.headers
            .iter()
            .filter(|(k, _)| !skipped_response_header(k))
            .map(|(k, v)| HeaderEntry::new(k.clone(), v.clone()))
            .collect(),
    );
    p.body = Some(
        base64::engine::general_purpose::STANDARD
            .encode(&f.body)
            .into(),
    );
    if !f.reason.is_empty() {
        p.response_phrase = Some(f.reason.clone());
    }
    p
}

fn failure(e: &FetchError) -> ErrorReason {
    match e {
        FetchError::Refused(_) => ErrorReason::AddressUnreachable,
        FetchError::Timeout(_) => ErrorReason::TimedOut,
        FetchError::TooLarge { .. } => ErrorReason::BlockedByClient,
        _ => ErrorReason::Failed,
    }
}
