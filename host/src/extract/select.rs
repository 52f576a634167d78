//! CSS selectors over a page, for spiders (`response.select`, WIT 0.1.1):
//! the page parsed natively (html5ever, as browsers parse) once per call
//! that asks, and only when one asks. Every cost is bounded before it is
//! paid: the page's size is the crawl's body cap; the nodes are counted
//! from its `<`s before parsing; the depth is checked before matching
//! (a descendant selector walks a node's ancestors); the selector's
//! length, the matches and the bytes handed back are capped.

use scraper::{ElementRef, Html, Selector};
use thiserror::Error;

/// What one selection may cost and hand back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounds {
    /// Elements in the page (counted as `<`s before parsing).
    pub max_nodes: usize,
    /// Elements nested in one another.
    pub max_depth: usize,
    /// Bytes of a selector.
    pub max_selector: usize,
    /// Elements one selection returns.
    pub max_matches: usize,
    /// Bytes of one element's text, and of its outer HTML (cut at a
    /// character boundary, and said so).
    pub max_field: usize,
    /// Bytes of text and HTML one selection returns in all.
    pub max_total: usize,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            max_nodes: 200_000,
            max_depth: 512,
            max_selector: 1024,
            max_matches: 10_000,
            max_field: 64 * 1024,
            max_total: 8 << 20,
        }
    }
}

/// Why a selection gave nothing back.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum SelectError {
    #[error("invalid selector: {0}")]
    Selector(String),
    #[error("selector longer than {0} bytes")]
    SelectorTooLong(usize),
    #[error("page has more than {0} elements")]
    TooManyNodes(usize),
    #[error("page nests elements deeper than {0}")]
    TooDeep(usize),
}

/// One element that matched.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Element {
    pub tag: String,
    /// Its text and its descendants', as they appear.
    pub text: String,
    /// Its own text nodes, not its descendants'.
    pub texts: Vec<String>,
    pub attrs: Vec<(String, String)>,
    /// Its outer HTML.
    pub html: String,
    /// Whether `text` or `html` was cut at the field or total bound.
    pub truncated: bool,
}

/// A page parsed for selection.
pub struct Document {
    pub(super) html: Html,
}

impl Document {
    /// Parse `text` unless it has more elements or deeper nesting than
    /// `bounds` allow.
    pub fn parse(text: &str, bounds: &Bounds) -> Result<Document, SelectError> {
        // Every element starts with a `<`: a bound on the nodes before the
        // parser builds any.
        if memchr::memchr_iter(b'<', text.as_bytes()).count() > bounds.max_nodes {
            return Err(SelectError::TooManyNodes(bounds.max_nodes));
        }
        // The parser's cost grows with its stack of open elements (each tag
        // looks down it): a page nested too deep is refused before it is
        // parsed, by an estimate from its tags, and checked again after.
        if nesting(text.as_bytes()) > bounds.max_depth {
            return Err(SelectError::TooDeep(bounds.max_depth));
        }
        let html = Html::parse_document(text);
        if depth(&html) > bounds.max_depth {
            return Err(SelectError::TooDeep(bounds.max_depth));
        }
        Ok(Document { html })
    }

    /// The elements matching `css`, in document order, within `bounds`.
    pub fn select(&self, css: &str, bounds: &Bounds) -> Result<Vec<Element>, SelectError> {
        if css.len() > bounds.max_selector {
            return Err(SelectError::SelectorTooLong(bounds.max_selector));
        }
        let selector = Selector::parse(css).map_err(|e| SelectError::Selector(e.to_string()))?;
        let mut left = bounds.max_total;
        Ok(self
            .html
            .select(&selector)
            .take(bounds.max_matches)
            .map(|e| element(e, bounds.max_field, &mut left))
            .collect())
    }
}

/// Elements that never hold others (HTML's void elements), and those
/// whose end tag may be left out (a parser closes them at the next of
/// their kind): neither deepens the parser's stack.
const FLAT: &[&[u8]] = &[
    b"area",
    b"base",
    b"br",
    b"col",
    b"embed",
    b"hr",
    b"img",
    b"input",
    b"link",
    b"meta",
    b"param",
    b"source",
    b"track",
    b"wbr",
    b"p",
    b"li",
    b"dt",
    b"dd",
    b"tr",
    b"td",
    b"th",
    b"option",
    b"optgroup",
    b"thead",
    b"tbody",
    b"tfoot",
    b"colgroup",
    b"rb",
    b"rt",
    b"rp",
    b"html",
    b"head",
    b"body",
];

/// The deepest nesting the page's tags spell out: start tags minus end
/// tags, leaving out [`FLAT`] elements, self-closed tags, comments and
/// script and style text. One pass over the bytes, before any parse.
fn nesting(html: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut tags = crate::links::scan::Tags::new(html);
    while let Some(tag) = tags.next() {
        let name = tag.name.to_ascii_lowercase();
        if FLAT.contains(&name.as_slice()) || tag.attrs.ends_with(b"/") {
            continue;
        }
        if tag.end {
            depth = depth.saturating_sub(1);
        } else if RAW.contains(&name.as_slice()) {
            // Its text is not markup; its end tag is passed over with it.
            tags.skip_to(&[b"</".as_slice(), &name].concat());
            tags.next();
        } else {
            depth += 1;
            deepest = deepest.max(depth);
        }
    }
    deepest
}

/// Elements whose text is not markup.
const RAW: &[&[u8]] = &[b"script", b"style", b"textarea", b"title"];

/// The deepest nesting of elements, walked without recursion.
fn depth(html: &Html) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(html.tree.root(), 0usize)];
    while let Some((node, d)) = stack.pop() {
        deepest = deepest.max(d);
        let d = d + usize::from(node.value().is_element());
        stack.extend(node.children().map(|c| (c, d)));
    }
    deepest
}

fn element(e: ElementRef<'_>, max_field: usize, left: &mut usize) -> Element {
    let mut truncated = false;
    let mut take = |s: String| {
        let cap = max_field.min(*left);
        let s = if s.len() > cap {
            truncated = true;
            cut(s, cap)
        } else {
            s
        };
        *left -= s.len();
        s
    };
    let text = take(e.text().collect());
    let texts = e
        .children()
        .filter_map(|c| c.value().as_text().map(|t| take(t.to_string())))
        .collect();
    let html = take(e.html());
    Element {
        tag: e.value().name().to_string(),
        text,
        texts,
        attrs: e
            .value()
            .attrs()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        html,
        truncated,
    }
}

/// `s` cut to at most `max` bytes at a character boundary.
fn cut(mut s: String, max: usize) -> String {
    s.truncate(s.floor_char_boundary(max));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"<html><head><title>Silk &amp; thread</title></head><body>
        <ul id="items"><li class="item" data-id="1"><a href="/a">First</a> <b>one</b></li>
        <li class="item" data-id="2"><a href="/b">Second</a></li></ul></body></html>"#;

    fn doc(text: &str) -> Document {
        Document::parse(text, &Bounds::default()).expect("a small page parses")
    }

    #[test]
    fn elements_come_back_with_tag_text_attributes_and_html() {
        let items = doc(PAGE)
            .select("li.item", &Bounds::default())
            .expect("a valid selector");
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].tag, "li");
        assert_eq!(items[0].text, "First one");
        assert_eq!(items[0].texts, [" "], "its own text: the space between");
        assert!(items[0].attrs.contains(&("data-id".into(), "1".into())));
        assert!(items[1]
            .html
            .starts_with("<li class=\"item\" data-id=\"2\">"));
        let title = doc(PAGE)
            .select("title", &Bounds::default())
            .expect("title");
        assert_eq!(title[0].text, "Silk & thread", "entities decoded");
        let none = doc(PAGE)
            .select("table td", &Bounds::default())
            .expect("valid");
        assert!(none.is_empty());
    }

    #[test]
    fn a_bad_or_long_selector_is_an_error_not_a_panic() {
        let d = doc(PAGE);
        let b = Bounds::default();
        assert!(matches!(d.select("li[", &b), Err(SelectError::Selector(_))));
        let long = "li ".repeat(1000);
        assert_eq!(d.select(&long, &b), Err(SelectError::SelectorTooLong(1024)));
    }

    #[test]
    fn hostile_pages_are_refused_before_they_cost() {
        let b = Bounds {
            max_nodes: 1000,
            max_depth: 100,
            ..Bounds::default()
        };
        let many = "<p>x</p>".repeat(2000);
        assert_eq!(
            Document::parse(&many, &b).err(),
            Some(SelectError::TooManyNodes(1000))
        );
        let deep = format!("{}x{}", "<div>".repeat(500), "</div>".repeat(500));
        assert_eq!(
            Document::parse(&deep, &b).err(),
            Some(SelectError::TooDeep(100))
        );
        let ok = format!("{}x{}", "<div>".repeat(50), "</div>".repeat(50));
        assert!(Document::parse(&ok, &b).is_ok());
    }

    /// Deep nesting is refused before the parse (whose cost grows with
    /// it: 100,000 nested elements take html5ever half a minute), and no
    /// script, comment or self-closed tag hides it.
    #[test]
    fn deep_nesting_is_estimated_from_the_tags() {
        assert_eq!(nesting(b"<div><span>x</span><br><img src=a></div>"), 2);
        assert_eq!(nesting(b"<ul><li>a<li>b<li>c</ul><p>1<p>2<p>3"), 1);
        assert_eq!(
            nesting(b"<div><!-- <div><div> --><script>'<div>'</script></div>"),
            1
        );
        assert_eq!(
            nesting(b"< <div>a < b <div><!doctype x>"),
            2,
            "text `<`s hide no tag"
        );
        let hidden = "<div><script></script><style></style><title></title><x/>".repeat(1000);
        assert_eq!(nesting(hidden.as_bytes()), 1000);
        let deep = "<div>".repeat(100_000) + "deep";
        assert_eq!(
            Document::parse(&deep, &Bounds::default()).err(),
            Some(SelectError::TooDeep(512))
        );
    }

    #[test]
    fn matches_and_bytes_are_capped() {
        let page = format!("<ul>{}</ul>", "<li>ééééé</li>".repeat(100));
        let b = Bounds {
            max_matches: 10,
            max_field: 5,
            ..Bounds::default()
        };
        let got = doc(&page).select("li", &b).expect("valid");
        assert_eq!(got.len(), 10);
        assert_eq!(got[0].text, "éé", "cut at a character boundary");
        assert!(got[0].truncated);
        let b = Bounds {
            max_total: 30,
            ..Bounds::default()
        };
        let got = doc(&page).select("li", &b).expect("valid");
        let total: usize = got.iter().map(|e| e.text.len() + e.html.len()).sum();
        assert!(total <= 30, "{total} bytes handed back");
        assert!(got.last().is_some_and(|e| e.truncated));
    }
}
