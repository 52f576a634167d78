//! The crawl's link rules (contract §2.1): allowed domains, allow/deny
//! regexes (deny beats allow) and denied extensions.

use regex::{RegexSet, RegexSetBuilder};
use std::collections::HashSet;
use std::sync::{Arc, LazyLock};
use url::Url;

/// Scrapy's `IGNORED_EXTENSIONS`: used when a crawl names none.
pub const DEFAULT_DENY_EXTENSIONS: &[&str] = &[
    "7z", "7zip", "bz2", "rar", "tar", "tar.gz", "xz", "zip", "mng", "pct", "bmp", "gif", "jpg",
    "jpeg", "png", "pst", "psp", "tif", "tiff", "ai", "drw", "dxf", "eps", "ps", "svg", "cdr",
    "ico", "webp", "mp3", "wma", "ogg", "wav", "ra", "aac", "mid", "au", "aiff", "3gp", "asf",
    "asx", "avi", "mov", "mp4", "mpg", "qt", "rm", "swf", "wmv", "m4a", "m4v", "flv", "webm",
    "xls", "xlsm", "xlsx", "xltm", "xltx", "potm", "potx", "ppt", "pptm", "pptx", "pps", "doc",
    "docb", "docm", "docx", "dotm", "dotx", "odt", "ods", "odg", "odp", "css", "pdf", "exe", "bin",
    "rss", "dmg", "iso", "apk", "jar", "sh", "rb", "js", "hta", "bat", "cpl", "msi", "msp", "py",
];

/// Patterns in `allow_regex` or `deny_regex`.
pub const MAX_PATTERNS: usize = 32;
/// Bytes of one pattern.
pub const MAX_PATTERN_BYTES: usize = 1024;
/// Compiled size of one list's patterns (the regex crate's size limit), so
/// matching a link stays a small, linear-time automaton.
pub const MAX_COMPILED_BYTES: usize = 2 << 20;

/// Compiled link rules of one crawl.
#[derive(Debug, Clone)]
pub struct LinkFilters {
    allowed_domains: Vec<String>,
    allow: Option<RegexSet>,
    deny: Option<RegexSet>,
    deny_extensions: Arc<HashSet<String>>,
}

/// The default list as a set, built once: validating a request builds
/// filters, and the ingest monitor validates tens of thousands a second.
static DEFAULT_DENY: LazyLock<Arc<HashSet<String>>> = LazyLock::new(|| {
    Arc::new(
        DEFAULT_DENY_EXTENSIONS
            .iter()
            .map(|e| e.to_string())
            .collect(),
    )
});

impl Default for LinkFilters {
    fn default() -> Self {
        LinkFilters {
            allowed_domains: Vec::new(),
            allow: None,
            deny: None,
            deny_extensions: DEFAULT_DENY.clone(),
        }
    }
}

impl LinkFilters {
    /// Build from the request's fields; `None` means "no rule" (or, for
    /// extensions, the default list).
    pub fn new(
        allowed_domains: Option<&[String]>,
        allow_regex: Option<&[String]>,
        deny_regex: Option<&[String]>,
        deny_extensions: Option<&[String]>,
    ) -> Result<Self, regex::Error> {
        let set = |r: Option<&[String]>| -> Result<Option<RegexSet>, regex::Error> {
            r.filter(|r| !r.is_empty())
                .map(|r| {
                    RegexSetBuilder::new(r)
                        .size_limit(MAX_COMPILED_BYTES)
                        .dfa_size_limit(MAX_COMPILED_BYTES)
                        .build()
                })
                .transpose()
        };
        Ok(LinkFilters {
            // No allowed_domains: an empty list, which restricts nothing.
            allowed_domains: allowed_domains
                .unwrap_or_default()
                .iter()
                .map(|d| d.trim_start_matches('.').to_ascii_lowercase())
                .collect(),
            allow: set(allow_regex)?,
            deny: set(deny_regex)?,
            deny_extensions: match deny_extensions {
                Some(list) => Arc::new(
                    list.iter()
                        .map(|e| e.trim_start_matches('.').to_ascii_lowercase())
                        .collect(),
                ),
                None => DEFAULT_DENY.clone(),
            },
        })
    }

    pub fn allows(&self, url: &Url) -> bool {
        if !self.allowed_domains.is_empty() {
            // A URL without a host matches no allowed domain.
            let host = url.host_str().unwrap_or_default();
            let ok = self.allowed_domains.iter().any(|d| {
                host == d
                    || (host.ends_with(d.as_str()) && host[..host.len() - d.len()].ends_with('.'))
            });
            if !ok {
                return false;
            }
        }
        if let Some(ext) = extension(url.path()) {
            if self.deny_extensions.contains(&ext) {
                return false;
            }
        }
        let s = url.as_str();
        if self.deny.as_ref().is_some_and(|d| d.is_match(s)) {
            return false;
        }
        self.allow.as_ref().is_none_or(|a| a.is_match(s))
    }
}

/// The lowercased extension of the path's last segment, without the dot.
fn extension(path: &str) -> Option<String> {
    let last = path.rsplit('/').next()?;
    let dot = last.rfind('.')?;
    (dot > 0).then(|| last[dot + 1..].to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).expect("valid")
    }

    #[test]
    fn default_denies_binary_extensions() {
        let f = LinkFilters::default();
        assert!(!f.allows(&url("http://a.com/x/pic.JPG")));
        assert!(!f.allows(&url("http://a.com/doc.pdf")));
        assert!(f.allows(&url("http://a.com/page.html")));
        assert!(f.allows(&url("http://a.com/dir.v2/")));
    }

    #[test]
    fn allowed_domains_include_subdomains_only() {
        let d = vec!["bbc.co.uk".to_string()];
        let f = LinkFilters::new(Some(&d), None, None, None).expect("valid");
        assert!(f.allows(&url("http://news.bbc.co.uk/")));
        assert!(f.allows(&url("http://bbc.co.uk/")));
        assert!(!f.allows(&url("http://notbbc.co.uk/")));
    }

    #[test]
    fn deny_beats_allow() {
        let allow = vec!["/p/".to_string()];
        let deny = vec!["/p/secret".to_string()];
        let f = LinkFilters::new(None, Some(&allow), Some(&deny), None).expect("valid");
        assert!(f.allows(&url("http://a.com/p/1")));
        assert!(!f.allows(&url("http://a.com/p/secret")));
        assert!(!f.allows(&url("http://a.com/q/1")));
    }
}
