//! The schedule book on Redis (shard 0): a hash per scheduled crawl,
//! `sched:<cref>`, with [`Row`]'s fields and the crawl's key (`k`, as
//! `crawl_owner` writes it, `ap`, `cr`), and the set `sched` of them.
//! Every change is `schedules.lua`'s compare-and-set on the version.

use super::MonitorStore;
use crate::events::event::Stats;
use crate::events::{Event, EventSink, Kind};
use crate::request::CrawlKey;
use crate::scheduler::{Ask, Life, Row, ScheduleBook, StoreError};
use crate::store::{crawl_ref, unavailable};
use async_trait::async_trait;
use jiff::Timestamp;
use serde_json::Value;
use std::collections::HashMap;

impl MonitorStore {
    async fn write_row(&self, was: Option<u64>, row: &Row) -> Result<bool, StoreError> {
        let mut inv = self.redis.call(&self.scripts.schedules, 0);
        inv.arg(crawl_ref(&row.key))
            .arg(was.map_or(String::new(), |v| v.to_string()))
            .arg("ap")
            .arg(&row.key.appid)
            .arg("cr")
            .arg(&row.key.crawlid);
        for (k, v) in row.fields() {
            inv.arg(k).arg(v);
        }
        let written: i64 = inv
            .invoke_async(&mut self.redis.con())
            .await
            .map_err(unavailable)?;
        Ok(written == 1)
    }
}

impl MonitorStore {
    /// Pause, resume, run-now or unschedule a crawl's schedule (the
    /// actions on the incoming topic, and `spinneret schedule`): the
    /// schedule as it is now, or why nothing was done.
    pub async fn schedule_action(
        &self,
        appid: &str,
        crawlid: &str,
        ask: Ask,
    ) -> Result<Result<Row, String>, StoreError> {
        let key = CrawlKey {
            appid: appid.into(),
            crawlid: crawlid.into(),
        };
        let Some(was) = self.row(&key).await? else {
            return Ok(Err("the crawl has no schedule".into()));
        };
        if was.ended {
            return Ok(Err("the crawl's schedule has ended".into()));
        }
        let Some(row) = crate::scheduler::ask(self, &key, ask).await? else {
            return Ok(Err("the crawl has no schedule".into()));
        };
        if row.ended && !row.state.running {
            // No run's end will drop them.
            self.forget_pages(&key).await?;
        }
        Ok(Ok(row))
    }

    /// A crawl was stopped: its schedule (if any) ended with it, what it
    /// kept of its pages dropped, and its `crawl.stopped` (with its
    /// figures) kept with its latest events; the event, for the caller
    /// to send on.
    pub async fn stopped(&self, appid: &str, crawlid: &str) -> Result<Event, StoreError> {
        self.cut_short(appid, crawlid, Kind::Stopped).await
    }

    /// A crawl ended by a stop or its expiry (`kind`): as
    /// [`MonitorStore::stopped`] says, its event of `kind`.
    pub async fn cut_short(
        &self,
        appid: &str,
        crawlid: &str,
        kind: Kind,
    ) -> Result<Event, StoreError> {
        let key = CrawlKey {
            appid: appid.into(),
            crawlid: crawlid.into(),
        };
        let row = crate::scheduler::ask(self, &key, Ask::Stop).await?;
        if row.is_some() {
            self.forget_pages(&key).await?;
        }
        // Its end is told here, not as completed.
        self.take_end(&key).await?;
        let run = row.map_or(0, |r| r.state.runs);
        let mut e = Event::of(kind, (appid, crawlid), run);
        e.reason = Some(
            if kind == Kind::Expired {
                "expired"
            } else {
                "stopped"
            }
            .into(),
        );
        e.stats = Some(self.figures(&key).await?);
        if let Err(err) = self.send(&e).await {
            tracing::error!(event = e.event.name(), %crawlid, error = %err, "event not kept");
        }
        Ok(e)
    }

    /// Drop what a revisited crawl keeps of its pages (its schedule ended
    /// with no run going: no run's end will).
    pub async fn forget_pages(&self, key: &CrawlKey) -> Result<(), StoreError> {
        self.redis.drop_pages(key).await
    }

    /// The crawl's figures so far, summed over the shards.
    pub async fn figures(&self, key: &CrawlKey) -> Result<Stats, StoreError> {
        self.redis.figures(key).await
    }

    /// The schedule kept under `cref`, if any (one that does not read is
    /// said so and left alone).
    async fn read_row(&self, cref: &str) -> Result<Option<Row>, StoreError> {
        let tag = self.redis.shards().tag(0);
        let f: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(format!("{tag}:sched:{cref}"))
            .query_async(&mut self.redis.con())
            .await
            .map_err(unavailable)?;
        let key = match (f.get("ap"), f.get("cr")) {
            (Some(a), Some(c)) => CrawlKey {
                appid: a.clone(),
                crawlid: c.clone(),
            },
            _ => return Ok(None),
        };
        let row = Row::from_fields(key, &f);
        if row.is_none() {
            tracing::error!(%cref, "a schedule in Redis does not read; left alone");
        }
        Ok(row)
    }
}

#[async_trait]
impl ScheduleBook for MonitorStore {
    async fn keep(
        &self,
        key: &CrawlKey,
        request: &str,
        anchor: Timestamp,
    ) -> Result<(), StoreError> {
        let row = Row::new(key, request, anchor);
        // Already kept: its state stays.
        self.write_row(None, &row).await?;
        Ok(())
    }

    async fn rows(&self) -> Result<Vec<Row>, StoreError> {
        let tag = self.redis.shards().tag(0);
        let crefs: Vec<String> = redis::cmd("SMEMBERS")
            .arg(format!("{tag}:sched"))
            .query_async(&mut self.redis.con())
            .await
            .map_err(unavailable)?;
        let mut rows = Vec::with_capacity(crefs.len());
        for cref in crefs {
            rows.extend(self.read_row(&cref).await?);
        }
        Ok(rows)
    }

    async fn row(&self, key: &CrawlKey) -> Result<Option<Row>, StoreError> {
        // A key that hashes alike but is another crawl's is not this one.
        Ok(self
            .read_row(&crawl_ref(key))
            .await?
            .filter(|r| &r.key == key))
    }

    async fn alive(&self, key: &CrawlKey, webhook: Option<&Value>) -> Result<bool, StoreError> {
        self.note_alive(key, webhook).await?;
        Ok(true)
    }

    async fn lives(&self) -> Result<Vec<Life>, StoreError> {
        self.noted_lives().await
    }

    async fn over(&self, life: &Life) -> Result<bool, StoreError> {
        self.take_end(&life.key).await
    }

    async fn swap(&self, was: &Row, next: &Row) -> Result<bool, StoreError> {
        let next = Row {
            version: was.version + 1,
            ..next.clone()
        };
        self.write_row(Some(was.version), &next).await
    }
}
