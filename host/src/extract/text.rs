//! A page's readable text (the `text` format): what a reader sees, block
//! elements on lines of their own, without scripts, styles and hidden
//! parts; with `main_content`, without the page's navigation and
//! boilerplate either. Read from the page parsed as for selectors
//! ([`Document`], bounded in elements and nesting), walked without
//! recursion, and cut at [`MAX_TEXT`].

use super::select::Document;
use ego_tree::NodeRef;
use scraper::node::{Element, Node};

/// Bytes of text one page gives at most (cut at a character boundary).
pub const MAX_TEXT: usize = 2 << 20;

/// Elements whose content is never text a reader sees.
const UNSEEN: &[&str] = &[
    "head", "script", "style", "noscript", "template", "svg", "iframe", "object", "canvas",
];

/// Elements that are a page's chrome, not its content (`main_content`).
const CHROME: &[&str] = &["nav", "header", "footer", "aside", "form", "dialog", "menu"];

/// ARIA roles of the same.
const CHROME_ROLES: &[&str] = &[
    "navigation",
    "banner",
    "contentinfo",
    "complementary",
    "search",
    "menu",
    "menubar",
    "dialog",
];

/// Elements that start a line of their own.
const BLOCKS: &[&str] = &[
    "p",
    "div",
    "section",
    "article",
    "main",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "li",
    "ul",
    "ol",
    "dl",
    "dt",
    "dd",
    "tr",
    "table",
    "thead",
    "tbody",
    "blockquote",
    "pre",
    "figure",
    "figcaption",
    "br",
    "hr",
    "address",
    "details",
    "summary",
    "header",
    "footer",
    "nav",
    "aside",
    "body",
];

impl Document {
    /// The page's text; with `main_content`, of its main part only.
    pub fn text(&self, main_content: bool) -> String {
        let root = self.html.tree.root();
        let start = if main_content {
            main_part(root).unwrap_or(root)
        } else {
            root
        };
        let mut out = Lines::default();
        // (node, entering): a block is closed on the way out.
        let mut stack = vec![(start, true)];
        while let Some((node, entering)) = stack.pop() {
            if out.full() {
                break;
            }
            match node.value() {
                Node::Text(t) if entering => out.words(t),
                Node::Element(e) => {
                    let name = e.name();
                    if !entering {
                        if BLOCKS.contains(&name) {
                            out.end_line();
                        }
                        continue;
                    }
                    if is_unseen(e) || (main_content && is_chrome(e)) {
                        continue;
                    }
                    if BLOCKS.contains(&name) {
                        out.end_line();
                    }
                    stack.push((node, false));
                    stack.extend(node.children().rev().map(|c| (c, true)));
                }
                Node::Document | Node::Fragment if entering => {
                    stack.extend(node.children().rev().map(|c| (c, true)));
                }
                _ => {}
            }
        }
        out.finish()
    }
}

/// An element a reader does not see: scripts, styles, hidden parts.
pub(super) fn is_unseen(e: &Element) -> bool {
    UNSEEN.contains(&e.name())
        || e.attr("hidden").is_some()
        || e.attr("aria-hidden") == Some("true")
}

/// An element of the page's chrome (left out with `main_content`).
pub(super) fn is_chrome(e: &Element) -> bool {
    CHROME.contains(&e.name()) || e.attr("role").is_some_and(|r| CHROME_ROLES.contains(&r))
}

/// The page's main part: its `<main>` (or `role=main`), else its only
/// `<article>`, else its body (the caller's root).
pub(super) fn main_part(root: NodeRef<'_, Node>) -> Option<NodeRef<'_, Node>> {
    let mut articles = Vec::new();
    for node in root.descendants() {
        let Node::Element(e) = node.value() else {
            continue;
        };
        if e.name() == "main" || e.attr("role") == Some("main") {
            return Some(node);
        }
        if e.name() == "article" {
            articles.push(node);
        }
    }
    (articles.len() == 1).then(|| articles[0])
}

/// Text gathered line by line: runs of white space become one space,
/// blank lines are dropped.
#[derive(Default)]
struct Lines {
    out: String,
    /// A space is due before the next word on this line.
    space: bool,
}

impl Lines {
    fn full(&self) -> bool {
        self.out.len() >= MAX_TEXT
    }

    fn words(&mut self, text: &str) {
        if text.starts_with(char::is_whitespace) {
            self.space = true;
        }
        let mut words = text.split_whitespace().peekable();
        while let Some(word) = words.next() {
            if self.space && !self.out.is_empty() && !self.out.ends_with('\n') {
                self.out.push(' ');
            }
            self.out.push_str(word);
            self.space = words.peek().is_some();
        }
        if text.ends_with(char::is_whitespace) {
            self.space = true;
        }
    }

    fn end_line(&mut self) {
        if !self.out.is_empty() && !self.out.ends_with('\n') {
            self.out.push('\n');
        }
        self.space = false;
    }

    fn finish(mut self) -> String {
        self.out.truncate(self.out.floor_char_boundary(MAX_TEXT));
        let trimmed = self.out.trim_end().len();
        self.out.truncate(trimmed);
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::super::select::Bounds;
    use super::*;

    const PAGE: &str = r#"<html><head><title>T</title><style>p{}</style></head><body>
<header><a href="/">Home</a> | <a href="/about">About</a></header>
<nav><ul><li>One</li><li>Two</li></ul></nav>
<main><h1>The  title</h1><p>First <b>bold</b> words,
and more.</p><script>var x = 1;</script><p hidden>secret</p>
<ul><li>a</li><li>b <i>c</i></li></ul></main>
<footer>© us</footer></body></html>"#;

    fn doc(text: &str) -> Document {
        Document::parse(text, &Bounds::default()).expect("parses")
    }

    #[test]
    fn text_keeps_what_a_reader_sees_a_block_a_line() {
        assert_eq!(
            doc(PAGE).text(false),
            "Home | About\nOne\nTwo\nThe title\nFirst bold words, and more.\na\nb c\n© us"
        );
    }

    #[test]
    fn main_content_drops_the_chrome() {
        assert_eq!(
            doc(PAGE).text(true),
            "The title\nFirst bold words, and more.\na\nb c"
        );
        let no_main = "<body><nav>menu</nav><div role=navigation>more</div><p>Body</p><aside>ads</aside></body>";
        assert_eq!(doc(no_main).text(true), "Body");
        let article = "<body><nav>menu</nav><article><p>Story</p></article><p>other</p></body>";
        assert_eq!(doc(article).text(true), "Story");
    }

    #[test]
    fn deep_pages_are_walked_without_recursion() {
        let deep = "<div>".repeat(400) + "deep" + &"</div>".repeat(400);
        assert_eq!(doc(&deep).text(false), "deep");
    }
}
