//! The `formats` a crawl asks for (contract §2.1): what each page's result
//! carries besides its HTML `body`, or instead of it. `metadata` and
//! `jsonld` come from a streaming scan (tens of µs a page); `text` and
//! `markdown` from the page parsed once as for selectors, under the same
//! bounds, so only the crawls that ask pay for a parse (ADR 0012).

use super::metadata::{self, Limits};
use super::select::{Bounds, Document};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// One format a crawl may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// The contract's `body` (the default).
    Html,
    Markdown,
    Text,
    Metadata,
    Jsonld,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Html => "html",
            Format::Markdown => "markdown",
            Format::Text => "text",
            Format::Metadata => "metadata",
            Format::Jsonld => "jsonld",
        }
    }
}

/// A request's `formats`: each named once, at least one, all made here.
pub fn check(formats: &[Format]) -> Result<(), String> {
    if formats.is_empty() {
        return Err(
            "`formats` is empty: name at least one of html, markdown, text, metadata, jsonld"
                .into(),
        );
    }
    for (i, f) in formats.iter().enumerate() {
        if formats[..i].contains(f) {
            return Err(format!("`formats` names `{}` twice", f.name()));
        }
    }
    Ok(())
}

/// What one page's formats came to; `result/json.rs` writes it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Formatted {
    /// `html` was not asked for: the result goes without its `body`.
    pub no_body: bool,
    pub metadata: Option<Value>,
    pub jsonld: Option<Value>,
    pub text: Option<String>,
    pub markdown: Option<String>,
    /// Why a format could not be made (a page over the parse bounds);
    /// the others are still there.
    pub error: Option<String>,
}

/// The `formats` of a page: its decoded `body`, at `url`.
pub fn make(body: &str, url: &str, formats: &[Format], main_content: bool) -> Formatted {
    let mut out = Formatted {
        no_body: !formats.contains(&Format::Html),
        ..Formatted::default()
    };
    let wants = |f| formats.contains(&f);
    if wants(Format::Metadata) || wants(Format::Jsonld) {
        let m = metadata::scan(body.as_bytes(), &Limits::default());
        if wants(Format::Metadata) {
            let canonical = m.canonical.as_deref().map(|c| {
                url::Url::parse(url)
                    .and_then(|base| base.join(c))
                    .map_or_else(|_| c.to_string(), String::from)
            });
            out.metadata = Some(json!({
                "title": m.title,
                "description": m.description,
                "canonical": canonical,
                "language": m.language,
                "og": m.og,
            }));
        }
        if wants(Format::Jsonld) {
            out.jsonld = Some(Value::Array(m.jsonld));
        }
    }
    if wants(Format::Text) || wants(Format::Markdown) {
        match Document::parse(body, &Bounds::default()) {
            Ok(doc) => {
                if wants(Format::Text) {
                    out.text = Some(doc.text(main_content));
                }
                if wants(Format::Markdown) {
                    let base = url::Url::parse(url).ok();
                    out.markdown = Some(doc.markdown(main_content, base.as_ref()));
                }
            }
            Err(e) => out.error = Some(format!("no text or markdown: {e}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"<html lang="fr"><head><title>Thé</title>
<link rel="canonical" href="/the"><meta property="og:type" content="article">
<script type="application/ld+json">{"@type":"Article"}</script></head>
<body><nav>Menu</nav><main><p>Bonjour</p></main></body></html>"#;

    #[test]
    fn each_format_asked_and_only_those() {
        let all = [
            Format::Metadata,
            Format::Jsonld,
            Format::Text,
            Format::Markdown,
        ];
        let f = make(PAGE, "https://example.com/a/b", &all, true);
        assert!(f.no_body);
        assert_eq!(
            f.metadata,
            Some(json!({
                "title": "Thé", "description": null, "canonical": "https://example.com/the",
                "language": "fr", "og": {"type": "article"},
            }))
        );
        assert_eq!(f.jsonld, Some(json!([{"@type": "Article"}])));
        assert_eq!(f.text.as_deref(), Some("Bonjour"));
        assert_eq!(f.markdown.as_deref(), Some("Bonjour"));
        let html = make(PAGE, "https://example.com/", &[Format::Html], false);
        assert_eq!(html, Formatted::default());
    }

    #[test]
    fn a_page_over_the_parse_bounds_has_no_text_and_says_why() {
        let huge = "<p>".repeat(Bounds::default().max_nodes + 1);
        let f = make(
            &huge,
            "https://example.com/",
            &[Format::Text, Format::Metadata],
            false,
        );
        assert_eq!(f.text, None);
        assert!(
            f.error.as_deref().is_some_and(|e| e.contains("elements")),
            "{f:?}"
        );
        assert!(f.metadata.is_some(), "the scan still reads it");
    }

    #[test]
    fn requests_name_each_format_once() {
        assert!(check(&[Format::Html, Format::Text]).is_ok());
        assert!(check(&[]).expect_err("empty").contains("empty"));
        assert!(check(&[Format::Text, Format::Text])
            .expect_err("twice")
            .contains("twice"));
    }
}
