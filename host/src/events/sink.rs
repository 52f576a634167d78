//! Where events go: the [`EventSink`] trait. Embedded, JSON lines to a
//! file or stderr ([`JsonlEvents`]); in a cluster, the `<prefix>.events`
//! topic behind the same trait, and each crawl's latest kept in Redis for
//! the status page and REST ([`Tee`] sends to both).

use super::event::Event;
use async_trait::async_trait;
use parking_lot::Mutex;
use std::io::Write;
use std::sync::Arc;

#[async_trait]
pub trait EventSink: Send + Sync {
    /// Send one event; Ok once it is written (or acknowledged).
    async fn send(&self, event: &Event) -> std::io::Result<()>;
}

/// One JSON event per line (`run --events FILE`, else stderr).
pub struct JsonlEvents {
    out: Mutex<Box<dyn Write + Send>>,
}

impl JsonlEvents {
    pub fn new(out: Box<dyn Write + Send>) -> JsonlEvents {
        JsonlEvents {
            out: Mutex::new(out),
        }
    }
}

#[async_trait]
impl EventSink for JsonlEvents {
    async fn send(&self, event: &Event) -> std::io::Result<()> {
        let mut line = event.json();
        line.push(b'\n');
        let mut out = self.out.lock();
        out.write_all(&line)?;
        out.flush()
    }
}

/// Every event to each of several sinks, in order; the first error is
/// returned once all were tried.
pub struct Tee(pub Vec<Arc<dyn EventSink>>);

#[async_trait]
impl EventSink for Tee {
    async fn send(&self, event: &Event) -> std::io::Result<()> {
        let mut first = Ok(());
        for sink in &self.0 {
            let sent = sink.send(event).await;
            if first.is_ok() {
                first = sent;
            }
        }
        first
    }
}
