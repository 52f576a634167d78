//! The schedules as a store keeps them: each scheduled crawl's request
//! and [`State`], changed only by a compare-and-set on its version, so
//! that of every process that decides a run is due, one fires it. The
//! embedded book is a map; the Redis one a hash per crawl on shard 0
//! (`monitor/store/schedules.rs`). Both read and write the same fields.

use super::StoreError;
use crate::request::CrawlKey;
use crate::schedule::State;
use async_trait::async_trait;
use jiff::Timestamp;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};

/// One scheduled crawl.
#[derive(Debug, Clone)]
pub struct Row {
    pub key: CrawlKey,
    /// The request as accepted (JSON): each run's seed is made from it.
    pub request: String,
    pub state: State,
    /// No run will fire again.
    pub ended: bool,
    /// A run fired at this time and its seeds are not all queued yet (its
    /// end is not looked for until they are, or a while has passed).
    pub firing: Option<Timestamp>,
    /// Bumped by every change: the compare-and-set's witness.
    pub version: u64,
}

impl Row {
    /// A schedule just accepted: no run yet.
    pub fn new(key: &CrawlKey, request: &str, anchor: Timestamp) -> Row {
        Row {
            key: key.clone(),
            request: request.to_string(),
            state: State {
                anchor,
                last: None,
                runs: 0,
                running: false,
                pending: None,
                paused: false,
            },
            ended: false,
            firing: None,
            version: 0,
        }
    }

    /// The row as hash fields (`req`, `a`, `l`, `r`, `run`, `p`, `z`,
    /// `e`, `f`, `v`); times in unix milliseconds.
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        let ms = |t: Option<Timestamp>| t.map_or(String::new(), |t| t.as_millisecond().to_string());
        let flag = |b: bool| if b { "1" } else { "0" }.to_string();
        let s = &self.state;
        vec![
            ("req", self.request.clone()),
            ("a", ms(Some(s.anchor))),
            ("l", ms(s.last)),
            ("r", s.runs.to_string()),
            ("run", flag(s.running)),
            ("p", ms(s.pending)),
            ("z", flag(s.paused)),
            ("e", flag(self.ended)),
            ("f", ms(self.firing)),
            ("v", self.version.to_string()),
        ]
    }

    /// The row read back from its fields; `None` if they are not whole.
    pub fn from_fields(key: CrawlKey, f: &HashMap<String, String>) -> Option<Row> {
        let ms = |k: &str| -> Option<Option<Timestamp>> {
            match f.get(k)?.as_str() {
                "" => Some(None),
                v => Some(Some(Timestamp::from_millisecond(v.parse().ok()?).ok()?)),
            }
        };
        let flag = |k: &str| f.get(k).is_some_and(|v| v == "1");
        Some(Row {
            key,
            request: f.get("req")?.clone(),
            state: State {
                anchor: ms("a")??,
                last: ms("l")?,
                runs: f.get("r")?.parse().ok()?,
                running: flag("run"),
                pending: ms("p")?,
                paused: flag("z"),
            },
            ended: flag("e"),
            firing: ms("f")?,
            version: f.get("v")?.parse().ok()?,
        })
    }
}

#[async_trait]
pub trait ScheduleBook: Send + Sync {
    /// Keep a newly accepted scheduled request (one already kept keeps
    /// its state: a resubmission does not restart the schedule).
    async fn keep(
        &self,
        key: &CrawlKey,
        request: &str,
        anchor: Timestamp,
    ) -> Result<(), StoreError>;
    /// Every schedule kept.
    async fn rows(&self) -> Result<Vec<Row>, StoreError>;
    /// Write `next` (its version one past `was`'s) if the schedule is still
    /// at `was.version`; whether it was written.
    async fn swap(&self, was: &Row, next: &Row) -> Result<bool, StoreError>;
}

/// The embedded book: schedules live as long as the process.
#[derive(Default)]
pub struct EmbeddedBook {
    rows: Mutex<BTreeMap<CrawlKey, Row>>,
}

#[async_trait]
impl ScheduleBook for EmbeddedBook {
    async fn keep(
        &self,
        key: &CrawlKey,
        request: &str,
        anchor: Timestamp,
    ) -> Result<(), StoreError> {
        self.rows
            .lock()
            .entry(key.clone())
            .or_insert_with(|| Row::new(key, request, anchor));
        Ok(())
    }

    async fn rows(&self) -> Result<Vec<Row>, StoreError> {
        Ok(self.rows.lock().values().cloned().collect())
    }

    async fn swap(&self, was: &Row, next: &Row) -> Result<bool, StoreError> {
        let mut rows = self.rows.lock();
        match rows.get_mut(&was.key) {
            Some(r) if r.version == was.version => {
                *r = Row {
                    version: was.version + 1,
                    ..next.clone()
                };
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}
