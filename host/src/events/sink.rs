//! Where events go: the [`EventSink`] trait. Embedded, JSON lines to a
//! file or stderr ([`JsonlEvents`]); in a cluster, the `<prefix>.events`
//! topic behind the same trait.

use super::event::Event;
use async_trait::async_trait;
use parking_lot::Mutex;
use std::io::Write;

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
