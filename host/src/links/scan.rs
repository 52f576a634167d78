//! A streaming scan for `<a>`, `<area>` and `<base>` tags. It skips comments,
//! `<script>` and `<style>` bodies, and never builds a tree: one pass over
//! the bytes with `memchr`, which keeps a 20 KB page in the tens of µs.

use memchr::{memchr, memmem};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawLink {
    pub href: String,
    pub text: String,
}

/// Link text is cut to this many bytes (at a character boundary).
pub const MAX_TEXT_BYTES: usize = 1024;

#[derive(Debug, Default)]
pub struct Scan {
    pub base: Option<String>,
    pub links: Vec<RawLink>,
    /// The scan stopped at `max` links with more of the page unread.
    pub truncated: bool,
}

/// Scan `html` for at most `max` links.
pub fn scan(html: &[u8], max: usize) -> Scan {
    let mut out = Scan::default();
    let mut tags = Tags::new(html);
    while let Some(tag) = tags.next() {
        let name = tag.name;
        if tag.end {
            continue;
        }
        if name.eq_ignore_ascii_case(b"a") || name.eq_ignore_ascii_case(b"area") {
            let Some(href) = attr(tag.attrs, b"href") else {
                continue;
            };
            if out.links.len() == max {
                out.truncated = true;
                break;
            }
            let text = if name.len() == 1 {
                link_text(html, &mut tags.pos)
            } else {
                String::new()
            };
            out.links.push(RawLink { href, text });
        } else if name.eq_ignore_ascii_case(b"base") {
            if out.base.is_none() {
                out.base = attr(tag.attrs, b"href");
            }
        } else if name.eq_ignore_ascii_case(b"script") {
            tags.skip_to(b"</script");
        } else if name.eq_ignore_ascii_case(b"style") {
            tags.skip_to(b"</style");
        }
    }
    out
}

/// One tag as the streaming scans read it.
pub(crate) struct Tag<'a> {
    /// As written (compare without case).
    pub name: &'a [u8],
    /// `</name>`.
    pub end: bool,
    /// The text between the name and the `>`.
    pub attrs: &'a [u8],
}

/// A page's tags in order, comments passed over, no tree built: the one
/// tag reader of the link scan, the metadata scan and the nesting
/// estimate. `pos` is where the next tag is looked for; a scan moves it
/// past text it reads or skips.
pub(crate) struct Tags<'a> {
    html: &'a [u8],
    pub pos: usize,
}

impl<'a> Tags<'a> {
    pub fn new(html: &'a [u8]) -> Self {
        Tags { html, pos: 0 }
    }

    /// Past raw text (a script's, a style's) to its end tag `close`
    /// (`</script`, without case), which is read next.
    pub fn skip_to(&mut self, close: &[u8]) {
        self.pos = find_ci(self.html, self.pos, close).unwrap_or(self.html.len());
    }
}

impl<'a> Iterator for Tags<'a> {
    type Item = Tag<'a>;

    fn next(&mut self) -> Option<Tag<'a>> {
        let html = self.html;
        loop {
            let start = self.pos + memchr(b'<', &html[self.pos..])? + 1;
            let rest = &html[start..];
            if rest.starts_with(b"!--") {
                self.pos = start + 3 + memmem::find(&rest[3..], b"-->")? + 3;
                continue;
            }
            let end = rest.first() == Some(&b'/');
            let at = usize::from(end);
            let len = rest[at..]
                .iter()
                .take_while(|b| b.is_ascii_alphanumeric())
                .count();
            if len == 0 {
                // Text, as a parser reads it (`a < b`, `<!doctype`): the
                // next tag may start right after.
                self.pos = start;
                continue;
            }
            let close = memchr(b'>', rest)?;
            self.pos = start + close + 1;
            return Some(Tag {
                name: &rest[at..at + len],
                end,
                attrs: &rest[at + len..close],
            });
        }
    }
}

/// Text of an `<a>` up to its `</a>`, tags stripped, whitespace collapsed,
/// common entities decoded. Advances `pos` past the text.
fn link_text(html: &[u8], pos: &mut usize) -> String {
    let end = find_ci(html, *pos, b"</a").unwrap_or(html.len());
    // A few bytes over, so the cut below lands on a whole character.
    let text = text_between(&html[*pos..end], MAX_TEXT_BYTES + 8);
    *pos = end;
    let mut text = decode_entities(&text);
    text.truncate(text.floor_char_boundary(MAX_TEXT_BYTES));
    text
}

/// The text in `inner`, tags stripped and whitespace collapsed, up to
/// about `max` bytes (entities left as they are).
pub(crate) fn text_between(inner: &[u8], max: usize) -> String {
    let mut text = Vec::with_capacity(inner.len().min(64));
    let mut in_tag = false;
    let mut space = false;
    for &b in inner {
        if text.len() > max {
            break;
        }
        match b {
            b'<' => in_tag = true,
            b'>' if in_tag => in_tag = false,
            _ if in_tag => {}
            b' ' | b'\n' | b'\t' | b'\r' => space = !text.is_empty(),
            _ => {
                if space {
                    text.push(b' ');
                    space = false;
                }
                text.push(b);
            }
        }
    }
    String::from_utf8_lossy(&text).into_owned()
}

/// The value of attribute `name` in a tag's attribute text.
pub(crate) fn attr(attrs: &[u8], name: &[u8]) -> Option<String> {
    let mut i = 0;
    while i < attrs.len() {
        while i < attrs.len() && (attrs[i].is_ascii_whitespace() || attrs[i] == b'/') {
            i += 1;
        }
        let key_start = i;
        while i < attrs.len()
            && !matches!(attrs[i], b'=' | b'>' | b' ' | b'\t' | b'\n' | b'\r' | b'/')
        {
            i += 1;
        }
        let key = &attrs[key_start..i];
        while i < attrs.len() && attrs[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= attrs.len() || attrs[i] != b'=' {
            if key.is_empty() {
                i += 1;
            }
            continue;
        }
        i += 1;
        while i < attrs.len() && attrs[i].is_ascii_whitespace() {
            i += 1;
        }
        let value = match attrs.get(i) {
            Some(&q @ (b'"' | b'\'')) => {
                let end = memchr(q, &attrs[i + 1..]).map_or(attrs.len(), |e| i + 1 + e);
                let v = &attrs[i + 1..end];
                i = end + 1;
                v
            }
            _ => {
                let s = i;
                while i < attrs.len() && !attrs[i].is_ascii_whitespace() {
                    i += 1;
                }
                &attrs[s..i]
            }
        };
        if key.eq_ignore_ascii_case(name) {
            let value = String::from_utf8_lossy(value);
            return Some(if value.contains('&') {
                decode_entities(&value)
            } else {
                value.into_owned()
            });
        }
    }
    None
}

/// Case-insensitive search for an ASCII needle from `from`.
pub(crate) fn find_ci(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    let first = needle[0];
    let mut pos = from;
    while let Some(off) = memchr(first, &hay[pos..]) {
        let at = pos + off;
        if hay.len() - at >= needle.len() && hay[at..at + needle.len()].eq_ignore_ascii_case(needle)
        {
            return Some(at);
        }
        pos = at + 1;
    }
    None
}

/// HTML's (and XML's) character references undone.
pub(crate) fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        // Bytes, not a str slice: byte 10 may fall inside a character.
        let semi = rest.as_bytes()[..rest.len().min(10)]
            .iter()
            .position(|&b| b == b';');
        let decoded = semi.and_then(|end| {
            let ent = &rest[1..end];
            let ch = match ent {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "nbsp" => Some(' '),
                _ => ent
                    .strip_prefix("#x")
                    .or_else(|| ent.strip_prefix("#X"))
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .or_else(|| ent.strip_prefix('#').and_then(|d| d.parse().ok()))
                    .and_then(char::from_u32),
            };
            ch.map(|c| (c, end + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(html: &[u8]) -> Scan {
        scan(html, usize::MAX)
    }

    #[test]
    fn link_text_is_capped_on_a_character_boundary() {
        let page = format!("<a href=x>{}</a>", "é".repeat(5000));
        let s = scan_all(page.as_bytes());
        assert!(s.links[0].text.len() <= MAX_TEXT_BYTES);
        assert!(s.links[0].text.len() >= MAX_TEXT_BYTES - 1);
    }

    #[test]
    fn an_entity_cut_inside_a_character_does_not_panic() {
        let s = scan_all("<a href=\"/x?a&aaaaaaaaé\">&aaaaaaaaé &#x41;</a>".as_bytes());
        assert_eq!(s.links.len(), 1);
        assert_eq!(s.links[0].href, "/x?a&aaaaaaaaé");
        assert_eq!(s.links[0].text, "&aaaaaaaaé A");
    }

    /// Thousands of pages made of the pieces scanners trip on (tags cut
    /// short, entities, multi-byte characters, stray bytes): none panics.
    #[test]
    fn arbitrary_pages_never_panic() {
        let pieces: [&[u8]; 16] = [
            b"<a href=",
            b"\"",
            b"'",
            b">",
            b"</a>",
            b"&",
            b";",
            b"&#x",
            b"&amp",
            "é".as_bytes(),
            "日本".as_bytes(),
            b"\xff\xfe",
            b"<!--",
            b"-->",
            b"<base href=",
            b" ",
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let len = (next() % 40) as usize;
            let mut page = Vec::new();
            for _ in 0..len {
                page.extend_from_slice(pieces[(next() % pieces.len() as u64) as usize]);
            }
            let _ = scan_all(&page);
            let _ = decode_entities(&String::from_utf8_lossy(&page));
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 3000,
            ..proptest::prelude::ProptestConfig::default()
        })]

        /// The entity decoder on any text: no panic, never longer.
        #[test]
        fn any_text_decodes(text in "(&|#|x|;|[0-9a-f]|\\PC){0,64}") {
            proptest::prop_assert!(decode_entities(&text).len() <= text.len());
        }
    }

    #[test]
    fn finds_hrefs_in_every_quoting_style() {
        let s =
            scan_all(br#"<a href="x">1</a><a class=k href='y'>2</a><a href=z data-x="1">3</a>"#);
        let hrefs: Vec<_> = s.links.iter().map(|l| l.href.as_str()).collect();
        assert_eq!(hrefs, ["x", "y", "z"]);
    }

    #[test]
    fn skips_comments_scripts_and_styles() {
        let html = br#"<!-- <a href="c">c</a> --><script>var s = '<a href="s">';</script>
            <style>a[href="t"]{}</style><a href="ok">ok</a>"#;
        let s = scan_all(html);
        assert_eq!(s.links.len(), 1);
        assert_eq!(s.links[0].href, "ok");
    }

    #[test]
    fn text_strips_tags_collapses_space_and_decodes() {
        let s = scan_all(b"<a href=\"/q?a=1&amp;b=2\">  Fish <b>&amp;</b>\n chips </a>");
        assert_eq!(s.links[0].href, "/q?a=1&b=2");
        assert_eq!(s.links[0].text, "Fish & chips");
    }

    #[test]
    fn ignores_tags_that_only_start_with_a() {
        let s = scan_all(br#"<abbr href="no">x</abbr><aside><a href="yes">y</a></aside>"#);
        assert_eq!(s.links.len(), 1);
        assert_eq!(s.links[0].href, "yes");
    }
}
