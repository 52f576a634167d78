//! The rendering tier (contract §3 "Rendering"): a page whose content is
//! built by scripts is loaded in a headless Chromium, one browser process
//! per worker, one fresh browser context per render (no cookies or
//! storage shared), at most `render.concurrency` at once. The page is the
//! bytes our fetcher already fetched; every request it makes is answered
//! by our fetcher (`intercept.rs`). The browser is restarted when it
//! crashes (the render in flight is retried: its lease is still held) or
//! passes `render.max_memory_mb`.

pub mod auto;
mod browser;
mod cdp;
mod intercept;
mod procs;
mod sandbox;

use crate::archive::{Archive, Owner};
use crate::config::Settings;
use crate::fetch::{Fetched, Fetcher};
use crate::telemetry::{Event, Restart, Stats};
use browser::Browser;
use cdp::{Cdp, CdpError};
use intercept::{Limits, Page, Traffic};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::sync::{Mutex, Semaphore};

/// Opening and closing a render's context and page.
const SETUP: Duration = Duration::from_secs(10);

#[derive(Debug, Error)]
pub enum RenderError {
    #[error("render timed out after {0:?}")]
    Timeout(Duration),
    /// The browser crashed, was killed or would not start: retried (the
    /// browser is restarted for the next render).
    #[error("the browser failed: {0}")]
    Browser(String),
    /// The page itself failed to load in the browser.
    #[error("render failed: {0}")]
    Page(String),
    /// A process of the page died: past a memory bound, most likely.
    #[error("the page crashed mid-render (past render.max_heap_mb or render.process_limit_mb?)")]
    Crashed,
    #[error("rendered DOM larger than crawl.max_body_bytes ({0} bytes)")]
    TooLarge(usize),
    /// A sub-request's records could not be written: rendered again.
    #[error("{0}")]
    Archive(#[from] crate::archive::ArchiveError),
}

impl RenderError {
    pub fn retryable(&self) -> bool {
        matches!(self, RenderError::Browser(_) | RenderError::Archive(_))
    }
}

impl From<CdpError> for RenderError {
    fn from(e: CdpError) -> Self {
        match e {
            CdpError::Closed => RenderError::Browser(e.to_string()),
            CdpError::Protocol { .. } => RenderError::Page(e.to_string()),
        }
    }
}

/// Whether this configuration renders: on, a browser installed, and
/// walls for it on this machine (decided once; `Renderer::new` logs why
/// not).
pub fn available(settings: &crate::config::Render) -> bool {
    walls(settings).is_ok()
}

/// How the browser is walled in here, or why rendering cannot start.
fn walls(settings: &crate::config::Render) -> Result<sandbox::Plan, String> {
    static PLAN: std::sync::OnceLock<Result<sandbox::Plan, String>> = std::sync::OnceLock::new();
    if !settings.enabled {
        return Err("render.enabled is false".into());
    }
    let Some(exe) = browser::find(settings) else {
        return Err("no browser found (install chromium or set render.browser)".into());
    };
    PLAN.get_or_init(|| sandbox::plan(settings, &sandbox::Machine::probe(settings, &exe)))
        .clone()
}

pub struct Renderer {
    settings: crate::config::Render,
    user_agent: String,
    fetcher: Fetcher,
    max_body: usize,
    limits: Arc<Limits>,
    plan: sandbox::Plan,
    browser: Mutex<Option<Arc<Browser>>>,
    permits: Semaphore,
    stats: Arc<Stats>,
    /// Sub-requests are archived as the page's own fetch is.
    archive: Option<Arc<Archive>>,
}

impl Renderer {
    /// A renderer, if rendering is on and a browser is installed (it is
    /// started at the first render).
    pub fn new(
        settings: &Settings,
        fetcher: Fetcher,
        stats: Arc<Stats>,
        archive: Option<Arc<Archive>>,
    ) -> Option<Arc<Renderer>> {
        let r = &settings.render;
        let plan = match walls(r) {
            Ok(plan) => plan,
            Err(why) => {
                if r.enabled {
                    tracing::warn!(
                        "rendering refuses to start: {why}; this worker does not render"
                    );
                }
                return None;
            }
        };
        if !plan.sandbox {
            tracing::warn!("render.allow_unsandboxed: the browser runs WITHOUT Chromium's sandbox; pages can reach whatever its user can");
        }
        Some(Arc::new(Renderer {
            settings: r.clone(),
            user_agent: settings.crawl.user_agent.clone(),
            fetcher,
            max_body: settings.crawl.max_body_bytes,
            limits: Arc::new(Limits {
                max_requests: r.max_requests,
                max_bytes: r.max_bytes,
                parallel: r.parallel,
                third_party: r.third_party,
                block: r.block.clone(),
            }),
            plan,
            browser: Mutex::new(None),
            permits: Semaphore::new(r.concurrency),
            stats,
            archive,
        }))
    }

    /// `auto`: whether this plain page should be rendered (counted).
    pub fn wants(&self, body: &[u8]) -> bool {
        let yes = auto::looks_script_built(body, self.settings.auto_text);
        self.stats.emit(Event::RenderAuto { rendered: yes });
        yes
    }

    /// Close the browser (the run is over; no render is in flight).
    pub async fn shutdown(&self) {
        if let Some(b) = self.browser.lock().await.take() {
            close_when_unused(b).await;
        }
    }

    /// The running browser, started (or restarted) if need be.
    async fn browser(&self) -> Result<Arc<Browser>, RenderError> {
        let mut slot = self.browser.lock().await;
        if let Some(b) = slot.as_ref().filter(|b| b.alive()) {
            return Ok(b.clone());
        }
        if slot.take().is_some() {
            self.stats.emit(Event::BrowserRestarted(Restart::Gone));
        }
        let b = Arc::new(
            Browser::launch(
                &self.settings,
                &self.plan,
                &self.user_agent,
                self.max_message(),
            )
            .await
            .map_err(RenderError::Browser)?,
        );
        *slot = Some(b.clone());
        Ok(b)
    }

    /// The longest DevTools message read from the browser: the DOM (at
    /// most `crawl.max_body_bytes` UTF-8 bytes, up to six JSON bytes each
    /// when escaped) or a request's body, and room for the envelope.
    fn max_message(&self) -> usize {
        self.max_body.max(self.settings.max_bytes).saturating_mul(6) + (1 << 20)
    }

    /// After a render: the browser's usage is recorded, and one over its
    /// memory bound is retired (it stops when its last render ends) and
    /// the next render starts another.
    async fn record_usage(&self, b: &Arc<Browser>) {
        let (mb, cpu) = b.usage();
        self.stats.emit(Event::BrowserUsage { rss_mb: mb, cpu });
        if mb <= self.settings.max_memory_mb {
            return;
        }
        let mut slot = self.browser.lock().await;
        if slot.as_ref().is_some_and(|s| Arc::ptr_eq(s, b)) {
            if let Some(old) = slot.take() {
                tokio::spawn(close_when_unused(old));
            }
            self.stats
                .emit(Event::BrowserRestarted(Restart::OverMemory {
                    rss_mb: mb,
                    limit: self.settings.max_memory_mb,
                    cpu,
                }));
        }
    }

    /// Render `main` (the fetched response of `url`): the DOM after load
    /// and network idle, as a [`Fetched`] whose `elapsed` includes the
    /// render. With an archive, every sub-request is written to it for
    /// `owner`.
    pub async fn render(
        &self,
        url: &str,
        main: Arc<Fetched>,
        owner: Owner,
    ) -> Result<Fetched, RenderError> {
        let _permit = self.permits.acquire().await.expect("never closed");
        self.stats.emit(Event::RenderStarted);
        let started = Instant::now();
        let outcome = async {
            let b = self.browser().await?;
            let dom = self.load(&b, url, main.clone(), owner).await;
            if matches!(
                dom,
                Err(RenderError::Page(_) | RenderError::Timeout(_) | RenderError::Crashed)
            ) && !b.alive()
            {
                return Err(RenderError::Browser("the browser exited mid-render".into()));
            }
            self.record_usage(&b).await;
            dom
        }
        .await;
        let elapsed = started.elapsed();
        let outcome = outcome.and_then(|dom| {
            if dom.len() > self.max_body {
                Err(RenderError::TooLarge(self.max_body))
            } else {
                Ok(dom)
            }
        });
        let dom = match outcome {
            Ok(dom) => {
                self.stats.emit(Event::Rendered { elapsed });
                dom
            }
            Err(e) => {
                self.stats.emit(Event::RenderFailed { elapsed });
                return Err(e);
            }
        };
        let mut headers: Vec<(String, String)> = main
            .headers
            .iter()
            .filter(|(k, _)| !k.eq_ignore_ascii_case("content-type"))
            .cloned()
            .collect();
        headers.push(("content-type".into(), "text/html; charset=utf-8".into()));
        Ok(Fetched {
            status: main.status,
            reason: main.reason.clone(),
            response_url: main.response_url.clone(),
            request_headers: main.request_headers.clone(),
            headers,
            body: dom.into_bytes().into(),
            elapsed: main.elapsed + started.elapsed(),
            redirect: None,
            rendered: true,
            // The DOM is the browser's; the archive holds what was sent.
            encoded: None,
            version: main.version,
            archived: main.archived.clone(),
        })
    }

    /// One page in a fresh context: navigate, wait for load and network
    /// idle (bounded by `render.timeout`), read the DOM, close it all. A
    /// crash of the page's process ends it at once.
    async fn load(
        &self,
        b: &Browser,
        url: &str,
        main: Arc<Fetched>,
        owner: Owner,
    ) -> Result<String, RenderError> {
        let cdp = &b.cdp;
        let (ctx, target) = open_page(cdp).await?;
        let archive = self.archive.clone().map(|a| {
            let owner = Owner {
                via: Some(url.to_string()),
                ..owner
            };
            (a, owner)
        });
        let traffic = Arc::new(Traffic::new(&self.limits, archive));
        let dom = self.read_page(b, &target, url, main, &traffic).await;
        let refused = traffic.refused.load(std::sync::atomic::Ordering::SeqCst);
        self.stats.emit(Event::RenderRefused {
            requests: refused as u64,
        });
        let _ = bounded(cdp.call(None, "Target.closeTarget", json!({"targetId": target}))).await;
        dispose(cdp, &ctx).await;
        cdp.unroute(&traffic.sessions.lock());
        traffic.stop_archiving();
        if let Some(e) = traffic.unarchived.lock().take() {
            return Err(e.into());
        }
        dom
    }

    /// Attach to the page `target`, answer its requests with our fetcher,
    /// navigate to `url` and read its DOM once the network is idle, within
    /// `render.timeout`.
    async fn read_page(
        &self,
        b: &Browser,
        target: &str,
        url: &str,
        main: Arc<Fetched>,
        traffic: &Arc<Traffic>,
    ) -> Result<String, RenderError> {
        let cdp = &b.cdp;
        let attached = bounded(cdp.call(
            None,
            "Target.attachToTarget",
            json!({"targetId": target, "flatten": true}),
        ))
        .await??;
        let session = id(&attached, "sessionId")?;
        let (tx, events) = Cdp::events();
        b.cdp.route(&session, tx.clone());
        traffic.sessions.lock().push(session.clone());
        let s = Some(session.as_str());
        for (method, params) in intercept::intercept_commands() {
            bounded(cdp.call(s, method, params)).await??;
        }
        let tree = bounded(cdp.call(s, "Page.getFrameTree", json!({}))).await??;
        let page = Arc::new(Page {
            cdp: b.cdp.clone(),
            main_frame: id(&tree["frameTree"]["frame"], "id")?,
            domain: crate::links::domain::of_url(url),
            main,
        });
        let server = tokio::spawn(intercept::serve(
            page,
            tx,
            events,
            self.fetcher.clone(),
            self.limits.clone(),
            traffic.clone(),
        ));
        let timeout = self.settings.timeout;
        let idle = self.settings.idle;
        let dom = tokio::time::timeout(timeout, async {
            tokio::select! {
                dom = async {
                    navigate(cdp, &session, url).await?;
                    traffic.idle(idle).await;
                    dom(cdp, &session, self.max_body).await
                } => dom,
                _ = traffic.crashed() => Err(RenderError::Crashed),
            }
        })
        .await
        .unwrap_or(Err(RenderError::Timeout(timeout)));
        server.abort();
        dom
    }
}

/// A fresh browser context with a blank page in it: the context's id and
/// the page's. The context is disposed again if the page cannot be made.
async fn open_page(cdp: &Cdp) -> Result<(String, String), RenderError> {
    let ctx = bounded(cdp.call(
        None,
        "Target.createBrowserContext",
        json!({"disposeOnDetach": true}),
    ))
    .await??;
    let ctx = id(&ctx, "browserContextId")?;
    let target = match bounded(cdp.call(
        None,
        "Target.createTarget",
        json!({"url": "about:blank", "browserContextId": ctx}),
    ))
    .await
    {
        Ok(Ok(t)) => match id(&t, "targetId") {
            Ok(t) => t,
            Err(e) => {
                dispose(cdp, &ctx).await;
                return Err(e);
            }
        },
        Ok(Err(e)) => {
            dispose(cdp, &ctx).await;
            return Err(e.into());
        }
        Err(e) => return Err(e),
    };
    Ok((ctx, target))
}

/// Dispose of browser context `ctx` (and the pages in it).
async fn dispose(cdp: &Cdp, ctx: &str) {
    let _ = bounded(cdp.call(
        None,
        "Target.disposeBrowserContext",
        json!({"browserContextId": ctx}),
    ))
    .await;
}

/// A string field the browser's answer must carry: without it the
/// browser is not answering as DevTools does.
fn id(answer: &Value, field: &str) -> Result<String, RenderError> {
    answer[field]
        .as_str()
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .ok_or_else(|| RenderError::Browser(format!("no {field} in the browser's answer")))
}

/// Navigate and wait for the load event. `Page.navigate` answers when the
/// document commits, but a page that starts another navigation at once
/// (which we answer 204) can leave it unanswered: the document's
/// `readyState` is watched as well.
async fn navigate(cdp: &Cdp, session: &str, url: &str) -> Result<(), RenderError> {
    let s = Some(session);
    let mut navigation = std::pin::pin!(cdp.call(s, "Page.navigate", json!({"url": url})));
    let mut committed = false;
    loop {
        if !committed {
            tokio::select! {
                r = &mut navigation => {
                    let r = r?;
                    if let Some(e) = r["errorText"].as_str().filter(|e| !e.is_empty()) {
                        return Err(RenderError::Page(e.to_string()));
                    }
                    committed = true;
                    continue;
                }
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        } else {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if evaluate(cdp, session, "document.readyState").await? == "complete" {
            return Ok(());
        }
    }
}

/// `js`'s value, by value.
async fn evaluate(cdp: &Cdp, session: &str, js: &str) -> Result<Value, RenderError> {
    let mut out = cdp
        .call(
            Some(session),
            "Runtime.evaluate",
            json!({"expression": js, "returnByValue": true}),
        )
        .await?;
    if let Some(e) = out.get("exceptionDetails") {
        return Err(RenderError::Page(format!(
            "evaluating in the page: {}",
            e["text"].as_str().unwrap_or("an exception")
        )));
    }
    Ok(out["result"]["value"].take())
}

/// The document as it stands, serialized, if it is at most `max` UTF-8
/// bytes: measured in the page, so a larger one never crosses DevTools.
/// (UTF-8 takes at least one byte per UTF-16 unit and at most three, so
/// only a length in between is encoded to be measured.)
/// Evaluated in whatever context the page has now: a navigation the page
/// attempted (and that we answered 204) leaves no new one to wait for.
async fn dom(cdp: &Cdp, session: &str, max: usize) -> Result<String, RenderError> {
    let js = format!(
        "(() => {{ const h = (document.doctype ? new XMLSerializer().serializeToString(document.doctype) : '') + document.documentElement.outerHTML; \
         return (h.length <= {max} && (h.length * 3 <= {max} || new TextEncoder().encode(h).length <= {max})) ? h : {{tooLarge: h.length}}; }})()"
    );
    match evaluate(cdp, session, &js).await? {
        Value::String(html) if !html.is_empty() => Ok(html),
        Value::Object(_) => Err(RenderError::TooLarge(max)),
        _ => Err(RenderError::Page("the page has no document".into())),
    }
}

/// Close a retired browser once its last render has let go of it.
async fn close_when_unused(mut b: Arc<Browser>) {
    let deadline = Instant::now() + SETUP * 6;
    loop {
        if let Some(b) = Arc::get_mut(&mut b) {
            b.close().await;
            return;
        }
        if Instant::now() > deadline {
            // Dropped with its last user: killed then (kill-on-drop).
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A DevTools call that must not hang a render: a hung browser is a
/// failed one.
async fn bounded<T>(f: impl std::future::Future<Output = T>) -> Result<T, RenderError> {
    tokio::time::timeout(SETUP, f)
        .await
        .map_err(|_| RenderError::Browser(format!("no answer from the browser in {SETUP:?}")))
}
