//! Which site pauses are told as `domain.paused`: a 429 or 503 that
//! paused an origin is told once per crawl, origin and minute, however
//! many of the crawl's fetches met it (a busy crawl on a limited site
//! would otherwise send one per request). The crawl loop notes them as
//! it settles; whoever drives runs takes and tells them. Bounded: at
//! most [`PENDING`] wait and [`TOLD`] (crawl, origin) pairs are
//! remembered; past them, a pause goes untold (events report, they hold
//! no work).

use super::{Event, Kind};
use parking_lot::Mutex;
use std::collections::HashMap;

/// Pauses noted and not yet taken, at most.
pub const PENDING: usize = 1000;
/// (crawl, origin) pairs remembered as told this minute, at most.
pub const TOLD: usize = 10_000;

/// One pause to tell.
#[derive(Debug, Clone, PartialEq)]
pub struct Paused {
    /// appid, crawlid.
    pub crawl: (String, String),
    pub run: u32,
    pub origin: String,
    /// 429 or 503.
    pub status: u16,
    /// The unix minute it was first met in.
    pub minute: i64,
}

impl Paused {
    /// The event: about the origin and the minute (so the same pause met
    /// by two workers in one minute carries one id), the status its
    /// reason.
    pub fn event(&self) -> Event {
        let mut e = Event::of(Kind::DomainPaused, (&self.crawl.0, &self.crawl.1), self.run);
        e.about = Some(format!("{} {}", self.origin, self.minute * 60));
        e.reason = Some(self.status.to_string());
        e
    }
}

#[derive(Default)]
pub struct Pauses {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    told: HashMap<((String, String), String), i64>,
    pending: Vec<Paused>,
}

impl Pauses {
    /// `crawl`'s (appid, crawlid) fetch of `origin` was answered `status`
    /// and paused it.
    pub fn note(&self, crawl: (String, String), run: u32, origin: String, status: u16) {
        self.note_at(
            crawl,
            run,
            origin,
            status,
            jiff::Timestamp::now().as_second() / 60,
        );
    }

    fn note_at(&self, crawl: (String, String), run: u32, origin: String, status: u16, minute: i64) {
        let mut i = self.inner.lock();
        let key = (crawl, origin);
        if i.told.get(&key) == Some(&minute) {
            return;
        }
        if i.told.len() >= TOLD {
            i.told.retain(|_, m| *m == minute);
        }
        if i.told.len() >= TOLD || i.pending.len() >= PENDING {
            return;
        }
        i.told.insert(key.clone(), minute);
        let (crawl, origin) = key;
        i.pending.push(Paused {
            crawl,
            run,
            origin,
            status,
            minute,
        });
    }

    /// The pauses noted since the last call.
    pub fn take(&self) -> Vec<Paused> {
        std::mem::take(&mut self.inner.lock().pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crawl(id: &str) -> (String, String) {
        ("app".into(), id.into())
    }

    #[test]
    fn a_pause_is_told_once_per_crawl_origin_and_minute_and_bounded() {
        let p = Pauses::default();
        let site = "https://shop.example:443".to_string();
        for _ in 0..50 {
            p.note_at(crawl("a"), 1, site.clone(), 429, 100);
        }
        p.note_at(crawl("b"), 1, site.clone(), 503, 100);
        let told = p.take();
        assert_eq!(told.len(), 2, "{told:?}");
        let e = told[0].event();
        assert_eq!(e.event, Kind::DomainPaused);
        assert_eq!(e.about.as_deref(), Some("https://shop.example:443 6000"));
        assert_eq!(e.reason.as_deref(), Some("429"));
        // The next minute tells it again, with another id.
        p.note_at(crawl("a"), 1, site.clone(), 429, 100);
        p.note_at(crawl("a"), 1, site.clone(), 429, 101);
        let again = p.take();
        assert_eq!(again.len(), 1);
        assert_ne!(again[0].event().id(), e.id());
        // A flood of crawls: at most PENDING wait.
        for i in 0..(PENDING + 500) {
            p.note_at(crawl(&i.to_string()), 1, site.clone(), 429, 102);
        }
        assert_eq!(p.take().len(), PENDING);
        // And the pairs remembered stay bounded.
        for i in 0..(TOLD * 2) {
            p.note_at(crawl(&format!("x{i}")), 1, site.clone(), 429, 103);
            if i % PENDING == 0 {
                p.take();
            }
        }
        assert!(p.inner.lock().told.len() <= TOLD);
    }
}
