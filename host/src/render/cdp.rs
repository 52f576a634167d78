//! A DevTools protocol client over the pipe Chromium opens with
//! `--remote-debugging-pipe` (its fd 3 reads commands, fd 4 writes
//! answers and events, each message JSON ended by a NUL byte). No port is
//! listened on, so no process but the worker that holds the pipe's ends
//! can drive the browser (ADR 0006). Sessions are flat: one pipe, every
//! message of a target tagged with its `sessionId`.

use parking_lot::Mutex;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

#[derive(Debug, Error, Clone)]
pub enum CdpError {
    /// The pipe is closed: the browser exited, or was cut off for a
    /// message over the size bound.
    #[error("the browser's DevTools pipe is closed")]
    Closed,
    /// The browser answered the command with an error.
    #[error("{method}: {message}")]
    Protocol { method: String, message: String },
}

/// An event of one session (a page, or a frame or worker under it).
#[derive(Debug)]
pub struct Event {
    pub session: String,
    pub method: String,
    pub params: Value,
}

/// Events a render has not read yet, per session: past it, reading the
/// pipe waits (the browser's writes block), so a page flooding events
/// costs no memory here.
const EVENT_QUEUE: usize = 1024;

type Reply = oneshot::Sender<Result<Value, CdpError>>;

#[derive(Default)]
struct Routes {
    pending: HashMap<u64, (String, Reply)>,
    sessions: HashMap<String, mpsc::Sender<Event>>,
}

pub struct Cdp {
    out: mpsc::UnboundedSender<Vec<u8>>,
    routes: Arc<Mutex<Routes>>,
    next: AtomicU64,
    open: Arc<AtomicBool>,
}

impl Cdp {
    /// Talk over `write` (the browser's fd 3) and `read` (its fd 4). An
    /// incoming message longer than `max_message` bytes closes the pipe.
    pub fn start(
        write: impl AsyncWrite + Unpin + Send + 'static,
        read: impl AsyncRead + Unpin + Send + 'static,
        max_message: usize,
    ) -> Cdp {
        let (out, rx) = mpsc::unbounded_channel();
        let routes = Arc::new(Mutex::new(Routes::default()));
        let open = Arc::new(AtomicBool::new(true));
        tokio::spawn(writer(write, rx, open.clone()));
        tokio::spawn(reader(read, routes.clone(), open.clone(), max_message));
        Cdp {
            out,
            routes,
            next: AtomicU64::new(1),
            open,
        }
    }

    pub fn open(&self) -> bool {
        self.open.load(SeqCst)
    }

    /// Send `method` (to `session`, or to the browser) and wait for its
    /// answer. Callers bound the wait.
    pub async fn call(
        &self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, CdpError> {
        let id = self.next.fetch_add(1, SeqCst);
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = s.into();
        }
        let (tx, rx) = oneshot::channel();
        self.routes.lock().pending.insert(id, (method.into(), tx));
        let bytes = serde_json::to_vec(&msg).expect("a JSON value serializes");
        if !self.open() || self.out.send(bytes).is_err() {
            self.routes.lock().pending.remove(&id);
            return Err(CdpError::Closed);
        }
        rx.await.unwrap_or(Err(CdpError::Closed))
    }

    /// Send without waiting for the answer (answers to paused requests:
    /// the request may be gone by then, and nothing follows from it).
    pub fn send(&self, session: &str, method: &str, params: Value) {
        let id = self.next.fetch_add(1, SeqCst);
        let msg = json!({"id": id, "method": method, "params": params, "sessionId": session});
        let _ = self
            .out
            .send(serde_json::to_vec(&msg).expect("a JSON value serializes"));
    }

    /// `session`'s events go to `to` from now on.
    pub fn route(&self, session: &str, to: mpsc::Sender<Event>) {
        self.routes.lock().sessions.insert(session.into(), to);
    }

    /// Forget sessions whose events nobody reads any more.
    pub fn unroute(&self, sessions: &[String]) {
        let mut r = self.routes.lock();
        for s in sessions {
            r.sessions.remove(s);
        }
    }

    /// A channel for one render's events.
    pub fn events() -> (mpsc::Sender<Event>, mpsc::Receiver<Event>) {
        mpsc::channel(EVENT_QUEUE)
    }
}

async fn writer(
    mut pipe: impl AsyncWrite + Unpin,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
    open: Arc<AtomicBool>,
) {
    while let Some(mut msg) = rx.recv().await {
        msg.push(0);
        if pipe.write_all(&msg).await.is_err() || pipe.flush().await.is_err() {
            break;
        }
    }
    open.store(false, SeqCst);
}

async fn reader(
    mut pipe: impl AsyncRead + Unpin,
    routes: Arc<Mutex<Routes>>,
    open: Arc<AtomicBool>,
    max_message: usize,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    'read: loop {
        let n = match pipe.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let scanned = buf.len();
        buf.extend_from_slice(&chunk[..n]);
        let mut start = 0;
        let mut from = scanned;
        while let Some(end) = buf[from..].iter().position(|b| *b == 0).map(|i| from + i) {
            if end - start > max_message {
                tracing::warn!(
                    bytes = end - start,
                    max_message,
                    "a DevTools message over the bound: the browser is cut off"
                );
                break 'read;
            }
            dispatch(&buf[start..end], &routes).await;
            start = end + 1;
            from = start;
        }
        buf.drain(..start);
        if buf.len() > max_message {
            tracing::warn!(
                max_message,
                "a DevTools message over the bound: the browser is cut off"
            );
            break;
        }
    }
    open.store(false, SeqCst);
    // Every caller still waiting learns that the browser is gone.
    let mut r = routes.lock();
    for (_, (_, reply)) in r.pending.drain() {
        let _ = reply.send(Err(CdpError::Closed));
    }
    r.sessions.clear();
}

/// One message: an answer to its caller, an event to its session's reader.
async fn dispatch(raw: &[u8], routes: &Mutex<Routes>) {
    let Ok(mut msg) = serde_json::from_slice::<Value>(raw) else {
        tracing::debug!("an unreadable DevTools message");
        return;
    };
    if let Some(id) = msg.get("id").and_then(Value::as_u64) {
        let Some((method, reply)) = routes.lock().pending.remove(&id) else {
            return;
        };
        let answer = match msg.get_mut("error") {
            Some(e) => Err(CdpError::Protocol {
                method,
                message: e["message"].as_str().unwrap_or("error").to_string(),
            }),
            None => Ok(msg
                .get_mut("result")
                .map(Value::take)
                .unwrap_or(Value::Null)),
        };
        let _ = reply.send(answer);
        return;
    }
    // A browser-level event has no sessionId: "" routes it to no session.
    let session = msg["sessionId"].as_str().unwrap_or_default().to_string();
    let to = routes.lock().sessions.get(&session).cloned();
    if let Some(to) = to {
        let event = Event {
            // An event without a method is passed on with an empty one.
            method: msg["method"].as_str().unwrap_or_default().to_string(),
            params: msg
                .get_mut("params")
                .map(Value::take)
                .unwrap_or(Value::Null),
            session,
        };
        // Its render ended: the event has no reader.
        let _ = to.send(event).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A browser stand-in on the other ends of two in-memory pipes.
    fn pair(max: usize) -> (Cdp, tokio::io::DuplexStream, tokio::io::DuplexStream) {
        let (ours_w, theirs_r) = tokio::io::duplex(1 << 20);
        let (theirs_w, ours_r) = tokio::io::duplex(1 << 20);
        (Cdp::start(ours_w, ours_r, max), theirs_r, theirs_w)
    }

    async fn next_message(r: &mut tokio::io::DuplexStream) -> Value {
        let mut msg = Vec::new();
        loop {
            let b = r.read_u8().await.expect("test");
            if b == 0 {
                return serde_json::from_slice(&msg).expect("test");
            }
            msg.push(b);
        }
    }

    #[tokio::test]
    async fn answers_reach_their_callers_and_events_their_session() {
        let (cdp, mut from_us, mut to_us) = pair(1 << 16);
        let (tx, mut events) = Cdp::events();
        cdp.route("S", tx);
        let call = tokio::spawn(async move {
            let r = cdp.call(Some("S"), "Runtime.evaluate", json!({})).await;
            (cdp, r)
        });
        let sent = next_message(&mut from_us).await;
        assert_eq!(sent["method"], "Runtime.evaluate");
        assert_eq!(sent["sessionId"], "S");
        let reply = format!(
            "{{\"method\":\"Fetch.requestPaused\",\"sessionId\":\"S\",\"params\":{{\"requestId\":\"r\"}}}}\0{{\"id\":{},\"result\":{{\"v\":1}}}}\0",
            sent["id"]
        );
        to_us.write_all(reply.as_bytes()).await.expect("test");
        let (cdp, r) = call.await.expect("test");
        assert_eq!(r.expect("test"), json!({"v": 1}));
        let e = events.recv().await.expect("test");
        assert_eq!(
            (e.method.as_str(), e.session.as_str()),
            ("Fetch.requestPaused", "S")
        );
        assert!(cdp.open());
    }

    #[tokio::test]
    async fn a_message_over_the_bound_closes_the_pipe_and_fails_the_callers() {
        let (cdp, mut from_us, mut to_us) = pair(1000);
        let cdp = Arc::new(cdp);
        let c = cdp.clone();
        let call = tokio::spawn(async move { c.call(None, "Browser.getVersion", json!({})).await });
        next_message(&mut from_us).await;
        to_us.write_all(&[b'x'; 5000]).await.expect("test");
        assert!(matches!(call.await.expect("test"), Err(CdpError::Closed)));
        assert!(!cdp.open());
    }
}
