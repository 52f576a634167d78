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

/// What a parsel query (`response.css` in the SDKs, and the shell)
/// picks from each element it matches: its outer HTML, `::text` its own
/// text nodes, `::attr(name)` that attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pick {
    Html,
    Text,
    Attr(String),
}

/// A parsel query split into its CSS and what it picks:
/// `"h2 a::attr(href)"` is `("h2 a", Pick::Attr("href"))`.
pub fn split_query(query: &str) -> (&str, Pick) {
    let q = query.trim_end();
    if let Some(css) = q.strip_suffix("::text") {
        return (css, Pick::Text);
    }
    if let Some((css, rest)) = q.rsplit_once("::attr(") {
        if let Some(name) = rest.strip_suffix(')') {
            return (css, Pick::Attr(name.trim().to_string()));
        }
    }
    (q, Pick::Html)
}

impl Element {
    /// The strings `pick` takes from this element.
    pub fn picked(self, pick: &Pick) -> Vec<String> {
        match pick {
            Pick::Html => vec![self.html],
            Pick::Text => self.texts,
            Pick::Attr(name) => self
                .attrs
                .into_iter()
                .filter(|(k, _)| k == name)
                .map(|(_, v)| v)
                .collect(),
        }
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

/// What one match hands back, each string cut to `max_field` and all of
/// them together to what is `left` of the selection's bytes. Nothing is
/// built past its cap: text is gathered a node at a time and the outer
/// HTML serialized into a writer that stops at its cap, so an element
/// holding most of a 10 MiB page costs its cap, not the page.
fn element(e: ElementRef<'_>, max_field: usize, left: &mut usize) -> Element {
    let mut truncated = false;
    let mut take = |pieces: &mut dyn Iterator<Item = &str>| {
        let cap = max_field.min(*left);
        let mut out = String::new();
        for piece in pieces {
            if out.len() + piece.len() > cap {
                out.push_str(&piece[..piece.floor_char_boundary(cap - out.len())]);
                truncated = true;
                break;
            }
            out.push_str(piece);
        }
        *left -= out.len();
        out
    };
    let text = take(&mut e.text());
    let texts = e
        .children()
        .filter_map(|c| {
            c.value()
                .as_text()
                .map(|t| take(&mut std::iter::once(&**t)))
        })
        .collect();
    let attrs = e
        .value()
        .attrs()
        .map(|(k, v)| (k.to_string(), take(&mut std::iter::once(v))))
        .collect();
    let cap = max_field.min(*left);
    let (html, cut) = outer_html(e, cap);
    *left -= html.len();
    Element {
        tag: e.value().name().to_string(),
        text,
        texts,
        attrs,
        html,
        truncated: truncated || cut,
    }
}

/// `e`'s outer HTML, at most `cap` bytes (cut at a character boundary),
/// and whether it was cut.
fn outer_html(e: ElementRef<'_>, cap: usize) -> (String, bool) {
    use html5ever::serialize::{serialize, SerializeOpts, TraversalScope};
    let mut w = Capped {
        buf: Vec::new(),
        cap,
        full: false,
    };
    let opts = SerializeOpts {
        traversal_scope: TraversalScope::IncludeNode,
        ..SerializeOpts::default()
    };
    // An error is the writer full: what it holds is the cut HTML.
    let _ = serialize(&mut w, &e, opts);
    let mut bytes = w.buf;
    if let Err(bad) = std::str::from_utf8(&bytes) {
        bytes.truncate(bad.valid_up_to());
    }
    (String::from_utf8(bytes).unwrap_or_default(), w.full)
}

/// A writer that takes `cap` bytes, then fails, so a serializer stops.
struct Capped {
    buf: Vec<u8>,
    cap: usize,
    full: bool,
}

impl std::io::Write for Capped {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let room = self.cap - self.buf.len();
        if b.len() > room {
            self.buf.extend_from_slice(&b[..room]);
            self.full = true;
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
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

    /// An element holding most of the page costs its caps: text,
    /// attributes and outer HTML are cut as they are gathered, and the
    /// selection stops handing bytes back at its total.
    #[test]
    fn big_elements_cost_their_caps_not_their_size() {
        let big = "\u{e9}".repeat(3 << 20);
        let page = format!("<div title=\"{big}\"><div><p>{big}</p></div></div>");
        let bounds = Bounds {
            max_field: 1001,
            max_total: 2500,
            ..Bounds::default()
        };
        let els = doc(&page).select("div", &bounds).expect("a valid selector");
        assert_eq!(els.len(), 2);
        let bytes = |e: &Element| {
            e.text.len()
                + e.html.len()
                + e.texts.iter().map(String::len).sum::<usize>()
                + e.attrs.iter().map(|(_, v)| v.len()).sum::<usize>()
        };
        assert!(els.iter().map(bytes).sum::<usize>() <= 2500);
        assert!(els[0].truncated);
        assert_eq!(els[0].text.len(), 1000, "cut at a character boundary");
        assert_eq!(els[0].attrs[0].1.len(), 1000);
        assert!(
            els[0].html.starts_with("<div title=\""),
            "{}",
            &els[0].html[..20]
        );
        assert_eq!(els[1].text, "", "nothing left for the second");
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
