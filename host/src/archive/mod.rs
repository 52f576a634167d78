//! The WARC archive (`[warc]`): every fetch written as it happened, as
//! `response` (or `revisit` for a 304), `request` and `metadata` records,
//! the payload as the bytes the server sent. Records go to one open file
//! per split (appid, crawl, or one for all), each a gzip member of its
//! own, with a CDXJ line per response as it is written.
//!
//! Durability is a group commit: [`Archive::durable`] waits until every
//! record written before the call is fsynced, one `fsync` serving all the
//! pages that wait for it; a lease is settled only after (the crawl's
//! `settle`). A file being written is named `*.warc.gz.open`, locked by
//! its writer; one left by a killed worker is sealed by the next start
//! (`seal.rs`): cut to its last whole record and indexed again.

mod cdxj;
mod exchange;
pub mod gather;
pub mod ledger;
pub mod packager;
pub mod record;
mod seal;
mod upload;
pub mod wacz;

pub use exchange::{Exchange, Owner};
pub use seal::{members, read_member};

use crate::config::{SplitBy, Warc};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Instant;
use thiserror::Error;

/// The group commit's pace: a page waits at most this long, plus one
/// fsync, for its records to be on disk.
const SYNC_EVERY: std::time::Duration = std::time::Duration::from_millis(10);

/// An open file's buffer: records reach the file at the group commit, or
/// sooner when this fills.
const WRITE_BUFFER: usize = 1 << 20;

#[derive(Debug, Error, Clone)]
pub enum ArchiveError {
    /// Writing or syncing failed (a full disk): the page's lease goes back.
    #[error("warc: {0}")]
    Io(String),
}

fn io(what: &str, p: &Path, e: std::io::Error) -> ArchiveError {
    ArchiveError::Io(format!("{what} {}: {e}", p.display()))
}

pub use crate::fetch::Archived;

pub struct Archive {
    dir: PathBuf,
    settings: Warc,
    /// `<host>-<pid>`: file names never clash between workers sharing a
    /// directory.
    worker: String,
    files: Mutex<HashMap<String, Open>>,
    serial: AtomicU64,
    /// Bytes appended so far, and (below) how many of them are fsynced.
    written: AtomicU64,
    /// Bytes up to here may not be on disk whatever a later fsync says (a
    /// sync or a seal failed, a file was retired torn): a page whose
    /// records lie before it goes back to the queue.
    lost: AtomicU64,
    synced: tokio::sync::watch::Sender<Synced>,
    kick: tokio::sync::Notify,
    /// Sealed files on their way to the object store, when there is one.
    uploads: Option<upload::Uploads>,
    /// In a cluster: where the files holding each crawl are listed, and
    /// the files that came to hold a crawl since the last group commit.
    ledger: Option<Arc<ledger::Ledger>>,
    unlisted: Mutex<Vec<(ledger::CrawlOf, String)>>,
}

#[derive(Debug, Clone, Default)]
struct Synced {
    upto: u64,
    /// The last sync failed: waiters give up with this.
    failed: Option<String>,
}

/// A file being written.
struct Open {
    /// Relative to the archive's directory, as it will be when sealed.
    name: String,
    /// The file's own name, as its index lines give it (the index lies
    /// beside it).
    base: String,
    path: PathBuf,
    /// Records wait here for the next group commit (or a seal).
    warc: std::io::BufWriter<File>,
    index: std::io::BufWriter<File>,
    len: u64,
    opened: Instant,
    /// The crawls it holds records of (listed in the ledger, if any).
    crawls: std::collections::HashSet<ledger::CrawlOf>,
}

impl Archive {
    /// Open the archive in `settings.dir`: files left open by a killed
    /// worker are sealed first. With `objects`, sealed files are uploaded
    /// there (those a stopped worker left too); with a `ledger` (a
    /// cluster), the files holding each crawl are listed there.
    pub fn open(
        settings: &Warc,
        objects: Option<Arc<crate::objects::Objects>>,
        ledger: Option<Arc<ledger::Ledger>>,
    ) -> Result<Arc<Archive>, ArchiveError> {
        let dir = PathBuf::from(&settings.dir);
        std::fs::create_dir_all(&dir).map_err(|e| io("cannot create", &dir, e))?;
        let sealed = seal::leftovers(&dir);
        if sealed > 0 {
            tracing::info!(files = sealed, dir = %dir.display(), "sealed WARC files a stopped worker left open");
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "host".into());
        let host: String = host
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let archive = Arc::new(Archive {
            dir: dir.clone(),
            settings: settings.clone(),
            worker: format!("{host}-{}", std::process::id()),
            files: Mutex::new(HashMap::new()),
            serial: AtomicU64::new(0),
            written: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            synced: tokio::sync::watch::Sender::new(Synced::default()),
            kick: tokio::sync::Notify::new(),
            uploads: objects.map(|o| upload::Uploads::start(&dir, o, ledger.clone())),
            ledger,
            unlisted: Mutex::new(Vec::new()),
        });
        tokio::spawn(archive.clone().sync_loop());
        Ok(archive)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Write one fetch's records; where its response record is.
    pub fn write(&self, x: &Exchange<'_>) -> Result<Archived, ArchiveError> {
        let split = match self.settings.split_by {
            SplitBy::None => String::new(),
            SplitBy::Appid => safe_name(&x.owner.appid),
            SplitBy::Crawl => format!(
                "{}/{}",
                safe_name(&x.owner.appid),
                safe_name(&x.owner.crawlid)
            ),
        };
        // Compressed before the lock: pages are written side by side.
        let records = x.records(self.settings.redact, self.settings.level);
        let mut files = self.files.lock();
        let open = match files.get_mut(&split) {
            Some(o) if !self.full(o) => o,
            _ => {
                if let Some(old) = files.remove(&split) {
                    if let Err(e) = self.seal(old) {
                        // Left open: the next start seals it.
                        self.lose(&e);
                    }
                }
                let new = self.create(&split)?;
                files.entry(split.clone()).or_insert(new)
            }
        };
        // Listed before the bytes count as written: the group commit that
        // covers them lists the file first.
        if self.ledger.is_some() {
            let crawl = (x.owner.appid.clone(), x.owner.crawlid.clone());
            if open.crawls.insert(crawl.clone()) {
                self.unlisted.lock().push((crawl, open.name.clone()));
            }
        }
        let offset = open.len;
        let mut at = offset;
        let mut lines = String::new();
        for r in &records.members {
            if let Some(entry) = &r.index {
                lines.push_str(
                    &cdxj::Entry {
                        offset: at,
                        length: r.bytes.len() as u64,
                        filename: &open.base,
                        ..entry.entry()
                    }
                    .line(),
                );
            }
            at += r.bytes.len() as u64;
        }
        // Into the file's buffer: the group commit writes it out, one
        // system call for all the pages since the last.
        let written = records
            .members
            .iter()
            .try_for_each(|r| open.warc.write_all(&r.bytes))
            .map_err(|e| io("cannot write", &open.path, e))
            .and_then(|()| {
                open.index
                    .write_all(lines.as_bytes())
                    .map_err(|e| io("cannot index", &open.path, e))
            });
        if let Err(e) = written {
            // A part written would leave a torn record (or index line) in
            // the middle: the file is retired open as it is, for the next
            // start to cut and index again, and what it held counts as
            // lost until then.
            files.remove(&split);
            self.lose(&e);
            return Err(e);
        }
        open.len = at;
        self.written.fetch_add(at - offset, SeqCst);
        Ok(Archived {
            file: open.name.clone(),
            offset,
            length: records.members[0].bytes.len() as u64,
        })
    }

    /// Wait until every record written before this call is on disk.
    pub async fn durable(&self) -> Result<(), ArchiveError> {
        let target = self.written.load(SeqCst);
        let lost = || {
            (target > 0 && target <= self.lost.load(SeqCst)).then(|| {
                ArchiveError::Io("records were written to a file that failed; not on disk".into())
            })
        };
        let mut rx = self.synced.subscribe();
        if rx.borrow().upto < target {
            self.kick.notify_one();
            let seen = rx
                .wait_for(|s| s.upto >= target || s.failed.is_some())
                .await
                .map_err(|_| ArchiveError::Io("the archive is closed".into()))?;
            if let Some(e) = seen.failed.as_ref().filter(|_| seen.upto < target) {
                return Err(ArchiveError::Io(e.clone()));
            }
        }
        lost().map_or(Ok(()), Err)
    }

    /// Something written may be gone (a failed sync, seal or write): every
    /// page whose records were written so far goes back to the queue.
    fn lose(&self, e: &ArchiveError) {
        tracing::error!(error = %e, "WARC records may be lost; their pages go back to the queue");
        self.lost.fetch_max(self.written.load(SeqCst), SeqCst);
    }

    /// Seal every open file (the process is stopping): all records whole,
    /// synced and indexed.
    pub fn close(&self) -> Result<(), ArchiveError> {
        let open: Vec<Open> = self.files.lock().drain().map(|(_, o)| o).collect();
        for o in open {
            self.seal(o)?;
        }
        self.synced
            .send_modify(|s| s.upto = s.upto.max(self.written.load(SeqCst)));
        Ok(())
    }

    /// Wait (at most `limit`) for sealed files to reach the object store;
    /// how many did not (the next start uploads them).
    pub async fn uploaded(&self, limit: std::time::Duration) -> usize {
        match &self.uploads {
            Some(u) => u.drained(limit).await,
            None => 0,
        }
    }

    /// One fsync for every page waiting; files past their age sealed.
    async fn sync_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        let mut last = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = self.kick.notified() => {}
                _ = tick.tick() => {
                    self.seal_old();
                    self.seal_ended().await;
                }
            }
            // At most one fsync per `SYNC_EVERY`: the pages that come to
            // wait meanwhile share the next one.
            tokio::time::sleep_until(last + SYNC_EVERY).await;
            last = tokio::time::Instant::now();
            let target = self.written.load(SeqCst);
            let idle = {
                let s = self.synced.borrow();
                s.upto >= target && s.failed.is_none()
            };
            if idle {
                continue;
            }
            if let Err(e) = self.list_files().await {
                // The pages waiting go back (a packager would not know of
                // their records); the files are listed at the next try.
                self.synced.send_modify(|s| s.failed = Some(e));
                continue;
            }
            let handles = match self.flush() {
                Ok(handles) => handles,
                Err(e) => {
                    self.synced.send_modify(|s| s.failed = Some(e.to_string()));
                    continue;
                }
            };
            let synced = tokio::task::spawn_blocking(move || {
                for (path, f) in handles {
                    f.and_then(|f| f.sync_data())
                        .map_err(|e| format!("cannot sync {}: {e}", path.display()))?;
                }
                Ok::<(), String>(())
            })
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
            self.synced.send_modify(|s| match synced {
                Ok(()) => {
                    s.upto = s.upto.max(target);
                    s.failed = None;
                }
                Err(e) => {
                    // A failed fsync forgets the pages it failed on: a
                    // later one succeeding says nothing of them.
                    self.lose(&ArchiveError::Io(e.clone()));
                    s.failed = Some(e);
                }
            });
            if Arc::strong_count(&self) == 1 {
                return;
            }
        }
    }

    /// Write out every open file's buffer; handles to sync them by.
    fn flush(&self) -> Result<Vec<(PathBuf, std::io::Result<File>)>, ArchiveError> {
        let mut files = self.files.lock();
        let mut failed = None;
        files.retain(|_, o| match o.warc.flush() {
            Ok(()) => true,
            Err(e) => {
                // Retired open, as a failed write is: the next start cuts
                // it to its last whole record.
                failed = Some(io("cannot write", &o.path, e));
                false
            }
        });
        if let Some(e) = failed {
            self.lose(&e);
            return Err(e);
        }
        Ok(files
            .values()
            .map(|o| (o.path.clone(), o.warc.get_ref().try_clone()))
            .collect())
    }

    fn seal_old(&self) {
        self.seal_where(|o| o.opened.elapsed() >= self.settings.max_age);
    }

    /// Seal the open files `which` picks.
    fn seal_where(&self, which: impl Fn(&Open) -> bool) {
        let mut files = self.files.lock();
        let picked: Vec<String> = files
            .iter()
            .filter(|(_, o)| which(o))
            .map(|(k, _)| k.clone())
            .collect();
        for k in picked {
            if let Some(o) = files.remove(&k) {
                if let Err(e) = self.seal(o) {
                    // Left open: the next start seals it.
                    self.lose(&e);
                }
            }
        }
    }

    /// The files that came to hold a crawl, into the ledger.
    async fn list_files(&self) -> Result<(), String> {
        let Some(ledger) = &self.ledger else {
            return Ok(());
        };
        let entries = std::mem::take(&mut *self.unlisted.lock());
        if entries.is_empty() {
            return Ok(());
        }
        if let Err(e) = ledger.opened(&entries).await {
            let mut unlisted = self.unlisted.lock();
            unlisted.extend(entries);
            return Err(format!("cannot list WARC files in the ledger: {e}"));
        }
        Ok(())
    }

    /// Seal the open files holding a crawl that has ended, so that it is
    /// packaged now rather than at `warc.max_age`.
    async fn seal_ended(&self) {
        let Some(ledger) = &self.ledger else {
            return;
        };
        let crawls: Vec<ledger::CrawlOf> = {
            let files = self.files.lock();
            let all: std::collections::BTreeSet<&ledger::CrawlOf> =
                files.values().flat_map(|o| o.crawls.iter()).collect();
            all.into_iter().cloned().collect()
        };
        if crawls.is_empty() {
            return;
        }
        let ended: Vec<&ledger::CrawlOf> = match ledger.seal_asked(&crawls).await {
            Ok(asked) => crawls
                .iter()
                .zip(asked)
                .filter(|(_, a)| *a)
                .map(|(c, _)| c)
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read which crawls ended; their files seal at warc.max_age");
                return;
            }
        };
        if !ended.is_empty() {
            self.seal_where(|o| ended.iter().any(|c| o.crawls.contains(*c)));
        }
    }

    fn full(&self, o: &Open) -> bool {
        o.len >= self.settings.max_bytes || o.opened.elapsed() >= self.settings.max_age
    }

    fn create(&self, split: &str) -> Result<Open, ArchiveError> {
        let sub = self.dir.join(split);
        std::fs::create_dir_all(&sub).map_err(|e| io("cannot create", &sub, e))?;
        let stamp = exchange::now(exchange::Stamp::File);
        let serial = self.serial.fetch_add(1, SeqCst);
        let file = format!(
            "{}-{stamp}-{serial:05}-{}.warc.gz",
            self.settings.prefix, self.worker
        );
        let name = if split.is_empty() {
            file.clone()
        } else {
            format!("{split}/{file}")
        };
        let path = sub.join(format!("{file}.open"));
        let mut warc = std::fs::OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(|e| io("cannot create", &path, e))?;
        // Held for the file's life: the next start's sealer leaves a
        // locked file to its live writer.
        warc.try_lock()
            .map_err(|e| ArchiveError::Io(format!("cannot lock {}: {e}", path.display())))?;
        let info = exchange::warcinfo(&file);
        warc.write_all(&info)
            .map_err(|e| io("cannot write", &path, e))?;
        let index_path = seal::index_path(&path);
        let index = File::create(&index_path).map_err(|e| io("cannot create", &index_path, e))?;
        let warc = std::io::BufWriter::with_capacity(WRITE_BUFFER, warc);
        // The new names on disk before a record in them is acked.
        sync_dir(&sub)?;
        self.written.fetch_add(info.len() as u64, SeqCst);
        Ok(Open {
            name,
            base: file,
            path,
            warc,
            index: std::io::BufWriter::new(index),
            len: info.len() as u64,
            opened: Instant::now(),
            crawls: Default::default(),
        })
    }

    /// Sync a file and its index and give them their final names.
    fn seal(&self, o: Open) -> Result<(), ArchiveError> {
        o.warc
            .into_inner()
            .map_err(|e| io("cannot write", &o.path, e.into_error()))?
            .sync_all()
            .map_err(|e| io("cannot sync", &o.path, e))?;
        o.index
            .into_inner()
            .map_err(|e| io("cannot index", &o.path, e.into_error()))?
            .sync_all()
            .map_err(|e| io("cannot sync the index of", &o.path, e))?;
        seal::rename(&o.path)?;
        if let Some(u) = &self.uploads {
            u.queue(o.path.with_extension(""));
        }
        Ok(())
    }
}

/// Sync a directory: the files made or renamed in it stay after a crash.
fn sync_dir(dir: &Path) -> Result<(), ArchiveError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io("cannot sync", dir, e))
}

/// The files under `dir` whose names end with `suffix`: in it and in its
/// splits (`<appid>/`, `<appid>/<crawlid>/`), sorted.
fn files_in(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![(dir.to_path_buf(), 0)];
    while let Some((d, depth)) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                if depth < 2 {
                    todo.push((p, depth + 1));
                }
            } else if e.file_name().to_string_lossy().ends_with(suffix) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// A file name part from a tenant's string: letters, digits, `-`, `_`,
/// `.` kept, the rest `_`, with a short hash when anything changed (so
/// two names never meet in one).
fn safe_name(s: &str) -> String {
    let kept: String = s
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if kept == s && !kept.is_empty() {
        return kept;
    }
    format!(
        "{kept}_{:08x}",
        xxhash_rust::xxh3::xxh3_64(s.as_bytes()) as u32
    )
}

#[cfg(test)]
mod tests;
