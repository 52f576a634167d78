//! A page as Markdown (the `markdown` format, GitHub's dialect): headings,
//! paragraphs with emphasis, code and links (made absolute), images,
//! nested lists, tables, block quotes, code blocks. Written from the page
//! parsed as for selectors ([`Document`]), so the parse bounds hold: the
//! recursion below is at most the page's nesting, which the parse capped
//! ([`super::Bounds::max_depth`]). The output stops at [`MAX_TEXT`].
//! Why here and not in a plugin or a crate: ADR 0012.

use super::select::Document;
use super::text::{is_unseen, main_part, MAX_TEXT};
use ego_tree::NodeRef;
use scraper::node::{Element, Node};
use url::Url;

impl Document {
    /// The page as Markdown; with `main_content`, its main part only.
    /// Links and images are resolved against `base`.
    pub fn markdown(&self, main_content: bool, base: Option<&Url>) -> String {
        let root = self.html.tree.root();
        let start = if main_content {
            main_part(root).unwrap_or(root)
        } else {
            root
        };
        let mut w = Writer {
            main_content,
            base,
            left: MAX_TEXT,
        };
        let mut out = w.blocks(start);
        out.truncate(out.floor_char_boundary(MAX_TEXT));
        out
    }
}

struct Writer<'b> {
    main_content: bool,
    base: Option<&'b Url>,
    /// Bytes of text still to write: past them, the rest is left out.
    left: usize,
}

type Ref<'a> = NodeRef<'a, Node>;

impl Writer<'_> {
    /// The node's children as blocks, a blank line between two.
    fn blocks(&mut self, node: Ref<'_>) -> String {
        self.blocks_joined(node, "\n\n")
    }

    /// The node's children as blocks, `between` two.
    fn blocks_joined(&mut self, node: Ref<'_>, between: &str) -> String {
        let mut out: Vec<String> = Vec::new();
        let mut inline = String::new();
        let flush = |inline: &mut String, out: &mut Vec<String>| {
            let p = inline.trim();
            if !p.is_empty() {
                out.push(p.to_string());
            }
            inline.clear();
        };
        for child in node.children() {
            if self.skipped(child) {
                continue;
            }
            match self.block(child) {
                Some(b) => {
                    flush(&mut inline, &mut out);
                    if !b.trim().is_empty() {
                        out.push(b);
                    }
                }
                None => self.inline(child, &mut inline),
            }
        }
        flush(&mut inline, &mut out);
        out.join(between)
    }

    fn skipped(&self, node: Ref<'_>) -> bool {
        let Node::Element(e) = node.value() else {
            return matches!(
                node.value(),
                Node::Comment(_) | Node::ProcessingInstruction(_)
            );
        };
        is_unseen(e) || (self.main_content && super::text::is_chrome(e))
    }

    /// The node as a block, or `None` if it is inline content.
    fn block(&mut self, node: Ref<'_>) -> Option<String> {
        let e = match node.value() {
            Node::Element(e) => e,
            Node::Document | Node::Fragment => return Some(self.blocks(node)),
            _ => return None,
        };
        let name = e.name();
        Some(match name {
            "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => {
                let level = usize::from(name.as_bytes()[1] - b'0');
                format!("{} {}", "#".repeat(level), self.inline_of(node).trim())
            }
            "p" => self.inline_of(node).trim().to_string(),
            "ul" | "ol" => self.list(node, name == "ol"),
            "pre" => fence(&node_text(node)),
            "blockquote" => self
                .blocks(node)
                .lines()
                .map(|l| {
                    if l.is_empty() {
                        ">".into()
                    } else {
                        format!("> {l}")
                    }
                })
                .collect::<Vec<_>>()
                .join("\n"),
            "hr" => "---".into(),
            "table" => self.table(node),
            "html" | "body" | "div" | "section" | "article" | "main" | "header" | "footer"
            | "nav" | "aside" | "figure" | "figcaption" | "dl" | "dt" | "dd" | "details"
            | "summary" | "address" | "form" | "fieldset" | "li" | "center" => self.blocks(node),
            _ => return None,
        })
    }

    /// Inline content of `node` (its children), as one run of text.
    fn inline_of(&mut self, node: Ref<'_>) -> String {
        let mut out = String::new();
        for child in node.children() {
            if !self.skipped(child) {
                self.inline(child, &mut out);
            }
        }
        out
    }

    fn inline(&mut self, node: Ref<'_>, out: &mut String) {
        let e = match node.value() {
            Node::Text(t) => return self.words(t, out),
            Node::Element(e) => e,
            _ => return,
        };
        match e.name() {
            "strong" | "b" => wrap(&self.inline_of(node), "**", out),
            "em" | "i" => wrap(&self.inline_of(node), "*", out),
            "code" | "kbd" | "samp" => {
                let code = node_text(node);
                let tick = if code.contains('`') { "``" } else { "`" };
                out.push_str(&format!("{tick}{}{tick}", code.trim()));
            }
            "br" => out.push_str("  \n"),
            "a" => {
                let text = self.inline_of(node);
                match e.attr("href").and_then(|h| self.absolute(h)) {
                    Some(href) if !text.trim().is_empty() => {
                        out.push_str(&format!("[{}]({href})", text.trim()));
                    }
                    _ => out.push_str(&text),
                }
            }
            "img" => {
                if let Some(src) = e.attr("src").and_then(|s| self.absolute(s)) {
                    let alt = escape(e.attr("alt").unwrap_or_default());
                    out.push_str(&format!("![{alt}]({src})"));
                }
            }
            _ => {
                let inner = self.inline_of(node);
                out.push_str(&inner);
            }
        }
    }

    /// A text node's words, runs of white space as one space, escaped.
    fn words(&mut self, text: &str, out: &mut String) {
        if self.left == 0 {
            return;
        }
        if text.starts_with(char::is_whitespace) && !out.ends_with([' ', '\n']) {
            out.push(' ');
        }
        let mut words = text.split_whitespace().peekable();
        while let Some(w) = words.next() {
            self.left = self.left.saturating_sub(w.len() + 1);
            escape_into(w, out);
            if words.peek().is_some() {
                out.push(' ');
            }
        }
        if text.ends_with(char::is_whitespace) && !text.trim().is_empty() {
            out.push(' ');
        }
    }

    /// A list, items a line each; an item's further lines indented under
    /// its text.
    fn list(&mut self, node: Ref<'_>, ordered: bool) -> String {
        let start: usize = node
            .value()
            .as_element()
            .and_then(|e| e.attr("start"))
            .and_then(|s| s.parse().ok())
            .unwrap_or(1);
        let mut items = Vec::new();
        for li in node.children().filter(|c| is(c, "li")) {
            let marker = if ordered {
                format!("{}. ", start + items.len())
            } else {
                "- ".into()
            };
            // Tight, unless the item is made of paragraphs.
            let tight = !li.children().any(|c| is(&c, "p"));
            let body = self.blocks_joined(li, if tight { "\n" } else { "\n\n" });
            let pad = " ".repeat(marker.len());
            let mut lines = body.lines();
            let first = lines.next().unwrap_or_default();
            let mut item = format!("{marker}{first}");
            for l in lines {
                item.push('\n');
                if !l.is_empty() {
                    item.push_str(&pad);
                    item.push_str(l);
                }
            }
            items.push(item);
        }
        items.join("\n")
    }

    /// A table as GitHub writes one: its first row the header.
    fn table(&mut self, node: Ref<'_>) -> String {
        let mut rows: Vec<Vec<String>> = Vec::new();
        let sections = node
            .children()
            .filter(|c| is(c, "thead") || is(c, "tbody") || is(c, "tfoot"));
        let trs = node
            .children()
            .filter(|c| is(c, "tr"))
            .chain(sections.flat_map(|s| s.children().filter(|c| is(c, "tr"))));
        for tr in trs {
            let cells = tr
                .children()
                .filter(|c| is(c, "td") || is(c, "th"))
                .map(|c| {
                    let text = self.inline_of(c);
                    text.split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" ")
                        .replace('|', "\\|")
                })
                .collect();
            rows.push(cells);
        }
        let width = rows.iter().map(Vec::len).max().unwrap_or(0);
        if width == 0 {
            return String::new();
        }
        let line = |cells: &[String]| {
            let mut l = String::from("|");
            for i in 0..width {
                l.push(' ');
                l.push_str(cells.get(i).map_or("", String::as_str));
                l.push_str(" |");
            }
            l
        };
        let mut out = vec![line(&rows[0]), line(&vec!["---".to_string(); width])];
        out.extend(rows[1..].iter().map(|r| line(r)));
        out.join("\n")
    }

    /// `href` made absolute; `None` for script URLs and what cannot be.
    fn absolute(&self, href: &str) -> Option<String> {
        let href = href.trim();
        if href.is_empty() || href.to_ascii_lowercase().starts_with("javascript:") {
            return None;
        }
        let url = match self.base {
            Some(b) => b.join(href).ok()?,
            None => Url::parse(href).ok()?,
        };
        Some(url.to_string().replace(' ', "%20").replace(')', "%29"))
    }
}

fn is(node: &Ref<'_>, name: &str) -> bool {
    node.value()
        .as_element()
        .is_some_and(|e: &Element| e.name() == name)
}

/// All the text under `node`, as it is (for code).
fn node_text(node: Ref<'_>) -> String {
    node.descendants()
        .filter_map(|d| d.value().as_text().map(|t| t.to_string()))
        .collect()
}

/// A code block, fenced by more backticks than it holds in a row.
fn fence(code: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in code.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let ticks = "`".repeat(longest.max(2) + 1);
    format!("{ticks}\n{}\n{ticks}", code.trim_end_matches('\n'))
}

/// `inner` between `mark`s, the white space at its ends kept outside.
fn wrap(inner: &str, mark: &str, out: &mut String) {
    let text = inner.trim();
    if text.is_empty() {
        out.push_str(inner);
        return;
    }
    if inner.starts_with(char::is_whitespace) && !out.ends_with([' ', '\n']) {
        out.push(' ');
    }
    out.push_str(mark);
    out.push_str(text);
    out.push_str(mark);
    if inner.ends_with(char::is_whitespace) {
        out.push(' ');
    }
}

/// Markdown's inline marks escaped in text.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    escape_into(text, &mut out);
    out
}

fn escape_into(text: &str, out: &mut String) {
    let special = |b: u8| matches!(b, b'\\' | b'*' | b'_' | b'`' | b'[' | b']');
    if !text.bytes().any(special) {
        out.push_str(text);
        return;
    }
    for c in text.chars() {
        if c.is_ascii() && special(c as u8) {
            out.push('\\');
        }
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::super::select::Bounds;
    use super::*;

    fn md(html: &str, main: bool) -> String {
        let base = Url::parse("https://example.com/dir/page.html").expect("url");
        Document::parse(html, &Bounds::default())
            .expect("parses")
            .markdown(main, Some(&base))
    }

    #[test]
    fn blocks_and_inline_marks() {
        let html = r#"<h1>Title</h1><p>Some <b>bold</b> and <em>soft </em>words, <code>x_y</code>,
            a <a href="/a b">link</a>, 2*3_4.</p><hr><blockquote><p>Quoted</p><p>Twice</p></blockquote>
            <pre><code>fn main() {
    ```
}</code></pre><img src="i.png" alt="An [image]">"#;
        assert_eq!(
            md(html, false),
            "# Title\n\nSome **bold** and *soft* words, `x_y`, a [link](https://example.com/a%20b), 2\\*3\\_4.\n\n---\n\n> Quoted\n>\n> Twice\n\n````\nfn main() {\n    ```\n}\n````\n\n![An \\[image\\]](https://example.com/dir/i.png)"
        );
    }

    #[test]
    fn nested_lists_and_tables() {
        let html = "<ul><li>One<ul><li>Inner <i>a</i></li></ul></li><li><p>Two</p></li></ul>\
            <ol start=3><li>three</li><li>four</li></ol>\
            <table><thead><tr><th>K</th><th>V</th></tr></thead><tbody><tr><td>a|b</td></tr></tbody></table>";
        assert_eq!(
            md(html, false),
            "- One\n  - Inner *a*\n- Two\n\n3. three\n4. four\n\n| K | V |\n| --- | --- |\n| a\\|b |  |"
        );
    }

    #[test]
    fn main_content_leaves_the_chrome_out() {
        let html =
            "<nav><a href=/>Home</a></nav><main><h2>Story</h2><p>Text</p></main><footer>f</footer>";
        assert_eq!(md(html, true), "## Story\n\nText");
        assert!(md(html, false).starts_with("[Home](https://example.com/)"));
    }

    #[test]
    fn the_deepest_page_the_parse_allows_is_written_without_overflow() {
        let depth = Bounds::default().max_depth - 2;
        let html = "<div>".repeat(depth) + "deep" + &"</div>".repeat(depth);
        assert_eq!(md(&html, false), "deep");
        let lists = "<ul><li>".repeat(200) + "x" + &"</li></ul>".repeat(200);
        assert!(md(&lists, false).trim_start().ends_with("- x"));
    }
}
