//! `render: auto`: does a plainly fetched page look built by its scripts?
//!
//! The rule: it has at least one `<script>` and its visible text (outside
//! tags, comments and `script`, `style`, `template`, `noscript` elements,
//! whitespace not counted) is under `render.auto_text` bytes. An app shell
//! (`<div id="root"></div>` plus a bundle) has next to none; a server-built
//! page, even a short one, has its text in the HTML.

/// Elements whose content is not visible text.
const HIDDEN: [&str; 4] = ["script", "style", "template", "noscript"];

/// Whether `html` looks script-built (see the module doc). Reads at most
/// the whole body once; stops as soon as the text reaches `max_text`.
pub fn looks_script_built(html: &[u8], max_text: usize) -> bool {
    let (mut i, mut text, mut scripts) = (0, 0usize, false);
    while i < html.len() {
        if html[i] != b'<' {
            if !html[i].is_ascii_whitespace() {
                text += 1;
                if text >= max_text {
                    return false;
                }
            }
            i += 1;
            continue;
        }
        let rest = &html[i..];
        if rest.starts_with(b"<!--") {
            i += find(rest, b"-->").map_or(rest.len(), |e| e + 3);
            continue;
        }
        let tag_end = find(rest, b">").map_or(rest.len(), |e| e + 1);
        let name = tag_name(&rest[1..tag_end.min(rest.len())]);
        i += tag_end;
        if let Some(hidden) = HIDDEN
            .iter()
            .find(|h| name.eq_ignore_ascii_case(h.as_bytes()))
        {
            scripts |= *hidden == "script";
            // Skip to the element's end tag (case-insensitive).
            let close = format!("</{hidden}");
            i += find_ci(&html[i..], close.as_bytes()).unwrap_or(html.len() - i);
        }
    }
    scripts
}

/// The name of a start tag from the text after `<` (empty for an end tag,
/// a doctype or a stray `<`).
fn tag_name(t: &[u8]) -> &[u8] {
    let end = t
        .iter()
        .position(|c| !c.is_ascii_alphanumeric())
        .unwrap_or(t.len());
    &t[..end]
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

fn find_ci(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::looks_script_built;

    #[test]
    fn an_app_shell_looks_script_built() {
        let shell = br#"<!doctype html><html><head><title>App</title>
            <style>body { margin: 0 }</style></head>
            <body><div id="root"></div><noscript>You need to enable JavaScript to run this app.</noscript>
            <script src="/bundle.js"></script><SCRIPT>window.x = "<p>not text</p>";</SCRIPT></body></html>"#;
        assert!(looks_script_built(shell, 200));
    }

    #[test]
    fn a_page_with_its_text_in_the_html_does_not() {
        let text = "A paragraph of server-built text. ".repeat(10);
        let page = format!("<html><body><p>{text}</p><script>track()</script></body></html>");
        assert!(!looks_script_built(page.as_bytes(), 200));
    }

    #[test]
    fn a_short_page_without_scripts_does_not() {
        assert!(!looks_script_built(
            b"<html><body><p>Hi</p></body></html>",
            200
        ));
    }

    #[test]
    fn comments_and_an_unclosed_script_are_bounded() {
        assert!(looks_script_built(
            b"<!-- lots of words here --><script>",
            5
        ));
        assert!(!looks_script_built(b"<p>words words</p><!-- unclosed", 5));
    }
}
