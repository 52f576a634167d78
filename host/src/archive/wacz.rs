//! A crawl packaged as WACZ 1.1.1 (what ReplayWeb.page and pywb open):
//! its response records copied byte for byte, by range, from the sealed
//! files of an archive into `archive/data.warc.gz`, with
//! `indexes/index.cdxj` (sorted, offsets into that file),
//! `pages/pages.jsonl` (its HTML pages) and `datapackage.json` (every
//! entry's size and sha256). Entries are stored, not compressed, so a
//! viewer reads records by HTTP range.

use super::{io, ArchiveError};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use zip::write::SimpleFileOptions;

/// What went into a package.
#[derive(Debug)]
pub struct Packaged {
    pub path: PathBuf,
    pub records: usize,
    pub pages: usize,
}

/// One index line of the crawl: its sort key and fields, and the file it
/// came from.
struct Line {
    key: String,
    fields: Value,
    file: PathBuf,
}

/// Package the crawl `appid`/`crawlid` from the sealed files under `dir`
/// as `<out>/<appid>-<crawlid>.wacz`. `None` when the archive holds
/// nothing of it.
pub fn package(
    dir: &Path,
    out: &Path,
    appid: &str,
    crawlid: &str,
) -> Result<Option<Packaged>, ArchiveError> {
    let mut lines = crawl_lines(dir, appid, crawlid)?;
    if lines.is_empty() {
        return Ok(None);
    }
    lines.sort_by(|a, b| a.key.cmp(&b.key));
    let out_dir = out;
    std::fs::create_dir_all(out_dir).map_err(|e| io("cannot create", out_dir, e))?;
    let name = format!(
        "{}-{}.wacz",
        super::safe_name(appid),
        super::safe_name(crawlid)
    );
    let path = out_dir.join(&name);
    let part = out_dir.join(format!("{name}.part"));
    let file = File::create(&part).map_err(|e| io("cannot create", &part, e))?;
    let mut zip = zip::ZipWriter::new(file);
    let stored = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(true);
    let zerr = |e: zip::result::ZipError| ArchiveError::Io(format!("wacz {}: {e}", path.display()));
    let (data, index, pages) = copy_records(&mut zip, stored, &path, &mut lines)?;
    let mut resources = vec![data];
    let pages_text = pages.join("\n") + "\n";
    for (entry, text) in [
        ("indexes/index.cdxj", index.as_str()),
        ("pages/pages.jsonl", pages_text.as_str()),
    ] {
        zip.start_file(entry, stored).map_err(zerr)?;
        zip.write_all(text.as_bytes())
            .map_err(|e| io("cannot write", &path, e))?;
        resources.push(resource(entry, text.len() as u64, &Sha256::digest(text)));
    }
    let package = datapackage(resources, appid, crawlid);
    zip.start_file("datapackage.json", stored).map_err(zerr)?;
    zip.write_all(
        serde_json::to_string_pretty(&package)
            .expect("a JSON value serialises")
            .as_bytes(),
    )
    .map_err(|e| io("cannot write", &path, e))?;
    let file = zip.finish().map_err(zerr)?;
    file.sync_all().map_err(|e| io("cannot sync", &part, e))?;
    std::fs::rename(&part, &path).map_err(|e| io("cannot rename", &part, e))?;
    Ok(Some(Packaged {
        path,
        records: lines.len(),
        pages: pages.len() - 1,
    }))
}

/// The records, each copied whole into `archive/data.warc.gz`: its
/// resource line, the index with their new offsets, and the pages list.
fn copy_records(
    zip: &mut zip::ZipWriter<File>,
    stored: SimpleFileOptions,
    path: &Path,
    lines: &mut [Line],
) -> Result<(Value, String, Vec<String>), ArchiveError> {
    zip.start_file("archive/data.warc.gz", stored)
        .map_err(|e| ArchiveError::Io(format!("wacz {}: {e}", path.display())))?;
    let mut hash = Sha256::new();
    let mut at = 0u64;
    let mut index = String::new();
    let mut pages =
        vec![json!({"format": "json-pages-1.0", "id": "pages", "title": "All Pages"}).to_string()];
    for l in lines {
        let offset = str_u64(l, "offset")?;
        let length = str_u64(l, "length")?;
        let bytes = read_range(&l.file, offset, length)?;
        hash.update(&bytes);
        zip.write_all(&bytes)
            .map_err(|e| io("cannot write", path, e))?;
        l.fields["offset"] = at.to_string().into();
        l.fields["filename"] = "data.warc.gz".into();
        at += length;
        index.push_str(&format!("{} {}\n", l.key, l.fields));
        if is_page(&l.fields) {
            let ts = l.key.split(' ').nth(1).unwrap_or_default();
            // `id` and `title` given: validators read the list as a table
            // whose columns the header line names.
            let id = format!("{:032x}", xxhash_rust::xxh3::xxh3_128(l.key.as_bytes()));
            pages.push(
                json!({"id": id, "url": l.fields["url"], "title": l.fields["url"], "ts": iso(ts)})
                    .to_string(),
            );
        }
    }
    let data = resource("archive/data.warc.gz", at, &hash.finalize());
    Ok((data, index, pages))
}

/// `datapackage.json`: the package's entries with their sizes and hashes.
fn datapackage(resources: Vec<Value>, appid: &str, crawlid: &str) -> Value {
    json!({
        "profile": "data-package",
        "resources": resources,
        "wacz_version": "1.1.1",
        "title": format!("{appid} {crawlid}"),
        "created": super::exchange::now(super::exchange::Stamp::Seconds),
        "software": format!("spinneret {}", env!("CARGO_PKG_VERSION")),
    })
}

/// The crawl's index lines from every sealed `.cdxj` under `dir`.
fn crawl_lines(dir: &Path, appid: &str, crawlid: &str) -> Result<Vec<Line>, ArchiveError> {
    let mut out = Vec::new();
    for p in super::files_in(dir, ".cdxj") {
        let text = std::fs::read_to_string(&p).map_err(|e| io("cannot read", &p, e))?;
        for line in text.lines() {
            let Some((key, json)) = split(line) else {
                continue;
            };
            let Ok(fields) = serde_json::from_str::<Value>(json) else {
                continue;
            };
            if fields["appid"] != appid || fields["crawlid"] != crawlid {
                continue;
            }
            let Some(name) = fields["filename"].as_str() else {
                return Err(ArchiveError::Io(format!(
                    "{}: the index line {key} names no file",
                    p.display()
                )));
            };
            let file = p.with_file_name(name);
            out.push(Line {
                key: key.to_string(),
                fields,
                file,
            });
        }
    }
    Ok(out)
}

/// `surt timestamp {json}` as (`surt timestamp`, `{json}`).
fn split(line: &str) -> Option<(&str, &str)> {
    let brace = line.find(" {")?;
    Some((&line[..brace], &line[brace + 1..]))
}

fn read_range(file: &Path, offset: u64, length: u64) -> Result<Vec<u8>, ArchiveError> {
    let mut f = File::open(file).map_err(|e| io("cannot read", file, e))?;
    f.seek(SeekFrom::Start(offset))
        .map_err(|e| io("cannot read", file, e))?;
    let mut buf = Vec::with_capacity(length as usize);
    f.take(length)
        .read_to_end(&mut buf)
        .map_err(|e| io("cannot read", file, e))?;
    if buf.len() as u64 != length {
        return Err(ArchiveError::Io(format!(
            "{}: the index names bytes past its end",
            file.display()
        )));
    }
    Ok(buf)
}

/// An index line's number, written as a string (`cdxj.rs`).
fn str_u64(l: &Line, name: &str) -> Result<u64, ArchiveError> {
    l.fields[name]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            ArchiveError::Io(format!(
                "{}: the index line {} has no {name}",
                l.file.display(),
                l.key
            ))
        })
}

/// A page a viewer lists: an HTML response that succeeded.
fn is_page(f: &Value) -> bool {
    f["status"] == "200"
        && f["mime"]
            .as_str()
            .is_some_and(|m| m == "text/html" || m == "application/xhtml+xml")
}

/// `20261206215129` as `2026-12-06T21:51:29Z`.
fn iso(ts: &str) -> String {
    if ts.len() < 14 {
        return ts.to_string();
    }
    format!(
        "{}-{}-{}T{}:{}:{}Z",
        &ts[0..4],
        &ts[4..6],
        &ts[6..8],
        &ts[8..10],
        &ts[10..12],
        &ts[12..14]
    )
}

fn resource(path: &str, bytes: u64, sha256: &[u8]) -> Value {
    json!({
        "name": path.rsplit('/').next().unwrap_or(path).to_ascii_lowercase(),
        "path": path,
        "hash": format!("sha256:{}", hex::encode(sha256)),
        "bytes": bytes,
    })
}
