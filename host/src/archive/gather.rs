//! A crawl's sealed files, back from the object store for packaging: the
//! records of a crawl run by many workers are in the files each of them
//! uploaded (`<prefix>/warc/…`, see `upload.rs`). They are fetched, with
//! their indexes, into a staging directory laid out as `warc.dir` is,
//! which [`super::wacz::package`] then reads like a local archive. The
//! packager knows the files from the ledger ([`fetch`]); by hand
//! (`spinneret wacz --from-store`), every index under the app's folder
//! is read for the crawl's name ([`gather`]).

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

/// Fetch these sealed files (names as in `warc.dir`) and their indexes
/// from `objects` into `staging`.
pub async fn fetch(
    objects: &Objects,
    files: &[String],
    staging: &Path,
) -> Result<Gathered, ArchiveError> {
    for name in files {
        let index = format!("warc/{}.cdxj", name.trim_end_matches(".warc.gz"));
        get(objects, &index, staging).await?;
        get(objects, &format!("warc/{name}"), staging).await?;
    }
    Ok(Gathered {
        files: files.len(),
        indexes: files.len(),
    })
}

/// One object, to its place under `staging`.
async fn get(objects: &Objects, key: &str, staging: &Path) -> Result<(), ArchiveError> {
    let local = staging.join(key.strip_prefix("warc/").unwrap_or(key));
    if let Some(parent) = local.parent() {
        std::fs::create_dir_all(parent).map_err(|e| super::io("cannot create", parent, e))?;
    }
    objects
        .get_file(key, &local)
        .await
        .map_err(|e| ArchiveError::Io(e.to_string()))
}

/// Find the crawl's sealed files in `objects` and fetch them into `staging`. Files
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
        get(objects, &index, staging).await?;
        let local = staging.join(&index["warc/".len()..]);
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
        get(
            objects,
            &(index.trim_end_matches(".cdxj").to_string() + ".warc.gz"),
            staging,
        )
        .await?;
        got.files += 1;
    }
    Ok(got)
}
