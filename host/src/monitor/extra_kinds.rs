//! Monitor plugins on the ingest path: a message that fits none of the
//! contract's four kinds is offered to each loaded `monitor-plugin`
//! component (by name order) whose schema it fits. The plugin's crawl
//! requests are validated like any other; its replies go out through the
//! control plane.

use super::schema::Rejection;
use super::store::Ingested;
use super::ControlRequest;
use crate::plugins::{Kind, MonitorAction, Plugin, Registry};
use crate::request::CrawlRequest;
use parking_lot::Mutex;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// A plugin's schema: required and optional field names.
type Schema = (Vec<String>, Vec<String>);

#[derive(Clone, Default)]
pub struct MonitorPlugins {
    registry: Option<Arc<Registry>>,
    maxdepth_limit: u32,
    /// Schemas by plugin hash: asked once per loaded version.
    schemas: Arc<Mutex<HashMap<String, Schema>>>,
}

impl MonitorPlugins {
    pub fn new(registry: Arc<Registry>, maxdepth_limit: u32) -> MonitorPlugins {
        MonitorPlugins {
            registry: Some(registry),
            maxdepth_limit,
            schemas: Arc::default(),
        }
    }

    /// `None` if no plugin takes the message; else the plugin's name and
    /// what to ingest, or why its plugin refused it.
    pub async fn handle(&self, text: &str) -> Option<Result<(String, Vec<Ingested>), Rejection>> {
        let registry = self.registry.as_ref()?;
        let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(text) else {
            return None;
        };
        if obj.values().any(Value::is_null) {
            return None;
        }
        let mut plugins: Vec<Arc<Plugin>> = registry
            .list()
            .into_iter()
            .filter(|p| p.kind == Kind::Monitor)
            .collect();
        plugins.sort_by(|a, b| a.name.cmp(&b.name));
        for p in plugins {
            let Some((required, optional)) = self.schema(&p).await else {
                continue;
            };
            let fits = required.iter().all(|f| obj.contains_key(f))
                && obj
                    .keys()
                    .all(|k| required.contains(k) || optional.contains(k));
            if !fits {
                continue;
            }
            let name = p.name.to_string();
            let (plugin, body) = (p.clone(), text.to_string());
            let out = tokio::task::spawn_blocking(move || plugin.handle(&body)).await;
            let actions = match out {
                Ok(Ok(a)) => a,
                Ok(Err(e)) => return Some(Err(Rejection(format!("invalid {name} request: {e}")))),
                Err(e) => return Some(Err(Rejection(format!("plugin {name} failed: {e}")))),
            };
            return Some(self.convert(&name, actions).map(|v| (name, v)));
        }
        None
    }

    async fn schema(&self, p: &Arc<Plugin>) -> Option<Schema> {
        if let Some(s) = self.schemas.lock().get(&p.hash) {
            return Some(s.clone());
        }
        let plugin = p.clone();
        match tokio::task::spawn_blocking(move || plugin.describe()).await {
            Ok(Ok(s)) => {
                self.schemas.lock().insert(p.hash.clone(), s.clone());
                Some(s)
            }
            Ok(Err(e)) => {
                tracing::warn!(plugin = %p.name, error = %e, "monitor plugin has no usable schema; skipped");
                None
            }
            Err(_) => None,
        }
    }

    fn convert(&self, name: &str, actions: Vec<MonitorAction>) -> Result<Vec<Ingested>, Rejection> {
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            Rejection(format!("plugin {name} produced an invalid {what}: {e}"))
        };
        actions
            .into_iter()
            .map(|a| match a {
                MonitorAction::Crawl(json) => {
                    let v: Value =
                        serde_json::from_str(&json).map_err(|e| bad("crawl request", &e))?;
                    let r = CrawlRequest::from_value(v, self.maxdepth_limit)
                        .map_err(|e| bad("crawl request", &e))?;
                    Ok(Ingested::Seed {
                        job: Box::new(r.into_seed()),
                        text: json,
                    })
                }
                MonitorAction::Reply(json) => {
                    let mut m: Map<String, Value> =
                        serde_json::from_str(&json).map_err(|e| bad("reply", &e))?;
                    m.entry("server_time")
                        .or_insert_with(|| crate::result::now_unix().into());
                    Ok(Ingested::Control(
                        serde_json::to_string(&ControlRequest::Reply(m))
                            .expect("a control request serialises"),
                    ))
                }
            })
            .collect()
    }
}
