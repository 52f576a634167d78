//! A page's metadata and JSON-LD (the `metadata` and `jsonld` formats),
//! found by a streaming scan of its tags, as the link scan finds links: no
//! tree is built, so a page costs tens of µs. What is read: `<html lang>`,
//! the first `<title>`, `<meta name=description>`, `<meta property=og:*>`,
//! `<link rel=canonical>` and the bodies of `<script
//! type=application/ld+json>`. Every value is bounded ([`Limits`]).

use crate::links::scan::{attr, decode_entities, find_ci, text_between, Tags};
use serde_json::{Map, Value};

/// What the scan keeps of a page.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Bytes of one string value (a title, a description, an `og:` value),
    /// cut at a character boundary.
    pub max_value: usize,
    /// `og:` properties kept (the first ones).
    pub max_og: usize,
    /// JSON-LD blocks kept (the first ones that parse).
    pub max_blocks: usize,
    /// Bytes of one JSON-LD block; a larger one is skipped.
    pub max_block: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_value: 2048,
            max_og: 64,
            max_blocks: 16,
            max_block: 256 * 1024,
        }
    }
}

/// The `metadata` object and the `jsonld` list of one page.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Metadata {
    pub title: Option<String>,
    pub description: Option<String>,
    /// As the page wrote it; resolved against the page's URL by the caller.
    pub canonical: Option<String>,
    pub language: Option<String>,
    /// `og:title` as `title`, and so on, in page order (first one wins).
    pub og: Map<String, Value>,
    pub jsonld: Vec<Value>,
    /// JSON-LD blocks left out: over the byte or count bound, or not JSON.
    pub jsonld_skipped: usize,
}

/// Scan `html` for its metadata and JSON-LD.
pub fn scan(html: &[u8], limits: &Limits) -> Metadata {
    let mut out = Metadata::default();
    let mut tags = Tags::new(html);
    while let Some(tag) = tags.next() {
        if tag.end {
            continue;
        }
        let (name, attrs) = (tag.name.to_ascii_lowercase(), tag.attrs);
        match name.as_slice() {
            b"html" if out.language.is_none() => {
                out.language = attr(attrs, b"lang").map(|v| cut(v.trim(), limits.max_value));
            }
            b"title" => {
                let end = find_ci(html, tags.pos, b"</title").unwrap_or(html.len());
                if out.title.is_none() {
                    let text = text_between(&html[tags.pos..end], limits.max_value + 8);
                    out.title = Some(cut(&decode_entities(&text), limits.max_value));
                }
                tags.pos = end;
            }
            b"meta" => meta(attrs, limits, &mut out),
            b"link" if out.canonical.is_none() => {
                let rel = attr(attrs, b"rel").unwrap_or_default();
                if rel
                    .split_ascii_whitespace()
                    .any(|r| r.eq_ignore_ascii_case("canonical"))
                {
                    out.canonical = attr(attrs, b"href").map(|v| cut(v.trim(), limits.max_value));
                }
            }
            b"script" => {
                let from = tags.pos;
                tags.skip_to(b"</script");
                if is_jsonld(attrs) {
                    jsonld(&html[from..tags.pos], limits, &mut out);
                }
            }
            b"style" => tags.skip_to(b"</style"),
            _ => {}
        }
    }
    out
}

fn meta(attrs: &[u8], limits: &Limits, out: &mut Metadata) {
    let Some(content) = attr(attrs, b"content") else {
        return;
    };
    let key = attr(attrs, b"property")
        .or_else(|| attr(attrs, b"name"))
        .unwrap_or_default()
        .to_ascii_lowercase();
    if key == "description" && out.description.is_none() {
        out.description = Some(cut(content.trim(), limits.max_value));
    } else if let Some(og) = key.strip_prefix("og:") {
        if out.og.len() < limits.max_og && !og.is_empty() && !out.og.contains_key(og) {
            let og = cut(og, limits.max_value);
            out.og
                .insert(og, Value::from(cut(content.trim(), limits.max_value)));
        }
    }
}

fn is_jsonld(attrs: &[u8]) -> bool {
    attr(attrs, b"type").is_some_and(|t| t.trim().eq_ignore_ascii_case("application/ld+json"))
}

fn jsonld(body: &[u8], limits: &Limits, out: &mut Metadata) {
    if out.jsonld.len() >= limits.max_blocks || body.len() > limits.max_block {
        out.jsonld_skipped += 1;
        return;
    }
    // serde_json's own recursion limit (128) bounds the nesting.
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => out.jsonld.push(v),
        Err(_) => out.jsonld_skipped += 1,
    }
}

/// `s` cut to at most `max` bytes, at a character boundary.
fn cut(s: &str, max: usize) -> String {
    s[..s.floor_char_boundary(max)].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"<!doctype html><html lang="en-GB"><head>
<title>Tea &amp; <b>cake</b></title>
<!-- <title>not this</title> -->
<meta name="description" content=" A page about tea. ">
<meta property="og:title" content="Tea">
<meta property="og:image" content="/tea.png">
<meta property="og:title" content="second">
<link rel="alternate canonical" href="https://example.com/tea">
<script type="application/ld+json">{"@type": "Article", "name": "Tea"}</script>
<script type="application/ld+json">{not json</script>
<script>var t = "<title>no</title>";</script>
</head><body><h1>Tea</h1></body></html>"#;

    #[test]
    fn reads_the_head_and_the_json_ld() {
        let m = scan(PAGE.as_bytes(), &Limits::default());
        assert_eq!(m.title.as_deref(), Some("Tea & cake"));
        assert_eq!(m.description.as_deref(), Some("A page about tea."));
        assert_eq!(m.canonical.as_deref(), Some("https://example.com/tea"));
        assert_eq!(m.language.as_deref(), Some("en-GB"));
        assert_eq!(m.og["title"], "Tea");
        assert_eq!(m.og["image"], "/tea.png");
        assert_eq!(
            m.jsonld,
            vec![serde_json::json!({"@type": "Article", "name": "Tea"})]
        );
        assert_eq!(m.jsonld_skipped, 1);
    }

    #[test]
    fn every_value_is_bounded() {
        let limits = Limits {
            max_value: 8,
            max_og: 2,
            max_blocks: 1,
            max_block: 64,
        };
        let mut page = String::from("<title>ééééééé long title</title>");
        page.push_str(&format!(
            r#"<meta name="description" content="{}">"#,
            "d".repeat(50 << 20)
        ));
        for i in 0..10 {
            page.push_str(&format!(r#"<meta property="og:p{i}" content="v">"#));
        }
        let big = format!(r#"{{"a": "{}"}}"#, "x".repeat(100));
        for block in ["[1]", "[2]", big.as_str()] {
            page.push_str(&format!(
                r#"<script type="application/ld+json">{block}</script>"#
            ));
        }
        let m = scan(page.as_bytes(), &limits);
        assert_eq!(m.title.as_deref(), Some("éééé"));
        assert_eq!(m.description.as_deref(), Some("dddddddd"));
        assert_eq!(m.og.len(), 2);
        assert_eq!(m.jsonld, vec![serde_json::json!([1])]);
        assert_eq!(m.jsonld_skipped, 2);
    }

    #[test]
    fn deep_json_ld_is_skipped_not_a_stack_overflow() {
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        let page = format!(r#"<script type="application/ld+json">{deep}</script>"#);
        let limits = Limits {
            max_block: 1 << 20,
            ..Limits::default()
        };
        let m = scan(page.as_bytes(), &limits);
        assert!(m.jsonld.is_empty());
        assert_eq!(m.jsonld_skipped, 1);
    }

    #[test]
    fn unclosed_tags_end_the_scan() {
        for page in [
            "<title>never closed",
            "<meta content=",
            "<!-- open",
            "<script type=application/ld+json>[1",
        ] {
            let m = scan(page.as_bytes(), &Limits::default());
            assert!(m.jsonld.is_empty(), "{page}");
        }
    }
}
