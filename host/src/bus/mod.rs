//! Where crawl results go: the [`ResultSink`] trait. The embedded sink
//! writes JSON lines to stdout or a file; [`kafka::KafkaSink`] publishes
//! them to the broker behind the same trait.

pub mod kafka;

use async_trait::async_trait;
use parking_lot::Mutex;
use serde_json::{Map, Value};
use std::io::{BufWriter, Write};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum SinkError {
    #[error("cannot write results: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot encode result: {0}")]
    Encode(#[from] serde_json::Error),
}

#[async_trait]
pub trait ResultSink: Send + Sync {
    /// Deliver one crawl result. When this returns Ok, the result is handed
    /// over for good (written, or acknowledged by the broker), and only then
    /// is the request's lease acked.
    async fn publish(&self, result: &Map<String, Value>) -> Result<(), SinkError>;
    async fn flush(&self) -> Result<(), SinkError>;
}

/// JSON lines, keys sorted, one result per line, flushed per line so a
/// reader sees each result as soon as it is done.
pub struct JsonlSink {
    out: Mutex<BufWriter<Box<dyn Write + Send>>>,
}

impl JsonlSink {
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        JsonlSink {
            out: Mutex::new(BufWriter::with_capacity(256 * 1024, out)),
        }
    }

    pub fn stdout() -> Self {
        Self::new(Box::new(std::io::stdout()))
    }
}

#[async_trait]
impl ResultSink for JsonlSink {
    async fn publish(&self, result: &Map<String, Value>) -> Result<(), SinkError> {
        let mut line = serde_json::to_vec(result)?;
        line.push(b'\n');
        let mut out = self.out.lock();
        out.write_all(&line)?;
        out.flush()?;
        Ok(())
    }

    async fn flush(&self) -> Result<(), SinkError> {
        self.out.lock().flush()?;
        Ok(())
    }
}
