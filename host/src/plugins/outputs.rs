//! What a plugin call gives back: each kind's answer, typed, and why a
//! call failed.

use serde_json::Value;
use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum CallError {
    #[error("plugin `{plugin}` ran past its {ms} ms time limit and was stopped")]
    Timeout { plugin: String, ms: u64 },
    #[error("plugin `{plugin}` exceeded its {mb} MiB memory limit and was stopped")]
    Memory { plugin: String, mb: u64 },
    #[error("plugin `{plugin}` ran out of fuel and was stopped")]
    Fuel { plugin: String },
    #[error("plugin `{plugin}` trapped: {reason}")]
    Trap { plugin: String, reason: String },
    #[error("plugin `{plugin}` failed: {reason}")]
    Guest { plugin: String, reason: String },
    #[error("plugin `{plugin}` returned bad output: {reason}")]
    BadOutput { plugin: String, reason: String },
    #[error("plugin `{plugin}` could not be instantiated: {reason}")]
    Instantiate { plugin: String, reason: String },
    #[error("plugin `{plugin}` went over a limit and was stopped: {reason}")]
    Limit { plugin: String, reason: String },
    #[error("plugin `{plugin}` is a {kind} plugin and cannot do that")]
    WrongKind { plugin: String, kind: String },
}

/// What a spider yields.
#[derive(Debug, Clone)]
pub enum Output {
    Request(SpiderRequest),
    Item(SpiderItem),
    /// A data record's fields (`response.emit`): sent apart from the page.
    Record(Vec<(String, Value)>),
}

#[derive(Debug, Clone)]
pub struct SpiderRequest {
    pub url: String,
    pub priority: Option<i32>,
    pub spiderid: Option<String>,
    pub method: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub meta: Vec<(String, String)>,
    pub dont_filter: bool,
}

#[derive(Debug, Clone, Default)]
pub struct SpiderItem {
    pub links: Vec<(String, String)>,
    pub fields: Vec<(String, Value)>,
}

#[derive(Debug, Clone)]
pub enum RequestAction {
    Proceed {
        url: String,
        method: String,
        headers: Vec<(String, String)>,
    },
    Drop(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum ResponseAction {
    Proceed,
    Retry(String),
    Drop(String),
}

/// What a monitor plugin makes of a message (JSON texts).
#[derive(Debug, Clone)]
pub enum MonitorAction {
    Crawl(String),
    Reply(String),
}

#[derive(Debug, Clone)]
pub enum ItemAction {
    Keep(Vec<(String, Value)>),
    Drop(String),
}
