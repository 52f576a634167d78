//! The object store (`[output.objects]`, S3 or compatible): the claim
//! check for result bodies too large for a message, and the home of
//! sealed archives. Bodies go under content-addressed keys
//! (`<prefix>/bodies/<appid>/<sha256>`), written with `If-None-Match: *`:
//! a retry, or the same page crawled again, finds its body there and
//! writes nothing.

use crate::config;
use bytes::Bytes;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as Key;
use object_store::signer::Signer;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, RetryConfig};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ObjectsError {
    /// The settings do not make a store (a bad URL, no credentials).
    #[error("output.objects: {0}")]
    Config(String),
    /// The store did not take it now (down, refusing, timed out): tried
    /// again like a broker outage, the lease held.
    #[error("object store: {0}")]
    Unavailable(String),
}

/// Where a body went: a result's `body_ref`, in place of `body`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BodyRef {
    pub uri: String,
    pub sha256: String,
    pub bytes: u64,
    pub content_type: String,
    /// A link that reads it without credentials, while it lasts
    /// (`output.objects.presign`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

pub struct Objects {
    store: AmazonS3,
    bucket: String,
    prefix: String,
    presign: Duration,
    /// Results whose JSON passes this go by claim check.
    pub offload_bytes: usize,
}

impl Objects {
    /// The store the settings name, or `None` when there is none.
    pub fn connect(settings: &config::Settings) -> Result<Option<Arc<Objects>>, ObjectsError> {
        let s = &settings.output.objects;
        if s.url.is_empty() {
            return Ok(None);
        }
        let (bucket, prefix) = s.bucket_and_prefix();
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_region(&s.region)
            // Failing fast: the crawl's delivery retries it, the lease held.
            .with_retry(RetryConfig {
                max_retries: 2,
                retry_timeout: Duration::from_secs(10),
                ..RetryConfig::default()
            });
        if !s.endpoint.is_empty() {
            b = b
                .with_endpoint(&s.endpoint)
                .with_allow_http(s.endpoint.starts_with("http://"));
        }
        let store = b.build().map_err(|e| ObjectsError::Config(e.to_string()))?;
        let limit = settings.kafka.max_message_bytes;
        Ok(Some(Arc::new(Objects {
            store,
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            presign: s.presign,
            offload_bytes: match s.offload_bytes {
                0 => limit.saturating_sub(64 * 1024).max(limit / 2),
                n => n,
            },
        })))
    }

    fn key(&self, rest: &str) -> Key {
        match self.prefix.as_str() {
            "" => Key::from(rest),
            p => Key::from(format!("{p}/{rest}")),
        }
    }

    fn uri(&self, key: &Key) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    /// Store a result's body; where it is. Written once per content.
    pub async fn put_body(
        &self,
        appid: &str,
        body: &Bytes,
        content_type: &str,
    ) -> Result<BodyRef, ObjectsError> {
        let sha256 = hex::encode(Sha256::digest(body));
        let key = self.key(&format!("bodies/{}/{sha256}", key_part(appid)));
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self.store.put_opts(&key, body.clone().into(), opts).await {
            Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(ObjectsError::Unavailable(e.to_string())),
        }
        let url = match self.presign {
            Duration::ZERO => None,
            d => Some(
                self.store
                    .signed_url(reqwest::Method::GET, &key, d)
                    .await
                    .map_err(|e| ObjectsError::Unavailable(e.to_string()))?
                    .to_string(),
            ),
        };
        Ok(BodyRef {
            uri: self.uri(&key),
            sha256,
            bytes: body.len() as u64,
            content_type: content_type.to_string(),
            url,
        })
    }

    /// Upload a sealed file under `<prefix>/<rest>` (in parts when large);
    /// its URI.
    pub async fn put_file(
        &self,
        rest: &str,
        path: &std::path::Path,
    ) -> Result<String, ObjectsError> {
        let key = self.key(rest);
        let unavailable = |e: String| ObjectsError::Unavailable(e);
        let upload = self
            .store
            .put_multipart(&key)
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let mut w = object_store::WriteMultipart::new_with_chunk_size(upload, 8 << 20);
        if let Err(e) = fill(&mut w, path).await {
            // No part left behind for the store to keep (and bill).
            let _ = w.abort().await;
            return Err(e);
        }
        w.finish().await.map_err(|e| unavailable(e.to_string()))?;
        Ok(self.uri(&key))
    }

    /// The keys under `<prefix>/<rest>` whose names end in `suffix`,
    /// relative to the prefix (as [`Objects::put_file`] takes them).
    pub async fn list(&self, rest: &str, suffix: &str) -> Result<Vec<String>, ObjectsError> {
        use futures::TryStreamExt;
        let base = self.key("");
        let metas: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&self.key(rest)))
            .try_collect()
            .await
            .map_err(|e| ObjectsError::Unavailable(e.to_string()))?;
        Ok(metas
            .into_iter()
            .map(|m| m.location.to_string())
            .filter(|k| k.ends_with(suffix))
            .map(|k| match base.as_ref() {
                "" => k,
                b => k.strip_prefix(&format!("{b}/")).unwrap_or(&k).to_string(),
            })
            .collect())
    }

    /// `<prefix>/<rest>` into the file `path`, a chunk at a time.
    pub async fn get_file(&self, rest: &str, path: &std::path::Path) -> Result<(), ObjectsError> {
        use futures::StreamExt;
        use tokio::io::AsyncWriteExt;
        let unavailable = |e: String| ObjectsError::Unavailable(e);
        let got = self
            .store
            .get(&self.key(rest))
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let mut f = tokio::fs::File::create(path)
            .await
            .map_err(|e| unavailable(format!("{}: {e}", path.display())))?;
        let mut chunks = got.into_stream();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| unavailable(e.to_string()))?;
            f.write_all(&chunk)
                .await
                .map_err(|e| unavailable(format!("{}: {e}", path.display())))?;
        }
        f.flush()
            .await
            .map_err(|e| unavailable(format!("{}: {e}", path.display())))
    }

    /// An object's bytes (tests, tools).
    pub async fn get(&self, uri: &str) -> Result<Bytes, ObjectsError> {
        let rest = uri
            .strip_prefix(&format!("s3://{}/", self.bucket))
            .ok_or_else(|| ObjectsError::Config(format!("{uri} is not in this store")))?;
        let got = self
            .store
            .get(&Key::from(rest))
            .await
            .map_err(|e| ObjectsError::Unavailable(e.to_string()))?;
        got.bytes()
            .await
            .map_err(|e| ObjectsError::Unavailable(e.to_string()))
    }
}

/// The file's bytes into an upload, a part at a time.
async fn fill(
    w: &mut object_store::WriteMultipart,
    path: &std::path::Path,
) -> Result<(), ObjectsError> {
    use tokio::io::AsyncReadExt;
    let unavailable = |e: String| ObjectsError::Unavailable(e);
    let mut f = tokio::fs::File::open(path)
        .await
        .map_err(|e| unavailable(format!("{}: {e}", path.display())))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .await
            .map_err(|e| unavailable(format!("{}: {e}", path.display())))?;
        if n == 0 {
            return Ok(());
        }
        w.wait_for_capacity(4)
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        w.write(&buf[..n]);
    }
}

/// A key segment from a tenant's string: letters, digits, `-`, `_`, `.`
/// kept, the rest `_`.
fn key_part(s: &str) -> String {
    let kept: String = s
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    match kept.trim_matches('.') {
        "" => "_".into(),
        k => k.to_string(),
    }
}
