//! What a revisited crawl keeps of each page between runs, and what one
//! fetch makes of it: its change since the last run, the validators for
//! the next conditional request, and the state to keep.
//!
//! A page's state is its URL and depth (a run re-reads every page the last
//! one knew, so a page answering 304 still leads to the pages under it),
//! the run that last fetched it and, with `adaptive`, its interval in
//! runs, its `ETag` and `Last-Modified` (each kept
//! only up to [`MAX_VALIDATOR`] bytes), and its fingerprint: 16 bytes, 8
//! more in fuzzy mode. [`PageState::bytes`] says what one costs.

use super::{Adaptive, Change, ChangeMode, Fingerprint};
use crate::fetch::Fetched;

/// A validator longer than this is not kept (the page is then fetched
/// whole each run): real ones are a quoted hash or an HTTP date.
pub const MAX_VALIDATOR: usize = 128;

/// What a crawl keeps of one page for its next run.
#[derive(Debug, Clone, PartialEq)]
pub struct PageState {
    pub url: String,
    pub depth: u32,
    /// The run that last fetched it.
    pub run: u32,
    /// Runs between its reads (`adaptive`; else 1).
    pub interval: f32,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub fingerprint: Fingerprint,
    /// It answered 404 or 410 last: reported `removed` once, and not read
    /// again unless a page links to it.
    pub gone: bool,
}

impl PageState {
    /// Request headers that make its next fetch conditional.
    pub fn validators(&self) -> Vec<(String, String)> {
        let mut h = Vec::new();
        if let Some(e) = &self.etag {
            h.push(("If-None-Match".to_string(), e.clone()));
        }
        if let Some(m) = &self.last_modified {
            h.push(("If-Modified-Since".to_string(), m.clone()));
        }
        h
    }

    /// Whether run `run` reads it: its interval has passed since the run
    /// that last did.
    pub fn due(&self, run: u32) -> bool {
        run >= self.run.saturating_add(self.interval.round() as u32)
    }

    /// Bytes this state takes, beyond its URL: the figure the docs quote
    /// (fixed fields, validators, fingerprint).
    pub fn bytes(&self) -> usize {
        let validators = self.etag.as_ref().map_or(0, String::len)
            + self.last_modified.as_ref().map_or(0, String::len);
        let interval = if self.interval == 1.0 { 0 } else { 4 };
        // depth, run (4 each), the flag, the fingerprint.
        4 + 4 + 1 + 16 + self.fingerprint.fuzzy.map_or(0, |_| 8) + validators + interval
    }
}

impl PageState {
    /// The key a shared store keeps it under: 16 bytes of its URL's hash.
    pub fn key(&self) -> [u8; 16] {
        xxhash_rust::xxh3::xxh3_128(self.url.as_bytes()).to_be_bytes()
    }

    /// As a shared store keeps it (and a queued request carries it): one
    /// line per field, the URL last (validators and URLs hold no line
    /// breaks: the fetcher refuses them); an interval other than 1 after
    /// the run (`7/2.8`).
    pub fn encode(&self) -> String {
        let f = &self.fingerprint;
        let run = match self.interval == 1.0 {
            true => self.run.to_string(),
            false => format!("{}/{}", self.run, self.interval),
        };
        format!(
            "{}\n{}\n{}\n{:032x}\n{}\n{}\n{}\n{}",
            run,
            self.depth,
            u8::from(self.gone),
            f.exact,
            f.fuzzy.map(|h| format!("{h:016x}")).unwrap_or_default(),
            self.etag.as_deref().unwrap_or_default(),
            self.last_modified.as_deref().unwrap_or_default(),
            self.url
        )
    }

    /// What [`PageState::encode`] wrote; `None` for anything else.
    pub fn decode(s: &str) -> Option<PageState> {
        let mut f = s.splitn(8, '\n');
        let mut next = || f.next();
        let some = |v: &str| (!v.is_empty()).then(|| v.to_string());
        let first = next()?;
        let (run, interval) = match first.split_once('/') {
            None => (first.parse().ok()?, 1.0),
            Some((r, i)) => (r.parse().ok()?, i.parse().ok()?),
        };
        let depth = next()?.parse().ok()?;
        let gone = next()? == "1";
        let exact = u128::from_str_radix(next()?, 16).ok()?;
        let fuzzy = match next()? {
            "" => None,
            h => Some(u64::from_str_radix(h, 16).ok()?),
        };
        let etag = some(next()?);
        let last_modified = some(next()?);
        let url = next()?.to_string();
        Some(PageState {
            url,
            depth,
            run,
            interval,
            etag,
            last_modified,
            fingerprint: Fingerprint { exact, fuzzy },
            gone,
        })
    }
}

/// One fetch of a page, beside what the last run kept of it: the page's
/// change and the state to keep for the next run.
pub fn observe(
    prior: Option<&PageState>,
    (url, depth, run): (&str, u32, u32),
    fetched: &Fetched,
    (mode, adaptive): (ChangeMode, Option<&Adaptive>),
) -> (Change, PageState) {
    let header = |name: &str| {
        fetched
            .header(name)
            .filter(|v| v.len() <= MAX_VALIDATOR)
            .map(str::to_string)
    };
    let keep = |fingerprint: Fingerprint, gone: bool| PageState {
        url: url.to_string(),
        depth: prior.map_or(depth, |p| p.depth.min(depth)),
        run,
        interval: 1.0,
        etag: header("etag").or_else(|| prior.and_then(|p| p.etag.clone())),
        last_modified: header("last-modified")
            .or_else(|| prior.and_then(|p| p.last_modified.clone())),
        fingerprint,
        gone,
    };
    let (change, mut state) = match (fetched.status, prior) {
        // Not modified: the page as the last run saw it.
        (304, Some(p)) => (Change::Same, keep(p.fingerprint, false)),
        (404 | 410, Some(p)) if p.gone => (Change::Same, keep(p.fingerprint, true)),
        (404 | 410, Some(p)) => (Change::Removed, keep(p.fingerprint, true)),
        (404 | 410, None) => {
            let mut s = keep(Fingerprint::of(&fetched.body, mode), true);
            (s.etag, s.last_modified) = (None, None);
            (Change::New, s)
        }
        _ => {
            let now = Fingerprint::of(&fetched.body, mode);
            let before = prior.filter(|p| !p.gone).map(|p| &p.fingerprint);
            let change = match (prior, now.change_from(before)) {
                // Back after it was gone.
                (Some(p), Change::New) if p.gone => Change::Changed,
                (_, c) => c,
            };
            (change, keep(now, false))
        }
    };
    if let Some(a) = adaptive {
        let last = prior.map_or(1.0, |p| p.interval);
        state.interval = a.next(last, matches!(change, Change::New | Change::Changed));
    }
    (change, state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn fetched(status: u16, body: &str, headers: &[(&str, &str)]) -> Fetched {
        let headers = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Fetched::recorded(
            status,
            String::new(),
            headers,
            Bytes::from(body.to_string()),
        )
    }

    #[test]
    fn a_page_is_new_then_same_then_changed_then_removed() {
        let page = ("http://a.test/", 1, 1);
        let f = fetched(200, "<p>one</p>", &[("etag", "\"v1\"")]);
        let (c, s1) = observe(None, page, &f, (ChangeMode::Exact, None));
        assert_eq!(c, Change::New);
        assert_eq!(
            s1.validators(),
            vec![("If-None-Match".to_string(), "\"v1\"".to_string())]
        );
        let (c, s2) = observe(
            Some(&s1),
            ("http://a.test/", 1, 2),
            &fetched(304, "", &[]),
            (ChangeMode::Exact, None),
        );
        assert_eq!(
            (c, s2.run, s2.fingerprint),
            (Change::Same, 2, s1.fingerprint)
        );
        assert_eq!(
            s2.etag.as_deref(),
            Some("\"v1\""),
            "a 304 keeps the validators it had"
        );
        let f = fetched(200, "<p>two</p>", &[("etag", "\"v2\"")]);
        let (c, s3) = observe(
            Some(&s2),
            ("http://a.test/", 1, 3),
            &f,
            (ChangeMode::Exact, None),
        );
        assert_eq!((c, s3.etag.as_deref()), (Change::Changed, Some("\"v2\"")));
        let (c, s4) = observe(
            Some(&s3),
            page,
            &fetched(404, "gone", &[]),
            (ChangeMode::Exact, None),
        );
        assert_eq!((c, s4.gone), (Change::Removed, true));
        let (c, _) = observe(
            Some(&s4),
            page,
            &fetched(404, "gone", &[]),
            (ChangeMode::Exact, None),
        );
        assert_eq!(c, Change::Same, "removed once, not every run");
        let (c, _) = observe(
            Some(&s4),
            page,
            &fetched(200, "<p>two</p>", &[]),
            (ChangeMode::Exact, None),
        );
        assert_eq!(c, Change::Changed, "back after it was gone");
    }

    #[test]
    fn a_state_reads_back_as_it_was_written() {
        let f = fetched(
            200,
            "<p>a page</p>",
            &[
                ("etag", "W/\"x\""),
                ("last-modified", "Mon, 07 Dec 2026 06:00:00 GMT"),
            ],
        );
        for mode in [ChangeMode::Exact, ChangeMode::Fuzzy] {
            let (_, s) = observe(None, ("http://a.test/p?q=1", 2, 7), &f, (mode, None));
            assert_eq!(PageState::decode(&s.encode()), Some(s.clone()));
            let bare = PageState {
                etag: None,
                last_modified: None,
                gone: true,
                ..s
            };
            assert_eq!(PageState::decode(&bare.encode()), Some(bare.clone()));
            let bare_bytes = bare.bytes();
            let resting = PageState {
                interval: 2.8,
                ..bare
            };
            assert!(resting.encode().starts_with("7/2.8\n"));
            assert_eq!(PageState::decode(&resting.encode()), Some(resting.clone()));
            assert_eq!(resting.bytes(), bare_bytes + 4);
            assert!(!resting.due(9) && resting.due(10), "read again 3 runs on");
        }
        assert_eq!(PageState::decode("1\n0\nzz"), None);
    }

    #[test]
    fn an_adaptive_page_rests_longer_while_it_is_the_same() {
        let a = Adaptive {
            max_interval: 4,
            inc: 1.0,
            dec: 0.5,
        };
        let modes = (ChangeMode::Exact, Some(&a));
        let page = |run| ("http://a.test/", 1, run);
        let f = fetched(200, "<p>one</p>", &[]);
        let (_, s1) = observe(None, page(1), &f, modes);
        assert!(s1.interval == 1.0 && s1.due(2));
        let (c, s2) = observe(Some(&s1), page(2), &f, modes);
        assert_eq!((c, s2.interval), (Change::Same, 2.0));
        assert!(!s2.due(3) && s2.due(4));
        let (_, s4) = observe(Some(&s2), page(4), &fetched(304, "", &[]), modes);
        assert_eq!(s4.interval, 4.0);
        let changed = fetched(200, "<p>two</p>", &[]);
        let (c, s8) = observe(Some(&s4), page(8), &changed, modes);
        assert_eq!((c, s8.interval), (Change::Changed, 2.0));
    }

    #[test]
    fn an_overlong_validator_is_not_kept() {
        let long = format!("\"{}\"", "x".repeat(MAX_VALIDATOR));
        let f = fetched(
            200,
            "a",
            &[
                ("etag", &long),
                ("last-modified", "Mon, 07 Dec 2026 06:00:00 GMT"),
            ],
        );
        let (_, s) = observe(
            None,
            ("http://a.test/", 0, 1),
            &f,
            (ChangeMode::Fuzzy, None),
        );
        assert_eq!(s.etag, None);
        assert_eq!(s.validators().len(), 1);
        assert_eq!(s.bytes(), 4 + 4 + 1 + 16 + 8 + 29);
    }
}
