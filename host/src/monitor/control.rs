//! The control plane (`spinneret redis-monitor`, or inside a worker or
//! `up`): reads the control stream, answers info, stop, stats and
//! domain-config requests and reports expired crawls on
//! `outbound_firehose`. The stream's consumer group gives each entry to one
//! control plane; an entry is forgotten only after the broker acknowledged
//! its reply, and a silent control plane's entries are taken over. So
//! every request gets its reply, and two requests get two.

use super::info;
use super::schema::{ActionKind, ActionRequest, DomainConfigKind, DomainConfigRequest, StatsKind};
use super::ControlRequest;
use crate::backoff::Backoff;
use crate::bus::kafka::{BusError, KafkaBus};
use crate::events::EventSink;
use crate::monitor::store::DomainAction;
use crate::monitor::store::MonitorStore;
use crate::scheduler::{Ask, StoreError};
use crate::shutdown::Shutdown;
use crate::timeouts;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::Instant;

pub struct ControlPlane {
    store: MonitorStore,
    bus: Arc<KafkaBus>,
    /// This reader's name in the stream's consumer group.
    consumer: String,
}

impl ControlPlane {
    pub fn new(store: MonitorStore, bus: Arc<KafkaBus>) -> ControlPlane {
        let consumer = format!("{}:{:08x}", store.machine(), rand_u32());
        ControlPlane {
            store,
            bus,
            consumer,
        }
    }

    /// Answer control requests until `stop`. A request being answered is
    /// finished first (it is acked only after its reply is sent).
    pub async fn run(&self, stop: Shutdown) {
        let mut backoff = Backoff::standard();
        let mut last_upkeep: Option<Instant> = None;
        tracing::info!(consumer = %self.consumer, "control plane started");
        loop {
            if last_upkeep.is_none_or(|t| t.elapsed() >= timeouts::UPKEEP) {
                last_upkeep = Some(Instant::now());
                if let Err(e) = self.upkeep().await {
                    tracing::warn!(error = %e, "control plane upkeep failed; retrying");
                }
            }
            let read = tokio::select! {
                r = self.store.control_read(&self.consumer, 64, timeouts::CONTROL_READ_BLOCK) => r,
                _ = stop.wait() => return,
            };
            match read {
                Ok(entries) => {
                    backoff.reset();
                    for (id, body) in entries {
                        if let Err(e) = self.answer(&id, &body).await {
                            tracing::warn!(error = %e, "control request not finished; it will be retried");
                        }
                    }
                }
                Err(e) => {
                    self.store.reset_blocking().await;
                    let wait = backoff.next_delay();
                    tracing::warn!(error = %e, retry_in = ?wait, "Redis unavailable to the control plane, retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stop.wait() => return,
                    }
                }
            }
        }
    }

    async fn upkeep(&self) -> Result<(), StoreError> {
        self.store.heartbeat("redis-monitor").await?;
        // Expired crawls land on the control stream; this only makes them
        // due even when no worker runs.
        self.store.expire_due().await?;
        Ok(())
    }

    /// Handle one stream entry: reply, then forget it.
    async fn answer(&self, id: &str, body: &str) -> Result<(), StoreError> {
        let request: ControlRequest = match serde_json::from_str(body) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, %body, "dropping an unreadable control request");
                self.store.control_done(&[id.to_string()]).await?;
                return Ok(());
            }
        };
        let name = request.stat_name();
        if let Some(reply) = self.reply_to(request).await? {
            match self.bus.reply(&reply).await {
                Ok(()) => {}
                Err(e @ BusError::TooLarge { .. }) => {
                    tracing::error!(error = %e, "reply too large for the broker; dropped")
                }
                Err(e) => return Err(StoreError::Unavailable(e.to_string())),
            }
        }
        self.store.control_done(&[id.to_string()]).await?;
        self.store.count_handled('r', name, 1).await?;
        Ok(())
    }

    /// The reply (contract §4.2); `None` when there is none to send (an
    /// expired crawl whose state is gone).
    async fn reply_to(
        &self,
        request: ControlRequest,
    ) -> Result<Option<Map<String, Value>>, StoreError> {
        let now = crate::result::now_unix();
        let reply = match request {
            ControlRequest::Action(a) => self.action_reply(a, now).await?,
            ControlRequest::StopQueued {
                request: a,
                horizon,
                horizons,
            } => {
                // Only a stop naming a crawl is queued (`ingest::action`);
                // an entry without one stops nothing and is not read again.
                let Some(c) = a.crawlid else {
                    tracing::warn!(appid = %a.appid, "queued stop names no crawl; nothing stopped");
                    return Ok(None);
                };
                let horizons = if horizons.is_empty() {
                    vec![horizon]
                } else {
                    horizons
                };
                let purged = self.store.stop(&a.appid, &c, Some(&horizons)).await?;
                self.stopped(&a.appid, &c).await?;
                json!({"action": "stop", "uuid": a.uuid, "appid": a.appid, "spiderid": a.spiderid,
                       "crawlid": c, "total_purged": purged, "server_time": now})
            }
            ControlRequest::Stats(s) => {
                let mut r = self.stats(s.stats).await?;
                r.insert("uuid".into(), s.uuid.into());
                r.insert("appid".into(), s.appid.into());
                r.insert("server_time".into(), now.into());
                Value::Object(r)
            }
            ControlRequest::DomainConfig(d) => self.domain_config_reply(d, now).await,
            ControlRequest::Expired { cref, purged } => {
                let Some(spec) = self.store.spec(&cref).await? else {
                    tracing::warn!(crawl = %cref, "expired crawl has no stored state; no reply");
                    return Ok(None);
                };
                let e = self
                    .store
                    .cut_short(&spec.appid, &spec.crawlid, crate::events::Kind::Expired)
                    .await?;
                self.tell(&e).await;
                json!({"action": "expired", "appid": spec.appid, "crawlid": spec.crawlid,
                       "spiderid": spec.spiderid, "total_expired": purged, "server_time": now})
            }
            ControlRequest::Reply(r) => Value::Object(r),
        };
        Ok(match reply {
            Value::Object(m) => Some(m),
            _ => None,
        })
    }

    /// The reply to an `info` or `stop` action.
    async fn action_reply(&self, a: ActionRequest, now: i64) -> Result<Value, StoreError> {
        Ok(match (a.action, &a.crawlid) {
            (ActionKind::Info, Some(c)) => {
                let info = self.store.crawl_info(&a.appid, c, &a.spiderid).await?;
                let mut r = info::crawl_reply((&a.appid, &a.spiderid, c), &info, now);
                r["uuid"] = a.uuid.into();
                r
            }
            (ActionKind::Info, None) => {
                let crawls = self.store.app_info(&a.appid, &a.spiderid).await?;
                let mut r = info::app_reply(&a.appid, &a.spiderid, &crawls, now);
                r["uuid"] = a.uuid.into();
                r
            }
            (ActionKind::Stop, Some(c)) => {
                let purged = self.store.stop(&a.appid, c, None).await?;
                self.stopped(&a.appid, c).await?;
                json!({"action": "stop", "uuid": a.uuid, "appid": a.appid, "spiderid": a.spiderid,
                       "crawlid": c, "total_purged": purged, "server_time": now})
            }
            (ActionKind::Stop, None) => {
                json!({"action": "stop", "uuid": a.uuid, "appid": a.appid, "spiderid": a.spiderid,
                       "total_purged": 0, "server_time": now,
                       "error": "stop needs a `crawlid`: a whole app is never stopped at once"})
            }
            (kind, crawlid) => {
                let mut r = json!({"action": kind.name(), "uuid": a.uuid, "appid": a.appid,
                                   "spiderid": a.spiderid, "server_time": now});
                match crawlid {
                    Some(c) => {
                        r["crawlid"] = c.as_str().into();
                        let ask = match kind {
                            ActionKind::Pause => Ask::Pause,
                            ActionKind::Resume => Ask::Resume,
                            ActionKind::RunNow => Ask::RunNow,
                            _ => Ask::Unschedule,
                        };
                        match self.store.schedule_action(&a.appid, c, ask).await? {
                            Ok(row) => r["schedule"] = info::schedule_json(&row),
                            Err(e) => r["error"] = e.into(),
                        }
                    }
                    None => r["error"] = format!("{} needs a `crawlid`", kind.name()).into(),
                }
                r
            }
        })
    }

    /// A crawl was stopped: its schedule ended and its `crawl.stopped`
    /// kept (`MonitorStore::stopped`), and told on the events topic.
    async fn stopped(&self, appid: &str, crawlid: &str) -> Result<(), StoreError> {
        let e = self.store.stopped(appid, crawlid).await?;
        self.tell(&e).await;
        Ok(())
    }

    /// An event on the events topic (the store kept it already).
    async fn tell(&self, e: &crate::events::Event) {
        if let Err(err) = EventSink::send(&*self.bus, e).await {
            // Events tell; what they tell of is done and replied to.
            tracing::error!(event = e.event.name(), crawlid = %e.crawlid, error = %err, "event not written");
        }
    }

    /// Store a domain's new throttle or blacklist entry; the ack says
    /// whether it was stored.
    async fn domain_config_reply(&self, d: DomainConfigRequest, now: i64) -> Value {
        let action = match d.action {
            DomainConfigKind::DomainUpdate => DomainAction::Update {
                hits: d.hits,
                window: d.window as f64,
                scale: d.scale,
            },
            DomainConfigKind::DomainRemove => DomainAction::Remove,
            DomainConfigKind::BlacklistUpdate => DomainAction::Blacklist,
            DomainConfigKind::BlacklistRemove => DomainAction::Unblacklist,
        };
        let stored = self.store.domain(&d.domain, &action).await;
        let error = stored
            .err()
            .map(|e| format!("the change could not be stored: {e}"));
        Value::Object(super::domain_ack(&d, now, error))
    }

    /// A stats reply's body by type (contract §4.2).
    async fn stats(&self, kind: StatsKind) -> Result<Map<String, Value>, StoreError> {
        let name = serde_json::to_value(kind).expect("a kind serialises");
        let mut out = Map::new();
        let section = |v: Value| match v {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        match kind {
            StatsKind::KafkaMonitor => {
                out = section(super::stats::monitor_role(&self.store, 'k', "kafka-monitor").await?)
            }
            StatsKind::RedisMonitor => {
                out = section(super::stats::monitor_role(&self.store, 'r', "redis-monitor").await?)
            }
            StatsKind::Rest => {
                out.insert(
                    "nodes".into(),
                    super::stats::nodes(&self.store, "rest").await?,
                );
            }
            StatsKind::Spider => out = section(super::stats::crawler(&self.store, "spider").await?),
            StatsKind::Machine => {
                out = section(super::stats::crawler(&self.store, "machine").await?)
            }
            StatsKind::Queue => out = section(super::stats::crawler(&self.store, "queue").await?),
            StatsKind::Crawler => {
                out = section(super::stats::crawler(&self.store, "crawler").await?)
            }
            StatsKind::All => {
                out.insert(
                    "kafka-monitor".into(),
                    super::stats::monitor_role(&self.store, 'k', "kafka-monitor").await?,
                );
                out.insert(
                    "redis-monitor".into(),
                    super::stats::monitor_role(&self.store, 'r', "redis-monitor").await?,
                );
                out.insert(
                    "crawler".into(),
                    super::stats::crawler(&self.store, "crawler").await?,
                );
                out.insert(
                    "rest".into(),
                    json!({"nodes": super::stats::nodes(&self.store, "rest").await?}),
                );
            }
        }
        out.insert("stats".into(), name);
        Ok(out)
    }
}

/// A random u32 for reader names (no extra crate for one number).
fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("the clock is past 1970")
            .as_nanos(),
    );
    h.finish() as u32
}
