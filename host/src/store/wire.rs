//! How requests and crawls are written for the scripts: a queued request
//! (without its crawl's spec), crawl keys, and script arguments.

use super::StoreError;
use crate::request::{CrawlKey, CrawlSpec, Job};
use crate::revisit::PageState;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A queued request as stored in Redis: the crawl's spec is stored once,
/// not in every request.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WireJob {
    u: String,
    s: String,
    p: i32,
    d: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    m: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    h: Vec<(String, String)>,
    /// The body as base64 (a JSON array of numbers takes 3-4 bytes a byte).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "body64")]
    b: Option<Vec<u8>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    meta: Vec<(String, String)>,
    #[serde(default)]
    r: u32,
    #[serde(default)]
    f: bool,
    /// Registered domain (for per-crawl info and purges).
    #[serde(default)]
    dm: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rf: Option<String>,
    #[serde(default)]
    rc: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pz: u32,
    /// A revisited page's state from the last run (`PageState::encode`):
    /// its validators reach the worker on the pop, with no call of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pg: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl WireJob {
    /// As stored: plain data, so writing it cannot fail.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a queued request serialises")
    }

    /// `domain` is the job's registered domain, computed once by the caller.
    pub(crate) fn of(job: &Job, domain: &str) -> WireJob {
        WireJob {
            u: job.url.clone(),
            s: job.spiderid.clone(),
            p: job.priority,
            d: job.depth,
            m: (job.method != "GET").then(|| job.method.clone()),
            h: job.headers.clone(),
            b: job.body.clone(),
            meta: job.meta.clone(),
            r: job.retries,
            f: job.dont_filter,
            dm: domain.to_string(),
            rf: job.redirected_from.clone(),
            rc: job.redirects,
            pz: job.pauses,
            pg: job.prior.as_ref().map(|p| p.encode()),
        }
    }

    pub(crate) fn into_job(self, crawl: Arc<CrawlSpec>) -> Job {
        Job {
            crawl,
            url: self.u,
            spiderid: self.s,
            priority: self.p,
            depth: self.d,
            method: self.m.unwrap_or_else(|| "GET".into()),
            headers: self.h,
            body: self.b,
            meta: self.meta,
            retries: self.r,
            dont_filter: self.f,
            redirected_from: self.rf,
            redirects: self.rc,
            pauses: self.pz,
            spaced: false,
            prior: self.pg.as_deref().and_then(PageState::decode).map(Arc::new),
        }
    }
}

/// A request body in a queued request: base64 text. Requests queued
/// before it was compact (an array of numbers) still read.
mod body64 {
    use base64::{engine::general_purpose::STANDARD, Engine as _};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match b {
            Some(b) => s.serialize_str(&STANDARD.encode(b)),
            None => s.serialize_none(),
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Stored {
        Text(String),
        Bytes(Vec<u8>),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Ok(match Option::<Stored>::deserialize(d)? {
            Some(Stored::Text(t)) => Some(STANDARD.decode(t).map_err(serde::de::Error::custom)?),
            Some(Stored::Bytes(b)) => Some(b),
            None => None,
        })
    }
}

/// `spider|domain`, and `|r` for a request that needs a browser (see
/// `common.lua`'s `qk_parts`).
pub(crate) fn queue_key(job: &Job, domain: &str) -> String {
    // One queue per origin, so each origin's pace holds back only its own
    // requests (`politeness/site.lua` reads the origin back).
    let origin = crate::links::domain::origin_of(&job.url);
    if job.crawl.render.is_never() {
        format!("{}|{domain}|{origin}", job.spiderid)
    } else {
        format!("{}|{domain}|{origin}|r", job.spiderid)
    }
}

/// A cap for a script: the number, or "" for none.
pub(crate) fn cap_arg(cap: Option<u32>) -> String {
    cap.map(|n| n.to_string()).unwrap_or_default()
}

/// 8 bytes of the 16-byte fingerprint, as a signed integer (so Redis keeps
/// the seen sets as compact intsets) and as hex (its path in the trie).
pub(crate) fn fingerprint_args(fingerprint: u128) -> (String, String) {
    let fp64 = (fingerprint >> 64) as u64;
    ((fp64 as i64).to_string(), format!("{fp64:016x}"))
}

/// The short, key-safe id of a crawl (appid + crawlid).
pub fn crawl_ref(key: &CrawlKey) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(key.appid.as_bytes());
    h.update(b"\0");
    h.update(key.crawlid.as_bytes());
    format!("{:016x}", h.digest())
}

/// The pair behind a [`crawl_ref`], stored with the crawl's state and
/// compared by every script that writes it (length-prefixed, so no two
/// pairs give the same text).
pub fn crawl_owner(key: &CrawlKey) -> String {
    format!("{}:{}{}", key.appid.len(), key.appid, key.crawlid)
}

/// A script's count, where -1 means another crawl owns the key.
pub(crate) fn owned_count(n: i64) -> Result<usize, StoreError> {
    if n < 0 {
        return Err(StoreError::Collision);
    }
    Ok(n as usize)
}

#[cfg(test)]
mod tests {
    use super::WireJob;

    #[test]
    fn bodies_are_stored_as_base64_and_old_arrays_still_read() {
        let json = r#"{"u":"http://a.test/","s":"link","p":1,"d":0,"b":[104,105]}"#;
        let mut old: WireJob = serde_json::from_str(json).expect("old form");
        assert_eq!(old.b.as_deref(), Some(&b"hi"[..]));
        old.b = Some(vec![0xff; 300]);
        let text = serde_json::to_string(&old).expect("serialize");
        assert!(text.contains(r#""b":"////"#), "{text}");
        assert!(
            text.len() < 500,
            "300 bytes of body took {} bytes",
            text.len()
        );
        let back: WireJob = serde_json::from_str(&text).expect("new form");
        assert_eq!(back.b, Some(vec![0xff; 300]));
    }
}
