//! `[warc]` (the archive every fetch is written to) and `[output.objects]`
//! (the object store that takes bodies too large for a message, and
//! sealed archives).

use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Warc {
    /// Where WARC files are written (`*.warc.gz`, a `.cdxj` beside each);
    /// empty: no archive.
    pub dir: String,
    /// One file set per `appid` (default), per `crawl`, or `none`.
    pub split_by: SplitBy,
    /// A file is sealed and a new one begun past this many bytes.
    pub max_bytes: u64,
    /// ... or once it is this old (s).
    #[serde(deserialize_with = "super::seconds::read")]
    pub max_age: Duration,
    /// Leave `Cookie`, `Authorization` and `Proxy-Authorization` values
    /// out of request records.
    pub redact: bool,
    /// Package each finished crawl as a WACZ (`<dir>/wacz/`).
    pub wacz: bool,
    /// The first word of file names.
    pub prefix: String,
    /// gzip level of each record, 0-9 (0: stored, fastest, largest).
    /// Payloads that came compressed (content-encoded, images, video,
    /// archives) are stored whatever the level.
    pub level: u32,
}

impl Default for Warc {
    fn default() -> Self {
        Warc {
            dir: String::new(),
            split_by: SplitBy::Appid,
            max_bytes: 1 << 30,
            max_age: Duration::from_secs(900),
            redact: true,
            wacz: false,
            prefix: "spinneret".into(),
            level: 1,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SplitBy {
    None,
    Appid,
    Crawl,
}

impl Warc {
    pub(super) fn check(&self) -> Result<(), String> {
        if self.level > 9 {
            return Err(format!("warc.level must be 0-9, got {}", self.level));
        }
        if self.max_bytes < 1 << 20 {
            return Err(format!(
                "warc.max_bytes must be at least 1048576 (1 MiB), got {}",
                self.max_bytes
            ));
        }
        if self.max_age < Duration::from_secs(1) {
            return Err("warc.max_age must be at least 1 second".into());
        }
        if self.prefix.is_empty()
            || !self
                .prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(format!(
                "warc.prefix must be letters, digits, '-', '_' or '.', got {:?}",
                self.prefix
            ));
        }
        if self.wacz && self.dir.is_empty() {
            return Err("warc.wacz needs warc.dir".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Output {
    pub objects: Objects,
}

/// An S3-compatible store. Credentials come from the environment
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Objects {
    /// `s3://bucket/prefix`; empty: no store (a result too large for a
    /// message goes out without its body, as the log says once).
    pub url: String,
    /// The store's address (`http://127.0.0.1:9000` for MinIO); empty:
    /// AWS's own.
    pub endpoint: String,
    pub region: String,
    /// A result whose JSON would pass this many bytes has its body stored
    /// and sends `body_ref` instead; 0: `kafka.max_message_bytes` less
    /// 64 KiB.
    pub offload_bytes: usize,
    /// `body_ref.url` is a link valid this long, for consumers without
    /// credentials (s); 0: none.
    #[serde(deserialize_with = "super::seconds::read")]
    pub presign: Duration,
}

impl Default for Objects {
    fn default() -> Self {
        Objects {
            url: String::new(),
            endpoint: String::new(),
            region: "us-east-1".into(),
            offload_bytes: 0,
            presign: Duration::ZERO,
        }
    }
}

impl Objects {
    pub(super) fn check(&self) -> Result<(), String> {
        if self.url.is_empty() {
            return Ok(());
        }
        let Some(rest) = self.url.strip_prefix("s3://") else {
            return Err(format!(
                "output.objects.url must be s3://bucket[/prefix], got {:?}",
                self.url
            ));
        };
        if rest.split('/').next().is_none_or(str::is_empty) {
            return Err(format!(
                "output.objects.url names no bucket: {:?}",
                self.url
            ));
        }
        if self.presign > Duration::from_secs(7 * 86_400) {
            return Err(
                "output.objects.presign: S3 signs links for 7 days (604800 s) at most".into(),
            );
        }
        if !self.endpoint.is_empty() && url::Url::parse(&self.endpoint).is_err() {
            return Err(format!(
                "output.objects.endpoint is not a URL: {:?}",
                self.endpoint
            ));
        }
        Ok(())
    }

    /// The bucket and the key prefix (without slashes at its ends).
    pub fn bucket_and_prefix(&self) -> (&str, &str) {
        let rest = self.url.strip_prefix("s3://").unwrap_or(&self.url);
        match rest.split_once('/') {
            Some((b, p)) => (b, p.trim_matches('/')),
            None => (rest, ""),
        }
    }
}
