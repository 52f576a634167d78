//! The contract's rules for a crawl request (§2.1): [`CrawlRequest`]'s
//! validation, field by field, with messages that give the reason.

use super::{CrawlRequest, RequestError};
use crate::links::{filter, MAX_URL_BYTES};
use std::collections::HashSet;

/// Items in `allowed_domains` and `deny_extensions`.
const MAX_LIST_ITEMS: usize = 1000;
/// Bytes of one list item or one header (name and value).
const MAX_ITEM_BYTES: usize = 8 * 1024;
/// Entries in `headers`.
const MAX_HEADERS: usize = 64;
/// Bytes of a request `body`.
const MAX_BODY_BYTES: usize = 256 * 1024;

type Checked = Result<(), RequestError>;

fn bad(m: String) -> Checked {
    Err(RequestError::Schema(m))
}

impl CrawlRequest {
    pub(super) fn validate(&mut self, maxdepth_limit: u32) -> Checked {
        self.check_url()?;
        check_len("appid", &self.appid, 3, 40)?;
        check_len("crawlid", &self.crawlid, 1, 40)?;
        check_spiderid(&self.spiderid).map_err(RequestError::Schema)?;
        if !(1..=100).contains(&self.priority) {
            return bad(format!("`priority` {} is outside 1..100", self.priority));
        }
        if self.maxdepth > maxdepth_limit {
            return bad(format!(
                "`maxdepth` {} is above the limit {maxdepth_limit}",
                self.maxdepth
            ));
        }
        if self.domain_max_pages.is_some_and(|n| n > 2000) {
            return bad("`domain_max_pages` is outside 0..2000".into());
        }
        self.check_lists()?;
        if self.expires < 0 {
            return bad("`expires` must be Unix seconds, or 0 for never".into());
        }
        if let Some(ua) = &self.useragent {
            check_len("useragent", ua, 3, 1000)?;
        }
        if let Some(c) = &self.cookie {
            check_len("cookie", c, 3, 1000)?;
        }
        self.check_headers()?;
        if self.body.as_ref().is_some_and(|b| b.len() > MAX_BODY_BYTES) {
            return bad(format!(
                "`body` is longer than the {MAX_BODY_BYTES} bytes allowed"
            ));
        }
        if let Some(m) = &self.method {
            if m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic()) {
                return bad(format!("`method` {m:?} is not an HTTP method"));
            }
        }
        self.check_filters()?;
        self.check_formats()?;
        if let Some(r) = &self.revisit {
            crate::revisit::Revisit::parse(r).map_err(RequestError::Schema)?;
        }
        if let Some(w) = &self.webhook {
            crate::notify::Webhook::parse(w).map_err(RequestError::Schema)?;
        }
        if let Some(s) = &self.schedule {
            crate::schedule::Schedule::parse(s, jiff::Timestamp::now())
                .map_err(|e| RequestError::Schema(e.to_string()))?;
        }
        Ok(())
    }

    /// `url`: trimmed, `http://` when it has no scheme, then an http(s) URL
    /// within the length cap.
    fn check_url(&mut self) -> Checked {
        let url = self.url.trim();
        if url.is_empty() {
            return bad("`url` is empty".into());
        }
        // The reference retries a URL without a scheme as http://.
        self.url = if url.contains("://") {
            url.to_string()
        } else {
            format!("http://{url}")
        };
        if self.url.len() > MAX_URL_BYTES {
            return bad(format!(
                "`url` is {} bytes, longer than the {MAX_URL_BYTES} allowed",
                self.url.len()
            ));
        }
        match url::Url::parse(&self.url) {
            Err(_) => bad(format!("`url` {:?} is not a valid URL", self.url)),
            Ok(u) if !matches!(u.scheme(), "http" | "https") => bad(format!(
                "`url` {:?} is a {}: URL; only http and https are crawled",
                self.url,
                u.scheme()
            )),
            Ok(_) => Ok(()),
        }
    }

    /// The domain, regex and extension lists: sized, and no item twice.
    fn check_lists(&self) -> Checked {
        for (name, list) in [
            ("allowed_domains", &self.allowed_domains),
            ("allow_regex", &self.allow_regex),
            ("deny_regex", &self.deny_regex),
            ("deny_extensions", &self.deny_extensions),
        ] {
            let Some(list) = list else { continue };
            let regex = name.ends_with("regex");
            let (max_items, max_len) = if regex {
                (filter::MAX_PATTERNS, filter::MAX_PATTERN_BYTES)
            } else {
                (MAX_LIST_ITEMS, MAX_ITEM_BYTES)
            };
            if list.len() > max_items {
                return bad(format!(
                    "`{name}` has {} items, more than the {max_items} allowed",
                    list.len()
                ));
            }
            if let Some(long) = list.iter().find(|v| v.len() > max_len) {
                return bad(format!(
                    "`{name}` has an item of {} bytes, longer than the {max_len} allowed",
                    long.len()
                ));
            }
            let mut seen = HashSet::new();
            if let Some(dup) = list.iter().find(|v| !seen.insert(v.as_str())) {
                return bad(format!("`{name}` has {dup:?} twice: items must be unique"));
            }
        }
        Ok(())
    }

    /// `headers`: how many, how long, and each one HTTP can carry.
    fn check_headers(&self) -> Checked {
        let Some(h) = &self.headers else {
            return Ok(());
        };
        if h.len() > MAX_HEADERS {
            return bad(format!(
                "`headers` has {} entries, more than the {MAX_HEADERS} allowed",
                h.len()
            ));
        }
        if let Some((k, _)) = h.iter().find(|(k, v)| k.len() + v.len() > MAX_ITEM_BYTES) {
            return bad(format!(
                "`headers` entry {k:?} is longer than the {MAX_ITEM_BYTES} bytes allowed"
            ));
        }
        // A name or value that HTTP cannot carry would be refused at
        // fetch time, or split into headers of the request's choosing.
        if let Some((k, _)) = h.iter().find(|(k, v)| {
            reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err()
                || reqwest::header::HeaderValue::from_str(v).is_err()
        }) {
            return bad(format!(
                "`headers` entry {k:?} is not a valid HTTP header (no CR, LF or control characters in names or values)"
            ));
        }
        Ok(())
    }

    /// The link filters compile, within the size cap.
    fn check_filters(&self) -> Checked {
        self.filters().map_err(|e| {
            RequestError::Schema(match e {
                regex::Error::CompiledTooBig(_) => format!(
                    "bad regex: the patterns compile to more than {} bytes; use fewer or simpler ones",
                    filter::MAX_COMPILED_BYTES
                ),
                e => format!("bad regex: {e}"),
            })
        })?;
        Ok(())
    }

    /// `formats` names each format once, and `main_content` has a format
    /// to apply to.
    fn check_formats(&self) -> Checked {
        if let Some(f) = &self.formats {
            crate::extract::formats::check(f).map_err(RequestError::Schema)?;
        }
        use crate::extract::Format::{Markdown, Text};
        let text = self
            .formats
            .as_ref()
            .is_some_and(|f| f.contains(&Text) || f.contains(&Markdown));
        if self.main_content && !text {
            return bad(
                "`main_content` applies to the `text` and `markdown` formats: add one to `formats`"
                    .into(),
            );
        }
        Ok(())
    }
}

fn check_len(name: &str, v: &str, min: usize, max: usize) -> Result<(), RequestError> {
    check_length(name, v, min, max).map_err(RequestError::Schema)
}

/// A spider name (contract §2.1): 1-40 of `A-Z a-z 0-9 _ - .`. It is
/// woven into queue and throttle keys, so nothing else may get in.
pub fn check_spiderid(v: &str) -> Result<(), String> {
    check_length("spiderid", v, 1, 40)?;
    if let Some(c) = v
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(format!(
            "`spiderid` {v:?} has {c:?}: only A-Z a-z 0-9 _ - . are allowed"
        ));
    }
    Ok(())
}

/// The contract's length rule: `name` must be `min..=max` characters.
pub(crate) fn check_length(name: &str, v: &str, min: usize, max: usize) -> Result<(), String> {
    let n = v.chars().count();
    if n < min || n > max {
        return Err(format!("`{name}` must be {min}-{max} characters, got {n}"));
    }
    Ok(())
}
