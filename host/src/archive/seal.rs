//! Sealing: a file's final name once complete, and the recovery of a file
//! a killed worker left open: cut to its last whole record (the records
//! after it were never acked: their pages are crawled again), indexed
//! again from its records, then sealed.

use super::{cdxj, io, ArchiveError};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek};
use std::path::{Path, PathBuf};

const OPEN: &str = ".open";

/// `x.warc.gz.open` → `x.cdxj.open`.
pub(super) fn index_path(open: &Path) -> PathBuf {
    let name = open.file_name().unwrap_or_default().to_string_lossy();
    let stem = name
        .strip_suffix(OPEN)
        .unwrap_or(&name)
        .trim_end_matches(".warc.gz");
    open.with_file_name(format!("{stem}.cdxj{OPEN}"))
}

/// `x.warc.gz` → `x.cdxj`.
pub(super) fn sealed_index(warc: &Path) -> PathBuf {
    let name = warc.file_name().unwrap_or_default().to_string_lossy();
    warc.with_file_name(format!("{}.cdxj", name.trim_end_matches(".warc.gz")))
}

/// Give an open file and its index their final names.
pub(super) fn rename(open: &Path) -> Result<(), ArchiveError> {
    let index = index_path(open);
    let done = |p: &Path| p.with_extension("");
    std::fs::rename(&index, done(&index)).map_err(|e| io("cannot seal", &index, e))?;
    std::fs::rename(open, done(open)).map_err(|e| io("cannot seal", open, e))?;
    open.parent().map_or(Ok(()), super::sync_dir)
}

/// Seal every open file in `dir` (and its splits, two levels down) whose
/// writer is gone; how many.
pub(super) fn leftovers(dir: &Path) -> usize {
    let mut sealed = 0;
    for p in super::files_in(dir, &format!(".warc.gz{OPEN}")) {
        match recover(&p) {
            Ok(true) => sealed += 1,
            Ok(false) => {}
            // Another worker starting on the directory may have sealed it
            // first; anything else is said, and tried again next start.
            Err(_) if !p.exists() => {}
            Err(e) => tracing::error!(error = %e, "a WARC file left open could not be sealed"),
        }
    }
    sealed
}

/// Recover one open file unless its writer still holds it.
fn recover(path: &Path) -> Result<bool, ArchiveError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| io("cannot open", path, e))?;
    // Locked: its writer lives. Gone once locked: another start sealed it.
    if file.try_lock().is_err() || !path.exists() {
        return Ok(false);
    }
    let sealed_name = path
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .trim_end_matches(OPEN)
        .to_string();
    let mut lines = String::new();
    let mut whole = 0u64;
    for m in members(&file).map_err(|e| io("cannot read", path, e))? {
        let Ok((offset, length, record)) = m else {
            break;
        };
        if let Some(line) = index_line(&record, offset, length, &sealed_name) {
            lines.push_str(&line);
        }
        whole = offset + length;
    }
    file.set_len(whole).map_err(|e| io("cannot cut", path, e))?;
    file.sync_all().map_err(|e| io("cannot sync", path, e))?;
    let index = index_path(path);
    File::create(&index)
        .and_then(|mut f| {
            std::io::Write::write_all(&mut f, lines.as_bytes())?;
            f.sync_all()
        })
        .map_err(|e| io("cannot index", &index, e))?;
    rename(path)?;
    Ok(true)
}

/// One gzip member of a file: its offset, its length, the record in it.
pub type Member = (u64, u64, Vec<u8>);

/// The gzip members of a WARC file, until the first that is not whole.
pub fn members(file: &File) -> std::io::Result<impl Iterator<Item = std::io::Result<Member>>> {
    let mut f = file.try_clone()?;
    f.rewind()?;
    let mut r = BufReader::with_capacity(1 << 16, CountingRead { inner: f, n: 0 });
    let mut at = 0u64;
    Ok(std::iter::from_fn(move || {
        match r.fill_buf() {
            Ok([]) => return None,
            Err(e) => return Some(Err(e)),
            Ok(_) => {}
        }
        let mut out = Vec::new();
        // A member's decoder takes exactly its bytes from the buffer.
        if let Err(e) = flate2::bufread::GzDecoder::new(&mut r).read_to_end(&mut out) {
            return Some(Err(e));
        }
        let end = r.get_ref().n - r.buffer().len() as u64;
        let item = (at, end - at, out);
        at = end;
        Some(Ok(item))
    }))
}

/// The record at `offset`, `length` bytes, decompressed.
pub fn read_member(path: &Path, offset: u64, length: u64) -> std::io::Result<Vec<u8>> {
    let mut f = File::open(path)?;
    f.seek(std::io::SeekFrom::Start(offset))?;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(f.take(length)).read_to_end(&mut out)?;
    Ok(out)
}

/// A reader that counts the bytes read through it.
struct CountingRead<R> {
    inner: R,
    n: u64,
}

impl<R: Read> Read for CountingRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}

/// The index line of a record that has one (response, revisit, resource).
fn index_line(record: &[u8], offset: u64, length: u64, file: &str) -> Option<String> {
    let end = memchr::memmem::find(record, b"\r\n\r\n")?;
    let head = std::str::from_utf8(&record[..end]).ok()?;
    let field = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    let kind = field("WARC-Type")?;
    let kind: &'static str = match kind.as_str() {
        "response" => "response",
        "revisit" => "revisit",
        "resource" => "resource",
        _ => return None,
    };
    let url = field("WARC-Target-URI")?;
    let date = field("WARC-Date")?;
    let digest = field("WARC-Payload-Digest");
    let crawl: Option<serde_json::Value> =
        field("WARC-JSON-Metadata").and_then(|m| serde_json::from_str(&m).ok());
    let owner = crawl
        .as_ref()
        .and_then(|c| Some((c["appid"].as_str()?, c["crawlid"].as_str()?)));
    let http = &record[end + 4..];
    let http_end = memchr::memmem::find(http, b"\r\n\r\n").unwrap_or(http.len());
    let http_head = String::from_utf8_lossy(&http[..http_end]);
    let mut lines = http_head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mime = lines
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case("content-type").then(|| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
        })
        .unwrap_or_else(|| "unk".into());
    Some(
        cdxj::Entry {
            url: &url,
            date: &date,
            mime: &mime,
            status,
            digest: digest.as_deref(),
            offset,
            length,
            filename: file,
            kind,
            crawl: owner,
        }
        .line(),
    )
}
