//! The control stream: requests the control plane answers (info, stop,
//! expire, domain changes), each entry handed to exactly one reader and
//! kept until answered.

use super::MonitorStore;
use crate::store::{corrupt, unavailable, Con, StoreError};
use redis::Value as RV;
use std::time::Duration;

/// The control plane's consumer group on the control stream.
const GROUP: &str = "control";
/// An entry read by a control plane that then went silent this long is
/// taken over by another.
const CLAIM_IDLE_MS: u64 = 30_000;

impl MonitorStore {
    /// Put a request on the control stream directly (monitor plugins' and
    /// tests' way in; the ingest monitor batches through [`Self::ingest`]).
    /// The stream is never trimmed by length: an entry leaves it only once
    /// answered ([`Self::control_done`]), so no request goes unanswered.
    pub async fn control_push(&self, json: &str) -> Result<(), StoreError> {
        let mut con = self.redis.con();
        let _: String = redis::cmd("XADD")
            .arg(self.redis.key("control"))
            .arg("*")
            .arg("m")
            .arg(json)
            .query_async(&mut con)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Next control requests for `consumer`: first entries another control
    /// plane read and never finished, else new ones (waiting up to `block`).
    /// Returns (entry id, JSON).
    pub async fn control_read(
        &self,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let stream = self.redis.key("control");
        let mut con = self.redis.con();
        let created: Result<(), redis::RedisError> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&stream)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut con)
            .await;
        if let Err(e) = created {
            if e.code() != Some("BUSYGROUP") {
                return Err(unavailable(e));
            }
        }
        let claimed: RV = redis::cmd("XAUTOCLAIM")
            .arg(&stream)
            .arg(GROUP)
            .arg(consumer)
            .arg(CLAIM_IDLE_MS)
            .arg("0-0")
            .arg("COUNT")
            .arg(count)
            .query_async(&mut con)
            .await
            .map_err(unavailable)?;
        let stale = match &claimed {
            RV::Array(parts) => parts
                .get(1)
                .map(stream_entries)
                .ok_or_else(|| corrupt(format!("xautoclaim reply {claimed:?}")))?,
            other => return Err(corrupt(format!("xautoclaim reply {other:?}"))),
        };
        if !stale.is_empty() {
            tracing::info!(
                n = stale.len(),
                "taking over control requests a silent control plane left"
            );
            return Ok(stale);
        }
        // A blocking read gets its own connection: on the shared one it
        // would hold up every other command.
        let mut blocking = self.blocking_connection().await?;
        let reply: RV = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(count)
            .arg("BLOCK")
            .arg(block.as_millis() as u64)
            .arg("STREAMS")
            .arg(&stream)
            .arg(">")
            .query_async(&mut blocking)
            .await
            .map_err(unavailable)?;
        let mut out = Vec::new();
        if let RV::Array(streams) = reply {
            for s in streams {
                if let RV::Array(kv) = s {
                    if let Some(entries) = kv.get(1) {
                        out.extend(stream_entries(entries));
                    }
                }
            }
        }
        Ok(out)
    }

    /// The control requests were answered: forget them.
    pub async fn control_done(&self, ids: &[String]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let stream = self.redis.key("control");
        let mut con = self.redis.con();
        let _: () = redis::pipe()
            .cmd("XACK")
            .arg(&stream)
            .arg(GROUP)
            .arg(ids)
            .ignore()
            .cmd("XDEL")
            .arg(&stream)
            .arg(ids)
            .ignore()
            .query_async(&mut con)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn blocking_connection(&self) -> Result<Con, StoreError> {
        let mut slot = self.blocking.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let c = Con::blocking(self.redis.nodes(), crate::timeouts::REDIS_BLOCKING_RESPONSE)
            .await
            .map_err(unavailable)?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Drop the blocking connection after an error, so the next read
    /// reconnects.
    pub async fn reset_blocking(&self) {
        *self.blocking.lock().await = None;
    }
}

/// `[[id, [field, value, ...]], ...]` -> (id, value of field `m`).
fn stream_entries(v: &RV) -> Vec<(String, String)> {
    let text = |v: &RV| match v {
        RV::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        RV::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    let RV::Array(entries) = v else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|e| {
            let RV::Array(parts) = e else { return None };
            let id = text(parts.first()?)?;
            let RV::Array(fields) = parts.get(1)? else {
                return None;
            };
            let body = fields
                .chunks(2)
                .find(|kv| kv.first().and_then(text).as_deref() == Some("m"))
                .and_then(|kv| kv.get(1).and_then(text))?;
            Some((id, body))
        })
        .collect()
}
