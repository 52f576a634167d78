//! Where crawl results go: the [`ResultSink`] trait. The embedded sink
//! writes JSON lines to stdout or a file; [`kafka::KafkaSink`] publishes
//! them to the broker behind the same trait.

mod fit;
pub mod kafka;

use crate::result::CrawlResult;
use async_trait::async_trait;
use parking_lot::Mutex;
use std::io::{ErrorKind, Write};
use thiserror::Error;

/// Why a result was not delivered. The crawl loop acts on the class: it
/// retries a [`SinkError::Retryable`] (holding the lease), and sends an
/// [`SinkError::Undeliverable`] result to [`ResultSink::undeliverable`].
#[derive(Debug, Error)]
pub enum SinkError {
    /// May work later: a full disk, a broker away.
    #[error("{0}")]
    Retryable(String),
    /// A service the result needs is away (the object store): retried,
    /// and past `crawl.delivery_timeout` the request goes back to the
    /// queue to be crawled again, never dropped.
    #[error("{0}")]
    Unavailable(String),
    /// Can never be delivered here: too large even without its body, a
    /// topic that cannot be created, an output that is gone.
    #[error("{0}")]
    Undeliverable(String),
}

impl SinkError {
    pub fn retryable(&self) -> bool {
        matches!(self, SinkError::Retryable(_) | SinkError::Unavailable(_))
    }
}

impl From<std::io::Error> for SinkError {
    fn from(e: std::io::Error) -> Self {
        let msg = format!("cannot write results: {e}");
        match e.kind() {
            ErrorKind::StorageFull
            | ErrorKind::QuotaExceeded
            | ErrorKind::Interrupted
            | ErrorKind::WouldBlock
            | ErrorKind::TimedOut
            | ErrorKind::OutOfMemory => SinkError::Retryable(msg),
            _ => SinkError::Undeliverable(msg),
        }
    }
}

#[async_trait]
pub trait ResultSink: Send + Sync {
    /// Deliver one crawl result. When this returns Ok, the result is handed
    /// over for good (written, or acknowledged by the broker), and only then
    /// may the request's lease be acked.
    async fn publish(&self, result: &CrawlResult) -> Result<(), SinkError>;
    /// Report a result that can never be delivered, with the reason, where
    /// an operator sees it (Kafka: `<prefix>.errors`; embedded: stderr).
    async fn undeliverable(&self, result: &CrawlResult, reason: &str) -> Result<(), SinkError>;
    async fn flush(&self) -> Result<(), SinkError>;
}

/// JSON lines, keys sorted, one result per line, written whole per call so
/// a reader sees each result as soon as it is done, and a stop never
/// leaves half a line behind.
pub struct JsonlSink {
    out: Mutex<Output>,
    base64_body: bool,
}

struct Output {
    w: Box<dyn Write + Send>,
    /// A write failed part-way: the next line starts on a line of its own,
    /// so the torn fragment cannot spoil it.
    torn: bool,
}

impl JsonlSink {
    pub fn new(out: Box<dyn Write + Send>, base64_body: bool) -> Self {
        JsonlSink {
            out: Mutex::new(Output {
                w: out,
                torn: false,
            }),
            base64_body,
        }
    }

    pub fn stdout(base64_body: bool) -> Self {
        Self::new(Box::new(std::io::stdout()), base64_body)
    }
}

#[async_trait]
impl ResultSink for JsonlSink {
    async fn publish(&self, result: &CrawlResult) -> Result<(), SinkError> {
        let mut line = result.json(self.base64_body).to_vec();
        line.push(b'\n');
        let mut out = self.out.lock();
        if out.torn {
            line.insert(0, b'\n');
        }
        let written = out.w.write_all(&line).and_then(|()| out.w.flush());
        out.torn = written.is_err();
        Ok(written?)
    }

    async fn undeliverable(&self, result: &CrawlResult, reason: &str) -> Result<(), SinkError> {
        let line = serde_json::json!({"undelivered": reason, "result": result.summary()});
        let mut err = std::io::stderr().lock();
        writeln!(err, "{line}")?;
        Ok(())
    }

    async fn flush(&self) -> Result<(), SinkError> {
        self.out.lock().w.flush()?;
        Ok(())
    }
}
