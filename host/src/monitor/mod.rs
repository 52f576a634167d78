//! The monitors (contract §2): what arrives on the incoming topic is told
//! apart and validated ([`schema`]), queued or handed on by the ingest
//! monitor ([`ingest`], `spinneret kafka-monitor`), and answered by the
//! control plane ([`control`], `spinneret redis-monitor`).

pub mod control;
pub mod extra_kinds;
pub mod info;
pub mod ingest;
pub mod schema;
pub mod stats;
pub mod store;

use schema::{ActionRequest, DomainConfigRequest, StatsRequest};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// An entry of the control stream: what the ingest monitor (or the expiry
/// check, or a monitor plugin) hands to the control plane.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ControlRequest {
    Action(ActionRequest),
    Stats(StatsRequest),
    DomainConfig(DomainConfigRequest),
    /// A crawl passed its `expires` (written by the expiry script).
    Expired {
        cref: String,
        purged: u64,
    },
    /// A reply a monitor plugin built, sent as is.
    Reply(Map<String, Value>),
    /// A stop as the ingest script stored it, in order with the seeds
    /// around it: it purges only requests queued before it (job ids up to
    /// `horizon`), never a seed sent after it. A sharded frontier has
    /// one horizon per shard (the first is `horizon`).
    StopQueued {
        request: ActionRequest,
        horizon: u64,
        #[serde(default)]
        horizons: Vec<u64>,
    },
}

/// The domain-config ack (contract §4.2), with `error` when the change
/// was not stored.
pub fn domain_ack(d: &DomainConfigRequest, now: i64, error: Option<String>) -> Map<String, Value> {
    let mut r = Map::new();
    r.insert(
        "action".into(),
        serde_json::to_value(d.action).expect("an action kind serialises"),
    );
    r.insert("domain".into(), d.domain.clone().into());
    r.insert("appid".into(), d.appid.clone().into());
    r.insert("uuid".into(), d.uuid.clone().into());
    r.insert("server_time".into(), now.into());
    if let Some(e) = error {
        r.insert("error".into(), e.into());
    }
    r
}

impl ControlRequest {
    /// The name its handling is counted under in the monitors' stats.
    pub fn stat_name(&self) -> &'static str {
        match self {
            ControlRequest::Action(a) => a.action.name(),
            ControlRequest::Stats(_) => "stats",
            ControlRequest::DomainConfig(_) => "domain-config",
            ControlRequest::Expired { .. } => "expire",
            ControlRequest::Reply(_) => "plugin-reply",
            ControlRequest::StopQueued { .. } => "stop",
        }
    }
}
