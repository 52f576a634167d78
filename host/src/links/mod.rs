//! Native link extraction: a streaming scan of `<a>`/`<area>` hrefs (no DOM),
//! resolution against the base URL, canonicalization and the crawl's filters.
//!
//! Spiders call this through the `response.links` host import, so no guest
//! bundles an HTML parser and every language gets the same links.

pub mod domain;
pub mod filter;
pub(crate) mod scan;

pub use filter::{LinkFilters, DEFAULT_DENY_EXTENSIONS};
pub(crate) use scan::decode_entities;
pub use scan::{scan, RawLink, MAX_TEXT_BYTES};

use std::collections::HashMap;
use url::Url;

/// A link as the crawl follows it: absolute, canonical, filtered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub url: String,
    pub text: String,
}

/// The longest URL the crawl takes (resolved, canonical), in bytes: longer
/// ones are dropped wherever they come from (a page, a spider, a client).
pub const MAX_URL_BYTES: usize = 8 * 1024;

/// A page's links, and whether some were left out by the cap.
#[derive(Debug, Default, Clone)]
pub struct Extracted {
    pub links: Vec<Link>,
    pub truncated: bool,
    /// Each kept link parsed, by its text: a spider handing a link back as
    /// a request costs a lookup, not a second parse.
    parsed: HashMap<String, Url>,
}

impl Extracted {
    /// The parsed form of one of these links.
    pub fn parsed(&self, url: &str) -> Option<&Url> {
        self.parsed.get(url)
    }
}

/// Extract the page's links, resolved against `page_url` (or `<base href>`),
/// canonicalized, deduplicated within the page, and kept only if `filters`
/// allow them; at most `max` of them (the first in page order).
pub fn extract(html: &[u8], page_url: &Url, filters: &LinkFilters, max: usize) -> Extracted {
    // The scan stops a little past the cap, so a page of a million anchors
    // costs no more than one of a few thousand, and in-page duplicates or
    // filtered links still leave room for `max` kept ones.
    let raw = scan(html, max.saturating_mul(4).max(64));
    let base = raw
        .base
        .as_deref()
        .and_then(|b| page_url.join(b).ok())
        .unwrap_or_else(|| page_url.clone());
    let mut out = Extracted {
        links: Vec::with_capacity(raw.links.len().min(max)),
        truncated: raw.truncated,
        parsed: HashMap::with_capacity(raw.links.len().min(max)),
    };
    for link in raw.links {
        let Some(url) = resolve(&base, &link.href) else {
            continue;
        };
        if !filters.allows(&url) {
            continue;
        }
        if out.parsed.contains_key(url.as_str()) {
            continue;
        }
        if out.links.len() == max {
            out.truncated = true;
            break;
        }
        out.links.push(Link {
            url: url.to_string(),
            text: link.text,
        });
        out.parsed.insert(url.to_string(), url);
    }
    out
}

/// Resolve `href` against `base` and canonicalize; `None` for anything that
/// is not an http(s) URL or is longer than [`MAX_URL_BYTES`].
pub fn resolve(base: &Url, href: &str) -> Option<Url> {
    let href = href.trim();
    if href.is_empty() || href.starts_with('#') || href.len() > MAX_URL_BYTES {
        return None;
    }
    let url = base.join(href).ok()?;
    canonical(url).filter(|u| u.as_str().len() <= MAX_URL_BYTES)
}

/// The canonical form used for dedup and output: http(s) only, no fragment,
/// query arguments sorted (as Scrapy's `canonicalize_url`), host lowercased
/// and default port dropped (the `url` crate does those two on parse).
pub fn canonical(mut url: Url) -> Option<Url> {
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return None;
    }
    url.set_fragment(None);
    if let Some(query) = url.query() {
        if query.is_empty() {
            url.set_query(None);
        } else if query.contains('&') {
            let mut parts: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
            parts.sort_unstable();
            let sorted = parts.join("&");
            url.set_query(Some(&sorted));
        }
    }
    Some(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Url {
        Url::parse("http://Example.com:80/dir/page.html").expect("valid")
    }

    #[test]
    fn resolves_relative_absolute_and_drops_fragments() {
        let html = br##"<p><a href="a.html#x">A</a> <A HREF='/b.html'>B</A>
            <a href=http://other.org/c?z=1&a=2>C</a><area href="d.html">"##;
        let links = extract(html, &base(), &LinkFilters::default(), 100).links;
        let urls: Vec<_> = links.iter().map(|l| l.url.as_str()).collect();
        assert_eq!(
            urls,
            [
                "http://example.com/dir/a.html",
                "http://example.com/b.html",
                "http://other.org/c?a=2&z=1",
                "http://example.com/dir/d.html",
            ]
        );
        assert_eq!(links[0].text, "A");
    }

    #[test]
    fn skips_non_http_and_duplicates() {
        let html = br##"<a href="mailto:x@y">m</a><a href="javascript:void(0)">j</a>
            <a href="#top">t</a><a href="x.html">1</a><a href="x.html#b">2</a>"##;
        let links = extract(html, &base(), &LinkFilters::default(), 100).links;
        assert_eq!(links.len(), 1);
        assert_eq!(links[0].url, "http://example.com/dir/x.html");
    }

    #[test]
    fn stops_at_the_cap_and_says_so() {
        let html: String = (0..50)
            .map(|i| format!("<a href=/{i}>x</a><a href=/{i}>dup</a>"))
            .collect();
        let all = extract(html.as_bytes(), &base(), &LinkFilters::default(), 50);
        assert_eq!((all.links.len(), all.truncated), (50, false));
        let some = extract(html.as_bytes(), &base(), &LinkFilters::default(), 20);
        assert_eq!((some.links.len(), some.truncated), (20, true));
        assert_eq!(some.links[19].url, "http://example.com/19");
        // A million anchors cost a bounded scan.
        let huge = "<a href=/x>y</a>".repeat(1_000_000);
        let capped = extract(huge.as_bytes(), &base(), &LinkFilters::default(), 10);
        assert_eq!((capped.links.len(), capped.truncated), (1, true));
    }

    #[test]
    fn drops_urls_over_the_length_cap() {
        let long = format!("/{}", "a".repeat(MAX_URL_BYTES));
        let html = format!("<a href={long}>long</a><a href=/short>s</a>");
        let links = extract(html.as_bytes(), &base(), &LinkFilters::default(), 10).links;
        assert_eq!(links.len(), 1);
        assert_eq!(links[0].url, "http://example.com/short");
    }

    /// Hostile pages kept in the repo (`host/tests/corpus/links`): every
    /// one extracts without a panic. Add a file when a page breaks us.
    #[test]
    fn the_hostile_corpus_extracts_without_panic() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/links");
        let mut pages = 0;
        for entry in std::fs::read_dir(&dir).expect("corpus dir") {
            let html = std::fs::read(entry.expect("entry").path()).expect("page");
            let got = extract(&html, &base(), &LinkFilters::default(), 100);
            assert!(got.links.len() <= 100);
            assert!(got.links.iter().all(|l| l.text.len() <= MAX_TEXT_BYTES));
            pages += 1;
        }
        assert!(pages >= 10, "corpus missing: {}", dir.display());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 3000,
            ..proptest::prelude::ProptestConfig::default()
        })]

        /// Any bytes at all: extraction never panics and keeps its bounds.
        #[test]
        fn any_bytes_extract_within_bounds(html in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1024)) {
            let got = extract(&html, &base(), &LinkFilters::default(), 8);
            proptest::prop_assert!(got.links.len() <= 8);
        }

        /// Bytes made of the pieces scanners trip on.
        #[test]
        fn tag_soup_extracts_within_bounds(pieces in proptest::collection::vec(0usize..14, 0..64)) {
            const P: [&str; 14] = ["<a href=", "\"", "'", ">", "</a>", "&", ";", "&#x", "&amp",
                "\u{e9}", "<!--", "-->", "<base href=", "<script>"];
            let html: String = pieces.into_iter().map(|i| P[i]).collect();
            let got = extract(html.as_bytes(), &base(), &LinkFilters::default(), 8);
            proptest::prop_assert!(got.links.len() <= 8);
        }
    }

    #[test]
    fn honours_base_href() {
        let html =
            br#"<head><base href="http://cdn.example.net/root/"></head><a href="y.html">y</a>"#;
        let links = extract(html, &base(), &LinkFilters::default(), 100).links;
        assert_eq!(links[0].url, "http://cdn.example.net/root/y.html");
    }
}
