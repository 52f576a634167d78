//! Sealed files to the object store (`[output.objects]`): each WARC file
//! and its index go under `<prefix>/warc/<name as in warc.dir>`; an empty
//! `<file>.uploaded` beside it says it is there. A failed upload is tried
//! again until it goes; files sealed but not uploaded when a worker
//! stopped are found by the next start.

use super::ledger::{CrawlOf, Ledger};
use crate::backoff::Backoff;
use crate::objects::Objects;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

/// The uploads queued and not yet done.
pub(super) struct Uploads {
    tx: mpsc::UnboundedSender<PathBuf>,
    pending: watch::Sender<usize>,
}

impl Uploads {
    /// Start uploading to `objects`; sealed files under `dir` not uploaded
    /// yet are queued first.
    pub(super) fn start(dir: &Path, objects: Arc<Objects>, ledger: Option<Arc<Ledger>>) -> Uploads {
        let (tx, rx) = mpsc::unbounded_channel();
        let pending = watch::Sender::new(0);
        let uploads = Uploads { tx, pending };
        for f in not_uploaded(dir) {
            uploads.queue(f);
        }
        tokio::spawn(run(
            dir.to_path_buf(),
            (objects, ledger),
            rx,
            uploads.pending.clone(),
        ));
        uploads
    }

    /// Queue a sealed WARC file (its index goes with it).
    pub(super) fn queue(&self, warc: PathBuf) {
        self.pending.send_modify(|n| *n += 1);
        if self.tx.send(warc).is_err() {
            self.pending.send_modify(|n| *n -= 1);
        }
    }

    /// Wait until every queued upload is done, at most `limit`; how many
    /// are left (the next start uploads them).
    pub(super) async fn drained(&self, limit: std::time::Duration) -> usize {
        let mut rx = self.pending.subscribe();
        let _ = tokio::time::timeout(limit, rx.wait_for(|n| *n == 0)).await;
        let left = *rx.borrow();
        left
    }
}

async fn run(
    dir: PathBuf,
    (objects, ledger): (Arc<Objects>, Option<Arc<Ledger>>),
    mut rx: mpsc::UnboundedReceiver<PathBuf>,
    pending: watch::Sender<usize>,
) {
    while let Some(warc) = rx.recv().await {
        let mut backoff = Backoff::standard();
        // A file removed meanwhile (by hand) is not waited for.
        while warc.exists() {
            match upload(&dir, &objects, ledger.as_deref(), &warc).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(file = %warc.display(), error = %e, "WARC file not uploaded yet; retrying");
                    backoff.wait().await;
                }
            }
        }
        pending.send_modify(|n| *n = n.saturating_sub(1));
    }
}

async fn upload(
    dir: &Path,
    objects: &Objects,
    ledger: Option<&Ledger>,
    warc: &Path,
) -> Result<(), String> {
    let rel = warc
        .strip_prefix(dir)
        .map_err(|e| e.to_string())?
        .to_string_lossy()
        .into_owned();
    let index = super::seal::sealed_index(warc);
    objects
        .put_file(&format!("warc/{rel}"), warc)
        .await
        .map_err(|e| e.to_string())?;
    if index.exists() {
        let rel = index
            .strip_prefix(dir)
            .map_err(|e| e.to_string())?
            .to_string_lossy()
            .into_owned();
        objects
            .put_file(&format!("warc/{rel}"), &index)
            .await
            .map_err(|e| e.to_string())?;
    }
    // In a cluster, the crawls it holds may now be packaged.
    if let Some(ledger) = ledger {
        let text = match index.exists() {
            true => std::fs::read_to_string(&index).map_err(|e| e.to_string())?,
            false => String::new(),
        };
        let crawls: std::collections::BTreeSet<CrawlOf> = text
            .lines()
            .filter_map(|l| l.splitn(3, ' ').nth(2))
            .filter_map(|j| serde_json::from_str::<serde_json::Value>(j).ok())
            .filter_map(|v| {
                Some((
                    v["appid"].as_str()?.to_string(),
                    v["crawlid"].as_str()?.to_string(),
                ))
            })
            .collect();
        let crawls: Vec<CrawlOf> = crawls.into_iter().collect();
        ledger
            .sealed(&crawls, &rel)
            .await
            .map_err(|e| e.to_string())?;
    }
    std::fs::write(marker(warc), b"").map_err(|e| e.to_string())?;
    tracing::info!(file = %rel, "WARC file uploaded");
    Ok(())
}

fn marker(warc: &Path) -> PathBuf {
    let mut name = warc.file_name().unwrap_or_default().to_os_string();
    name.push(".uploaded");
    warc.with_file_name(name)
}

/// Sealed WARC files under `dir` with no marker.
fn not_uploaded(dir: &Path) -> Vec<PathBuf> {
    super::files_in(dir, ".warc.gz")
        .into_iter()
        .filter(|p| !marker(p).exists())
        .collect()
}
