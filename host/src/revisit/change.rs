//! Whether a page changed since the last run: its fingerprint now beside
//! the one kept. `exact` compares a 128-bit hash of the decoded body;
//! `fuzzy` compares a 64-bit SimHash of its visible text, so that what
//! changes on every visit without changing the page (dates, counters, a
//! token in a script, an attribute) does not count:
//!
//! - the text is what lies outside tags, `<script>` and `<style>`;
//! - every run of digits reads as one placeholder word, so `7 December
//!   2026, 1,234 views` and `8 December 2026, 1,301 views` are the same;
//! - words are taken four at a time (shingles) and each shingle's hash
//!   votes on the 64 bits;
//! - two pages are the same when at most [`FUZZY_BITS`] bits differ. A
//!   changed paragraph in a page of a thousand words moves about six.

use xxhash_rust::xxh3::{xxh3_128, xxh3_64};

/// Bits of two SimHashes that may differ for pages still the same.
pub const FUZZY_BITS: u32 = 3;
/// Words per shingle.
const SHINGLE: usize = 4;
/// Shingles read of a page, from its start (512 KiB of hashes): enough
/// to tell a change, and a 10 MiB page of one-letter words costs no more.
pub const MAX_SHINGLES: usize = 65_536;

/// How a crawl tells a changed page (`revisit.change`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeMode {
    #[default]
    Exact,
    Fuzzy,
}

/// What is kept of a page to compare the next fetch with: 16 bytes, and
/// 8 more in fuzzy mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    pub exact: u128,
    pub fuzzy: Option<u64>,
}

/// A page's change since the last run (result field `change`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// Not seen in an earlier run.
    New,
    Changed,
    Same,
    /// Seen in an earlier run, gone in this one.
    Removed,
}

impl Change {
    /// Its name in results and stats.
    pub fn name(self) -> &'static str {
        match self {
            Change::New => "new",
            Change::Changed => "changed",
            Change::Same => "same",
            Change::Removed => "removed",
        }
    }
}

impl Fingerprint {
    /// The fingerprint of a decoded body.
    pub fn of(body: &[u8], mode: ChangeMode) -> Fingerprint {
        Fingerprint {
            exact: xxh3_128(body),
            fuzzy: (mode == ChangeMode::Fuzzy).then(|| simhash(body)),
        }
    }

    /// This fetch's change, beside what was kept of the last (none: new).
    pub fn change_from(&self, before: Option<&Fingerprint>) -> Change {
        let Some(before) = before else {
            return Change::New;
        };
        if self.exact == before.exact {
            return Change::Same;
        }
        match (self.fuzzy, before.fuzzy) {
            (Some(a), Some(b)) if (a ^ b).count_ones() <= FUZZY_BITS => Change::Same,
            _ => Change::Changed,
        }
    }
}

/// The SimHash of the page's visible words, digits folded. Each distinct
/// shingle votes once: a menu or footer repeated down the page weighs no
/// more than a sentence.
fn simhash(body: &[u8]) -> u64 {
    let mut shingles = Vec::new();
    let mut window: [u64; SHINGLE] = [0; SHINGLE];
    let mut seen = 0usize;
    for word in Words::new(body).take(MAX_SHINGLES + SHINGLE - 1) {
        window.rotate_left(1);
        window[SHINGLE - 1] = word;
        seen += 1;
        if seen >= SHINGLE {
            shingles.push(shingle(&window));
        }
    }
    if (1..SHINGLE).contains(&seen) {
        // A page of fewer words than a shingle: its words as one.
        shingles.push(shingle(&window[SHINGLE - seen..]));
    }
    shingles.sort_unstable();
    shingles.dedup();
    let mut votes = [0i32; 64];
    for h in shingles {
        vote(&mut votes, h);
    }
    votes
        .iter()
        .enumerate()
        .fold(0u64, |h, (i, v)| if *v > 0 { h | 1 << i } else { h })
}

fn shingle(words: &[u64]) -> u64 {
    let mut bytes = [0u8; SHINGLE * 8];
    for (chunk, w) in bytes.chunks_mut(8).zip(words) {
        chunk.copy_from_slice(&w.to_le_bytes());
    }
    xxh3_64(&bytes[..words.len() * 8])
}

fn vote(votes: &mut [i32; 64], h: u64) {
    for (i, v) in votes.iter_mut().enumerate() {
        *v += if h >> i & 1 == 1 { 1 } else { -1 };
    }
}

/// The hashes of a page's visible words, lower-cased, each run of digits
/// one placeholder.
struct Words<'a> {
    html: &'a [u8],
    at: usize,
}

/// The hash every run of digits reads as.
const NUMBER: u64 = 0x9e37_79b9_7f4a_7c15;

impl<'a> Words<'a> {
    fn new(html: &'a [u8]) -> Words<'a> {
        Words { html, at: 0 }
    }

    /// Past the tag opening at `self.at` (and past the element's content
    /// when it is a script or a style).
    fn skip_tag(&mut self) {
        let rest = &self.html[self.at..];
        if rest.starts_with(b"<!--") {
            self.at += find_ignoring_case(rest, b"-->").map_or(rest.len(), |i| i + 3);
            return;
        }
        let end = memchr::memchr(b'>', rest).map_or(rest.len(), |i| i + 1);
        let name: Vec<u8> = rest[1..end.max(1)]
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric())
            .map(u8::to_ascii_lowercase)
            .collect();
        self.at += end;
        if name == b"script" || name == b"style" {
            let close: &[u8] = if name == b"script" {
                b"</script"
            } else {
                b"</style"
            };
            let rest = &self.html[self.at..];
            self.at += find_ignoring_case(rest, close).unwrap_or(rest.len());
        }
    }
}

impl Iterator for Words<'_> {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        loop {
            let c = *self.html.get(self.at)?;
            if c == b'<' {
                self.skip_tag();
                continue;
            }
            if c.is_ascii_digit() {
                while self
                    .html
                    .get(self.at)
                    .is_some_and(|c| c.is_ascii_digit() || matches!(c, b',' | b'.' | b':'))
                {
                    self.at += 1;
                }
                return Some(NUMBER);
            }
            if !(c.is_ascii_alphabetic() || c >= 0x80) {
                self.at += 1;
                continue;
            }
            let start = self.at;
            while self
                .html
                .get(self.at)
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c >= 0x80)
            {
                self.at += 1;
            }
            let word: Vec<u8> = self.html[start..self.at]
                .iter()
                .map(u8::to_ascii_lowercase)
                .collect();
            return Some(xxh3_64(&word));
        }
    }
}

fn find_ignoring_case(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A news-like page: a dated, counted header, a script with a token,
    /// and `paragraphs` of prose.
    fn page(date: &str, views: &str, token: &str, paragraphs: &[String]) -> Vec<u8> {
        let mut html = format!(
            "<html><head><title>Harbour works</title><script>var csrf = \"{token}\";</script>\
             <style>.x {{ color: red }}</style></head><body>\
             <p class=\"meta\" data-nonce=\"{token}\">Updated {date}, {views} views</p>"
        );
        for p in paragraphs {
            html.push_str(&format!("<p>{p}</p>\n"));
        }
        html.push_str("</body></html>");
        html.into_bytes()
    }

    /// Eight paragraphs of fifty words drawn from a vocabulary, the same
    /// every time.
    fn prose() -> Vec<String> {
        let vocabulary: Vec<&str> = "the harbour board met on tuesday to weigh a plan for new \
            quay along eastern shore where fishing boats moor in winter and ferry company \
            asked longer berth so that its larger ships could dock without waiting tide turn \
            council members said cost would fall partly on port users while residents raised \
            concerns about noise traffic during two years of construction engineers expect \
            dredging begin next spring if funding from regional government arrives time \
            opposition grew after survey found rare seagrass beds close proposed site"
            .split_whitespace()
            .collect();
        let mut x: u64 = 12345;
        (0..8)
            .map(|_| {
                (0..50)
                    .map(|_| {
                        x = x
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        vocabulary[(x >> 33) as usize % vocabulary.len()]
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    }

    #[test]
    fn a_date_counter_or_token_edit_is_the_same_page_when_fuzzy() {
        let before = page("7 December 2026, 10:31", "1,234", "a1b2c3", &prose());
        let after = page("8 December 2026, 11:02", "1,301", "z9y8x7", &prose());
        let (b, a) = (
            Fingerprint::of(&before, ChangeMode::Fuzzy),
            Fingerprint::of(&after, ChangeMode::Fuzzy),
        );
        assert_ne!(a.exact, b.exact);
        assert_eq!(a.change_from(Some(&b)), Change::Same);
        // Exact mode sees every byte.
        let (b, a) = (
            Fingerprint::of(&before, ChangeMode::Exact),
            Fingerprint::of(&after, ChangeMode::Exact),
        );
        assert_eq!(a.change_from(Some(&b)), Change::Changed);
        assert_eq!(b.change_from(Some(&b)), Change::Same);
        assert_eq!(b.change_from(None), Change::New);
    }

    #[test]
    fn a_changed_paragraph_is_a_changed_page() {
        let before = page("7 December 2026", "1,234", "t", &prose());
        let mut edited = prose();
        edited[5] = "councillors rejected the scheme outright citing the cost of dredging \
                      and the loss of the old slipway which the rowing club has used since \
                      its founding and which many residents regard as part of the town's \
                      character rather than a piece of infrastructure to be replaced"
            .into();
        let after = page("7 December 2026", "1,234", "t", &edited);
        let (b, a) = (
            Fingerprint::of(&before, ChangeMode::Fuzzy),
            Fingerprint::of(&after, ChangeMode::Fuzzy),
        );
        let moved = (a.fuzzy.unwrap_or(0) ^ b.fuzzy.unwrap_or(0)).count_ones();
        assert!(moved > FUZZY_BITS, "{moved} bits moved");
        assert_eq!(a.change_from(Some(&b)), Change::Changed);
    }

    #[test]
    fn only_the_first_shingles_of_a_huge_page_are_read() {
        let mut page: Vec<u8> = (0..MAX_SHINGLES + 10)
            .flat_map(|i| format!("w{i} ").into_bytes())
            .collect();
        let a = Fingerprint::of(&page, ChangeMode::Fuzzy);
        page.extend_from_slice(b"an ending of other words appended past the bound");
        let b = Fingerprint::of(&page, ChangeMode::Fuzzy);
        assert_eq!(a.fuzzy, b.fuzzy);
        assert_ne!(a.exact, b.exact);
    }

    #[test]
    fn words_skip_markup_scripts_and_styles() {
        let html =
            b"<p a='x'>Hello <b>World</b></p><SCRIPT>var x = 1;</script><style>p{}</STYLE>bye 2026";
        let words: Vec<u64> = Words::new(html).collect();
        let expect: Vec<u64> = ["hello", "world", "bye"]
            .iter()
            .map(|w| xxh3_64(w.as_bytes()))
            .chain([NUMBER])
            .collect();
        assert_eq!(words, expect);
        // Tiny pages still have a fingerprint of their words.
        let a = Fingerprint::of(b"<p>Hi</p>", ChangeMode::Fuzzy);
        let b = Fingerprint::of(b"<p>Bye</p>", ChangeMode::Fuzzy);
        assert_ne!(a.fuzzy, b.fuzzy);
    }
}
