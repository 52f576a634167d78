//! `[webhooks]`: how a crawl's `webhook` is called. The signing secrets
//! live here, per app, and never in a request or a message.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// At most this many retries after the first try.
pub const MAX_RETRIES: usize = 16;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Webhooks {
    /// appid -> signing secret (`whsec_` and the base64 of 24 to 64
    /// bytes, as Standard Webhooks has it). A crawl may ask for a webhook
    /// only if its app has one.
    pub secrets: BTreeMap<String, String>,
    /// One delivery's time to answer (s).
    #[serde(deserialize_with = "super::seconds::read")]
    pub timeout: Duration,
    /// The wait before each retry of a failed delivery (seconds in the
    /// file); after the last, the event is dead-lettered. (Standard
    /// Webhooks' schedule, shortened.)
    #[serde(deserialize_with = "super::seconds::read_list")]
    pub retry: Vec<Duration>,
    /// Events waiting per endpoint, at most; past it, an event waits in
    /// the cluster's outbox or (embedded) is dead-lettered.
    pub queue: usize,
}

impl Default for Webhooks {
    fn default() -> Self {
        Webhooks {
            secrets: BTreeMap::new(),
            timeout: Duration::from_secs(10),
            retry: [5, 300, 1800, 7200, 18000, 36000]
                .map(Duration::from_secs)
                .to_vec(),
            queue: 1000,
        }
    }
}

impl Webhooks {
    pub(super) fn check(&self) -> Result<(), String> {
        for (app, secret) in &self.secrets {
            // The error names the app, never the secret.
            crate::events::sign::Secret::parse(secret)
                .map_err(|e| format!("webhooks.secrets.{app}: {e}"))?;
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(60)).contains(&self.timeout) {
            return Err("webhooks.timeout must be 1 to 60 seconds".into());
        }
        if !(1..=100_000).contains(&self.queue) {
            return Err(format!(
                "webhooks.queue must be 1 to 100000 events, got {}",
                self.queue
            ));
        }
        if self.retry.len() > MAX_RETRIES {
            return Err(format!(
                "webhooks.retry lists {} waits; at most {MAX_RETRIES}",
                self.retry.len()
            ));
        }
        if let Some(w) = self.retry.iter().find(|w| w.as_secs() > 86_400) {
            return Err(format!(
                "webhooks.retry: each wait is 0 to 86400 seconds, got {}",
                w.as_secs_f64()
            ));
        }
        Ok(())
    }
}
