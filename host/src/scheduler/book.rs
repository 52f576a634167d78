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
#[derive(Debug, Clone, PartialEq)]
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

    /// The crawl as its schedule's jitter is keyed: `appid/crawlid`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.key.appid, self.key.crawlid)
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

/// What a client asks of a schedule (actions on the incoming topic and
/// REST).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// No run fires until resumed (the current one goes on).
    Pause,
    /// Runs fire again; times missed meanwhile follow `misfire`.
    Resume,
    /// A run fires now, as a queued one does: at once, or when the current
    /// run ends; paused or not.
    RunNow,
    /// No run fires again; the current one goes on to its end.
    Unschedule,
    /// No run fires again, and the current one is over (its requests
    /// purged by the caller).
    Stop,
}

impl Row {
    /// The row once `ask` is carried out at `now`.
    pub fn asked(&self, ask: Ask, now: Timestamp) -> Row {
        let mut next = self.clone();
        let s = &mut next.state;
        match ask {
            Ask::Pause => s.paused = true,
            Ask::Resume => s.paused = false,
            Ask::RunNow => s.pending = Some(now),
            Ask::Unschedule => next.ended = true,
            Ask::Stop => {
                next.ended = true;
                s.running = false;
                s.pending = None;
                next.firing = None;
            }
        }
        next
    }
}

/// Carry out `ask` on `key`'s schedule: a compare-and-set, read again and
/// retried while other processes change the row. The row as written, or
/// `None` if the crawl has no schedule.
pub async fn ask(
    book: &dyn ScheduleBook,
    key: &CrawlKey,
    ask: Ask,
) -> Result<Option<Row>, StoreError> {
    for _ in 0..16 {
        let Some(row) = book.row(key).await? else {
            return Ok(None);
        };
        let next = row.asked(ask, Timestamp::now());
        if book.swap(&row, &next).await? {
            return Ok(Some(Row {
                version: row.version + 1,
                ..next
            }));
        }
    }
    Err(StoreError::Unavailable(
        "the schedule kept changing under this action; send it again".into(),
    ))
}

/// A crawl that is not scheduled, queued on a shared store and not yet
/// told over: what lets any control plane tell its end once.
#[derive(Debug, Clone, PartialEq)]
pub struct Life {
    pub key: CrawlKey,
    /// When it was first queued (unix ms): its events' `about`, so a crawl
    /// that comes again later is told again.
    pub since: i64,
    /// The request's `webhook` field, as sent.
    pub webhook: Option<serde_json::Value>,
}

#[async_trait]
pub trait ScheduleBook: Send + Sync {
    /// Keep a newly accepted scheduled request (one already kept keeps
    /// its state: a resubmission does not restart the schedule, unless
    /// it has ended and no run of it goes on).
    async fn keep(
        &self,
        key: &CrawlKey,
        request: &str,
        anchor: Timestamp,
    ) -> Result<(), StoreError>;
    /// Every schedule kept.
    async fn rows(&self) -> Result<Vec<Row>, StoreError>;
    /// One crawl's schedule, if it has one.
    async fn row(&self, key: &CrawlKey) -> Result<Option<Row>, StoreError> {
        Ok(self.rows().await?.into_iter().find(|r| &r.key == key))
    }
    /// Write `next` (its version one past `was`'s) if the schedule is still
    /// at `was.version`; whether it was written.
    async fn swap(&self, was: &Row, next: &Row) -> Result<bool, StoreError>;
    /// Note a crawl that is not scheduled as queued (kept if it is known
    /// already); whether this book tells such crawls' ends (a shared one:
    /// the embedded frontier tells them itself, as news).
    async fn alive(
        &self,
        _key: &CrawlKey,
        _webhook: Option<&serde_json::Value>,
    ) -> Result<bool, StoreError> {
        Ok(false)
    }
    /// The crawls noted by [`ScheduleBook::alive`] and not yet over.
    async fn lives(&self) -> Result<Vec<Life>, StoreError> {
        Ok(Vec::new())
    }
    /// Take the end of `life`: true for the one caller that takes it.
    async fn over(&self, _life: &Life) -> Result<bool, StoreError> {
        Ok(false)
    }
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
        let mut rows = self.rows.lock();
        let fresh = Row::new(key, request, anchor);
        match rows.get_mut(key) {
            // Over, with no run going: scheduled again (see schedules.lua).
            Some(r) if r.ended && !r.state.running => {
                *r = Row {
                    version: r.version + 1,
                    ..fresh
                }
            }
            Some(_) => {}
            None => {
                rows.insert(key.clone(), fresh);
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn asks_change_the_row_and_an_ended_schedule_can_be_kept_again() {
        let book = EmbeddedBook::default();
        let key = CrawlKey {
            appid: "a".into(),
            crawlid: "c".into(),
        };
        let t = Timestamp::now();
        assert_eq!(ask(&book, &key, Ask::Pause).await.expect("ask"), None);
        book.keep(&key, "{}", t).await.expect("keep");
        let paused = ask(&book, &key, Ask::Pause)
            .await
            .expect("ask")
            .expect("row");
        assert!(paused.state.paused);
        let asked = ask(&book, &key, Ask::RunNow)
            .await
            .expect("ask")
            .expect("row");
        assert!(asked.state.pending.is_some() && asked.state.paused);
        let mut running = asked.clone();
        running.state.running = true;
        assert!(book.swap(&asked, &running).await.expect("swap"));
        // Still running: a resubmission does not restart it.
        book.keep(&key, "{\"new\":1}", t).await.expect("keep");
        assert_eq!(
            book.row(&key).await.expect("row").expect("row").request,
            "{}"
        );
        let stopped = ask(&book, &key, Ask::Stop)
            .await
            .expect("ask")
            .expect("row");
        assert!(stopped.ended && !stopped.state.running && stopped.state.pending.is_none());
        book.keep(&key, "{\"new\":1}", t).await.expect("keep");
        let again = book.row(&key).await.expect("row").expect("row");
        assert_eq!(
            (again.request.as_str(), again.ended),
            ("{\"new\":1}", false)
        );
        assert!(
            again.version > stopped.version,
            "a new version, never an old one"
        );
    }
}
