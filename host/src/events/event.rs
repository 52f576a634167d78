//! A lifecycle event as it goes out: plain JSON with sorted keys (the
//! contract's house style) for existing consumers, and CloudEvents 1.0
//! binary-mode headers beside it for CloudEvents tooling. Its id is a
//! hash of what it is about, so a duplicate sent after a crash carries the
//! same id and consumers (and webhook receivers) drop it.

use serde::Serialize;
use std::collections::BTreeMap;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The seed was validated and queued.
    Accepted,
    /// The run's first fetch was leased.
    Started,
    /// Nothing of the run is queued, in flight or waiting to retry.
    Completed,
    Stopped,
    Expired,
    /// No page succeeded, or every seed was refused.
    Failed,
    Fired,
    Skipped,
    /// A site answered 429 or 503 and is paused.
    DomainPaused,
}

impl Serialize for Kind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl Kind {
    pub const ALL: [Kind; 9] = [
        Kind::Accepted,
        Kind::Started,
        Kind::Completed,
        Kind::Stopped,
        Kind::Expired,
        Kind::Failed,
        Kind::Fired,
        Kind::Skipped,
        Kind::DomainPaused,
    ];

    /// The `event` field and the CloudEvents type.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Accepted => "crawl.accepted",
            Kind::Started => "crawl.started",
            Kind::Completed => "crawl.completed",
            Kind::Stopped => "crawl.stopped",
            Kind::Expired => "crawl.expired",
            Kind::Failed => "crawl.failed",
            Kind::Fired => "schedule.fired",
            Kind::Skipped => "schedule.skipped",
            Kind::DomainPaused => "domain.paused",
        }
    }
}

/// A run's figures, as `crawl.completed` and its kin carry them. Fields
/// in alphabetical order: the JSON's keys are sorted at every level.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stats {
    /// Pages by status class: `2xx`, `3xx`, `4xx`, `5xx`.
    pub by_status: BTreeMap<String, u64>,
    pub bytes: u64,
    /// Pages by change since the last run: `new`, `changed`, `same`,
    /// `removed` (with `revisit`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub change: BTreeMap<String, u64>,
    pub domains: u64,
    pub duration_ms: u64,
    /// Failures by kind (`timeout`, `dns`, `robots`, ...).
    pub errors: BTreeMap<String, u64>,
    pub pages: u64,
}

/// One event about one crawl's run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    pub event: Kind,
    pub appid: String,
    pub crawlid: String,
    pub run: u32,
    /// Unix seconds, when it was sent first.
    pub server_time: i64,
    /// Why a run ended (`done`, `stopped`, `expired`, `failed`), why a
    /// fire time passed (`overlap`, `misfire`), or the domain paused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats: Option<Stats>,
    /// What the event is about beyond the run: a skipped fire time's unix
    /// seconds, a paused domain. Part of the id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub about: Option<String>,
}

impl Event {
    /// An event of `kind` about run `run` of crawl `appid`/`crawlid` (run
    /// 0, a crawl without runs, is told as 1), sent now.
    pub fn of(kind: Kind, (appid, crawlid): (&str, &str), run: u32) -> Event {
        Event {
            event: kind,
            appid: appid.into(),
            crawlid: crawlid.into(),
            run: run.max(1),
            server_time: jiff::Timestamp::now().as_second(),
            reason: None,
            stats: None,
            about: None,
        }
    }

    /// The same for the same (kind, crawl, run, about), whoever sends it.
    pub fn id(&self) -> String {
        let key = serde_json::json!([
            self.event.name(),
            self.appid,
            self.crawlid,
            self.run,
            self.about
        ]);
        format!(
            "evt_{:032x}",
            xxhash_rust::xxh3::xxh3_128(key.to_string().as_bytes())
        )
    }

    /// The message value: the event and its id, keys sorted.
    pub fn json(&self) -> Vec<u8> {
        // Through a map: every level's keys in order.
        let mut value = serde_json::to_value(self).expect("an event serialises");
        value["id"] = self.id().into();
        let sorted: BTreeMap<String, serde_json::Value> =
            serde_json::from_value(value).expect("an object");
        serde_json::to_vec(&sorted).expect("an event serialises")
    }

    /// CloudEvents 1.0 binary-mode Kafka headers (`prefix`: the topics').
    pub fn cloudevents(&self, prefix: &str) -> [(&'static str, String); 6] {
        [
            ("ce_specversion", "1.0".into()),
            ("ce_type", self.event.name().into()),
            ("ce_id", self.id()),
            ("ce_source", format!("spinneret/{prefix}")),
            ("ce_subject", self.crawlid.clone()),
            ("content-type", "application/json".into()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn completed(run: u32) -> Event {
        Event {
            event: Kind::Completed,
            appid: "ops".into(),
            crawlid: "news".into(),
            run,
            server_time: 1_796_000_000,
            reason: Some("done".into()),
            stats: Some(Stats {
                pages: 3,
                by_status: [("2xx".to_string(), 3)].into(),
                ..Stats::default()
            }),
            about: None,
        }
    }

    #[test]
    fn an_event_is_sorted_json_with_an_id_of_what_it_is_about() {
        let e = completed(2);
        let text = String::from_utf8(e.json()).expect("utf-8");
        assert!(
            text.starts_with(
                r#"{"appid":"ops","crawlid":"news","event":"crawl.completed","id":"evt_"#
            ),
            "{text}"
        );
        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(v["stats"]["by_status"]["2xx"], 3);
        assert!(
            text.contains(r#""stats":{"by_status":{"2xx":3},"bytes":0,"domains":0,"#),
            "{text}"
        );
        assert!(v.get("about").is_none() && v["stats"].get("change").is_none());
        // Sent again later (after a crash): the same id.
        let again = Event {
            server_time: 1_796_000_999,
            ..completed(2)
        };
        assert_eq!(again.id(), e.id());
        assert_ne!(completed(3).id(), e.id());
        let skipped = |at: &str| Event {
            event: Kind::Skipped,
            about: Some(at.into()),
            ..completed(2)
        };
        assert_ne!(skipped("1796000060").id(), skipped("1796000120").id());
        let h = e.cloudevents("spinneret");
        assert_eq!(h[1], ("ce_type", "crawl.completed".to_string()));
        assert_eq!(h[2].1, e.id());
    }
}
