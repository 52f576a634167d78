//! Crawls that are not scheduled, on a shared store: each noted in the
//! store once its seed is queued (`ScheduleBook::alive`), told
//! `crawl.accepted` and `crawl.started` by every process that drives runs
//! when it first sees it (its seed is queued by then, as a scheduled
//! run's start is told on Redis; the same event ids from each process:
//! receivers keep one), and told over
//! by the one process whose `ScheduleBook::over` takes its end, once
//! nothing of it is queued, in flight or waiting to retry on any shard.

use super::{ending, event, Runs};
use crate::events::Kind;
use crate::notify::Webhook;
use crate::scheduler::StoreError;

impl Runs {
    /// Tell what is due of the crawls in progress; how many there are.
    pub(super) async fn look_lives(&self) -> Result<usize, StoreError> {
        let lives = self.book.lives().await?;
        let n = lives.len();
        // Forget what other processes told over.
        self.told
            .lock()
            .retain(|k, (since, _)| lives.iter().any(|l| &l.key == k && l.since == *since));
        for life in lives {
            let webhook = life.webhook.as_ref().and_then(|w| Webhook::parse(w).ok());
            let about = life.since.to_string();
            let first = {
                let mut told = self.told.lock();
                let seen = told.get(&life.key).is_some_and(|(s, _)| *s == life.since);
                if !seen {
                    told.insert(life.key.clone(), (life.since, webhook.clone()));
                }
                !seen
            };
            if first {
                for kind in [Kind::Accepted, Kind::Started] {
                    let mut e = event(kind, &life.key, 0);
                    e.about = Some(about.clone());
                    self.emit_to(e, webhook.as_ref()).await;
                }
            }
            if self.engine.frontier.open(&life.key).await? != Some(0) {
                continue;
            }
            // Read before the end is taken: with nothing open, nothing
            // adds to them.
            let stats = self.engine.frontier.figures(&life.key).await?;
            if !self.book.over(&life).await? {
                continue; // another process tells it
            }
            self.told.lock().remove(&life.key);
            let stats = stats.unwrap_or_default();
            let (kind, reason) = ending(&stats);
            let mut e = event(kind, &life.key, 0);
            e.about = Some(about);
            e.reason = Some(reason.into());
            e.stats = Some(stats);
            self.emit_to(e, webhook.as_ref()).await;
        }
        Ok(n)
    }
}
