//! The schedule book on Redis (shard 0): a hash per scheduled crawl,
//! `sched:<cref>`, with [`Row`]'s fields and the crawl's key (`k`, as
//! `crawl_owner` writes it, `ap`, `cr`), and the set `sched` of them.
//! Every change is `schedules.lua`'s compare-and-set on the version.

use super::MonitorStore;
use crate::request::CrawlKey;
use crate::scheduler::{Row, ScheduleBook, StoreError};
use crate::store::{crawl_ref, unavailable};
use async_trait::async_trait;
use jiff::Timestamp;
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
        let mut con = self.redis.con();
        let crefs: Vec<String> = redis::cmd("SMEMBERS")
            .arg(format!("{tag}:sched"))
            .query_async(&mut con)
            .await
            .map_err(unavailable)?;
        let mut rows = Vec::with_capacity(crefs.len());
        for cref in crefs {
            let f: HashMap<String, String> = redis::cmd("HGETALL")
                .arg(format!("{tag}:sched:{cref}"))
                .query_async(&mut con)
                .await
                .map_err(unavailable)?;
            let key = match (f.get("ap"), f.get("cr")) {
                (Some(a), Some(c)) => CrawlKey {
                    appid: a.clone(),
                    crawlid: c.clone(),
                },
                _ => continue,
            };
            match Row::from_fields(key, &f) {
                Some(r) => rows.push(r),
                None => tracing::error!(%cref, "a schedule in Redis does not read; left alone"),
            }
        }
        Ok(rows)
    }

    async fn swap(&self, was: &Row, next: &Row) -> Result<bool, StoreError> {
        let next = Row {
            version: was.version + 1,
            ..next.clone()
        };
        self.write_row(Some(was.version), &next).await
    }
}
