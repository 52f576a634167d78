//! A crawl's sealed files, back from the object store for packaging: the
//! records of a crawl run by many workers are in the files each of them
//! uploaded (`<prefix>/warc/…`, see `upload.rs`). Every index there that
//! names the crawl is fetched, with its WARC file, into a staging
//! directory laid out as `warc.dir` is, which [`super::wacz::package`]
//! then reads like a local archive.

use super::{safe_name, ArchiveError};
use crate::objects::Objects;
use std::path::Path;

/// What was fetched.
#[derive(Debug, Default)]
pub struct Gathered {
    /// WARC files holding records of the crawl.
    pub files: usize,
    /// Indexes read to find them.
    pub indexes: usize,
}

/// Fetch the crawl's sealed files from `objects` into `staging`. Files
/// split by app (or by crawl) are looked for under the app's folder only;
/// files not split, at the top.
pub async fn gather(
    objects: &Objects,
    appid: &str,
    crawlid: &str,
    staging: &Path,
) -> Result<Gathered, ArchiveError> {
    let unavailable = |e: crate::objects::ObjectsError| ArchiveError::Io(e.to_string());
    let app = format!("warc/{}/", safe_name(appid));
    let indexes: Vec<String> = objects
        .list("warc", ".cdxj")
        .await
        .map_err(unavailable)?
        .into_iter()
        .filter(|k| k.starts_with(&app) || !k["warc/".len().min(k.len())..].contains('/'))
        .collect();
    let mut got = Gathered {
        indexes: indexes.len(),
        ..Gathered::default()
    };
    let needle = (
        format!("\"appid\":{}", serde_json::Value::from(appid)),
        format!("\"crawlid\":{}", serde_json::Value::from(crawlid)),
    );
    for index in indexes {
        let Some(rel) = index.strip_prefix("warc/") else {
            continue;
        };
        let local = staging.join(rel);
        if let Some(parent) = local.parent() {
            std::fs::create_dir_all(parent).map_err(|e| super::io("cannot create", parent, e))?;
        }
        objects
            .get_file(&index, &local)
            .await
            .map_err(unavailable)?;
        // A cheap look first; `package` reads each line's fields exactly.
        let text =
            std::fs::read_to_string(&local).map_err(|e| super::io("cannot read", &local, e))?;
        if !text
            .lines()
            .any(|l| l.contains(&needle.0) && l.contains(&needle.1))
        {
            std::fs::remove_file(&local).map_err(|e| super::io("cannot remove", &local, e))?;
            continue;
        }
        let warc = index.trim_end_matches(".cdxj").to_string() + ".warc.gz";
        let local_warc = staging.join(&warc["warc/".len()..]);
        objects
            .get_file(&warc, &local_warc)
            .await
            .map_err(unavailable)?;
        got.files += 1;
    }
    Ok(got)
}
