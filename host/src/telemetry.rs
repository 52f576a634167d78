//! Logging: `tracing` to stderr, human text by default or JSON lines.
//! `RUST_LOG` overrides the configured level.

use crate::config::{Log, LogFormat};
use tracing_subscriber::EnvFilter;

pub fn init(log: &Log) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "{},wasmtime=warn,cranelift=warn,hyper=warn,reqwest=warn",
            log.level
        ))
    });
    // Colours only for a person at a terminal, not in files and pipes.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match log.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.with_target(false).compact().try_init(),
    };
}
