//! A cluster's crawls packaged as WACZ by themselves (`warc.wacz` with an
//! object store): every crawling process runs this loop, and the one whose
//! turn it is (a renewed key in the ledger) reads the ledger: for each
//! crawl that has ended (nothing queued, nothing in flight) it asks the
//! workers to seal the files holding it, waits until the ledger lists them
//! all sealed and uploaded, then (a lock per crawl, which outlives a turn
//! passing on mid-package) fetches those files from the store, packages
//! and uploads `<prefix>/wacz/<appid>-<crawlid>.wacz`. A crawl that runs
//! again later is listed again and packaged again, whole.

use super::ledger::{CrawlOf, Ledger};
use crate::monitor::store::MonitorStore;
use crate::objects::Objects;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How often the ledger is read.
const EVERY: Duration = Duration::from_secs(1);
/// How long one packaging may hold its crawl's lock.
const LOCK: Duration = Duration::from_secs(600);
/// How long a turn outlives its holder's last renewal.
const TURN: Duration = Duration::from_secs(3);

pub struct Packager {
    pub ledger: Arc<Ledger>,
    pub monitors: MonitorStore,
    pub objects: Arc<Objects>,
    /// Where packages are made (`<warc.dir>`), staged and kept.
    pub dir: PathBuf,
}

impl Packager {
    /// Run until the process ends.
    pub async fn run(self) {
        let me = format!("{}-{}", std::process::id(), fastrand::u64(..));
        let mut tick = tokio::time::interval(EVERY);
        loop {
            tick.tick().await;
            match self.ledger.turn(&me, TURN).await {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    tracing::debug!(error = %e, "cannot read the WARC ledger; trying again");
                    continue;
                }
            }
            let crawls = match self.ledger.crawls().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(error = %e, "cannot read the WARC ledger; trying again");
                    continue;
                }
            };
            for c in crawls {
                if let Err(e) = self.consider(&c).await {
                    tracing::warn!(appid = %c.0, crawlid = %c.1, error = %e, "crawl not packaged yet; trying again");
                }
            }
        }
    }

    /// Package the crawl if it has ended and its files are all uploaded.
    async fn consider(&self, c: &CrawlOf) -> anyhow::Result<()> {
        let info = self.monitors.crawl_info(&c.0, &c.1, "").await?;
        let ended = info.open == 0;
        self.ledger.ended(c, ended).await?;
        if !ended {
            return Ok(());
        }
        // None listed: another process has just packaged it.
        let files = self.ledger.files(c).await?;
        if files.is_empty() || files.values().any(|state| state != "sealed") {
            return Ok(());
        }
        if !self.ledger.lock(c, LOCK).await? {
            return Ok(());
        }
        let names: Vec<String> = files.into_keys().collect();
        let packaged = self.package(c, &names).await;
        if packaged.is_err() {
            self.ledger.unlock(c).await?;
        }
        packaged?;
        self.ledger.packaged(c, &names).await?;
        Ok(())
    }

    /// Package the crawl from the files the ledger lists for it.
    async fn package(&self, (appid, crawlid): &CrawlOf, files: &[String]) -> anyhow::Result<()> {
        let staging = self.dir.join(format!(
            ".gathered-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        let packaged = async {
            super::gather::fetch(&self.objects, files, &staging).await?;
            Ok::<_, anyhow::Error>(super::wacz::package(
                &staging,
                &self.dir.join("wacz"),
                appid,
                crawlid,
            )?)
        }
        .await;
        let _ = std::fs::remove_dir_all(&staging);
        let Some(p) = packaged? else {
            // Nothing of it reached the store (every record was lost with
            // its page, which was crawled again elsewhere): nothing to do.
            return Ok(());
        };
        let name = p.path.file_name().unwrap_or_default().to_string_lossy();
        let uri = self
            .objects
            .put_file(&format!("wacz/{name}"), &p.path)
            .await?;
        tracing::info!(%uri, records = p.records, pages = p.pages, %appid, %crawlid, "crawl packaged as WACZ");
        Ok(())
    }
}
