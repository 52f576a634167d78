//! robots.txt: fetched once per origin through the same fetcher (so the
//! address policy applies), parsed once by `robotxt` (RFC 9309: the first
//! 500 KiB only, the groups for our product token merged, or `*`; rules
//! sorted so the first match wins; `Crawl-delay` and `Sitemap:` kept),
//! cached for `crawl.robots_ttl` in a map of at most `crawl.robots_cache`
//! origins. The map's lock is held only to look an origin up, never while
//! matching. An unreachable, non-2xx or timed-out robots.txt allows
//! everything, as Scrapy does.

use super::{Fetcher, Outgoing};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;
use tokio::time::Instant;
use url::Url;

/// Bytes of a robots.txt that are read and parsed; the rest is ignored
/// (Google's limit, and the least RFC 9309 allows).
pub const MAX_ROBOTS_BYTES: usize = robotxt::BYTE_LIMIT;

/// Sitemap URLs kept per robots.txt.
const MAX_SITEMAPS: usize = 100;

/// One origin's rules.
#[derive(Debug, Clone)]
pub struct Robots {
    rules: robotxt::Robots,
}

impl Default for Robots {
    fn default() -> Self {
        Robots {
            rules: robotxt::Robots::allow_all(),
        }
    }
}

impl Robots {
    /// Parse robots.txt for the product token `agent` (e.g. "spinneret");
    /// bytes past [`MAX_ROBOTS_BYTES`] are ignored.
    pub fn parse(text: &[u8], agent: &str) -> Robots {
        Robots {
            rules: robotxt::Robots::parse(text, agent.to_ascii_lowercase().as_str()),
        }
    }

    pub fn allowed(&self, url: &Url) -> bool {
        self.rules.is_url_allowed(url)
    }

    /// Rules a URL may be checked against: the cost of one check.
    pub fn rule_count(&self) -> usize {
        self.rules.rules().len()
    }

    /// `Crawl-delay` of our group (or `*`), for the politeness work.
    pub fn crawl_delay(&self) -> Option<Duration> {
        self.rules.crawl_delay()
    }

    /// `Sitemap:` URLs, at most [`MAX_SITEMAPS`].
    pub fn sitemaps(&self) -> &[Url] {
        let all = self.rules.sitemaps();
        &all[..all.len().min(MAX_SITEMAPS)]
    }
}

type Slot = Arc<OnceCell<(Instant, Arc<Robots>)>>;

/// What [`RobotsCache::allowed`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    /// This call fetched the robots.txt (and so spent the request's
    /// throttle slot on it).
    pub fetched: bool,
    /// The origin's `Crawl-delay` for our group (uncapped).
    pub crawl_delay: Option<Duration>,
}

/// robots.txt per origin, fetched once even when many workers ask at once.
pub struct RobotsCache {
    fetcher: Fetcher,
    agent: String,
    ttl: Duration,
    timeout: Duration,
    capacity: usize,
    slots: Mutex<HashMap<String, Slot>>,
}

impl RobotsCache {
    /// `capacity` origins at most, each for `ttl`; a fetch, redirects
    /// included, takes at most `timeout`.
    pub fn new(
        fetcher: Fetcher,
        user_agent: &str,
        ttl: Duration,
        timeout: Duration,
        capacity: usize,
    ) -> Self {
        let agent = user_agent
            .split('/')
            .next()
            .unwrap_or(user_agent)
            .trim()
            .to_string();
        RobotsCache {
            fetcher,
            agent,
            ttl,
            timeout,
            capacity: capacity.max(1),
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// The rules of `url`'s origin if known and fresh; never fetches.
    pub fn rules(&self, url: &Url) -> Option<Arc<Robots>> {
        let origin = url.origin().ascii_serialization();
        let slots = self.slots.lock();
        let (at, robots) = slots.get(&origin)?.get()?;
        (at.elapsed() < self.ttl).then(|| robots.clone())
    }

    /// Drop what is known of `url`'s origin: the next request reads its
    /// robots.txt again.
    pub fn forget(&self, url: &Url) {
        self.slots
            .lock()
            .remove(&url.origin().ascii_serialization());
    }

    /// May `url` be fetched? Fetches the origin's robots.txt once.
    pub async fn allowed(&self, url: &Url) -> Verdict {
        let origin = url.origin().ascii_serialization();
        let slot = self.slot(&origin);
        let mut fetched = false;
        let (_, robots) = slot
            .get_or_init(|| async {
                fetched = true;
                (Instant::now(), Arc::new(self.fetch(&origin).await))
            })
            .await;
        Verdict {
            allowed: robots.allowed(url),
            fetched,
            crawl_delay: robots.crawl_delay(),
        }
    }

    /// The origin's slot: a fresh one when missing or stale. A full map
    /// first drops stale entries, then the oldest tenth.
    fn slot(&self, origin: &str) -> Slot {
        let mut slots = self.slots.lock();
        if let Some(slot) = slots.get(origin) {
            match slot.get() {
                Some((at, _)) if at.elapsed() >= self.ttl => {}
                _ => return slot.clone(),
            }
        }
        if slots.len() >= self.capacity {
            slots.retain(|_, s| s.get().is_none_or(|(at, _)| at.elapsed() < self.ttl));
        }
        if slots.len() >= self.capacity {
            let mut ages: Vec<(Instant, String)> = slots
                .iter()
                .filter_map(|(k, s)| s.get().map(|(at, _)| (*at, k.clone())))
                .collect();
            let drop = (self.capacity / 10).max(1).min(ages.len());
            if drop > 0 {
                ages.select_nth_unstable(drop - 1);
                for (_, k) in &ages[..drop] {
                    slots.remove(k);
                }
            }
        }
        let fresh: Slot = Arc::default();
        slots.insert(origin.to_string(), fresh.clone());
        fresh
    }

    async fn fetch(&self, origin: &str) -> Robots {
        let robots_url = format!("{origin}/robots.txt");
        let out = Outgoing {
            url: &robots_url,
            method: "GET",
            headers: &[],
            body: None,
            follow_redirects: true,
            redirects: 0,
            truncate_at: Some(MAX_ROBOTS_BYTES + 1),
            budget: None,
        };
        match tokio::time::timeout(self.timeout, self.fetcher.fetch(&out)).await {
            Ok(Ok(f)) if (200..300).contains(&f.status) => {
                let (agent, body) = (self.agent.clone(), f.body);
                // A 500 KiB file parses in milliseconds: off the async threads.
                match tokio::task::spawn_blocking(move || Robots::parse(&body, &agent)).await {
                    Ok(robots) => robots,
                    Err(e) => {
                        // As for a missing robots.txt: the throttle still paces the site.
                        tracing::error!(%robots_url, error = %e, "robots.txt could not be parsed; allowing all");
                        Robots::default()
                    }
                }
            }
            Ok(_) => Robots::default(),
            Err(_) => {
                tracing::debug!(%robots_url, timeout = ?self.timeout, "robots.txt timed out; allowing all");
                Robots::default()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(p: &str) -> Url {
        Url::parse(&format!("http://a.com{p}")).expect("url")
    }

    fn parse(text: &str, agent: &str) -> Robots {
        Robots::parse(text.as_bytes(), agent)
    }

    #[test]
    fn star_group_and_longest_match() {
        let r = parse(
            "User-agent: *\nDisallow: /private/\nAllow: /private/ok\n",
            "spinneret",
        );
        assert!(!r.allowed(&url("/private/x.html")));
        assert!(r.allowed(&url("/private/ok.html")));
        assert!(r.allowed(&url("/p/1.html")));
    }

    #[test]
    fn specific_group_beats_star() {
        let txt = "User-agent: *\nDisallow: /\n\nUser-agent: Spinneret\nDisallow: /no\n";
        let r = parse(txt, "Spinneret");
        assert!(r.allowed(&url("/yes")));
        assert!(!r.allowed(&url("/no/1")));
    }

    #[test]
    fn wildcards() {
        let r = parse("User-agent: *\nDisallow: /*.pdf$\nDisallow: /a*b\n", "x");
        assert!(!r.allowed(&url("/docs/x.pdf")));
        assert!(r.allowed(&url("/docs/x.pdf.html")));
        assert!(!r.allowed(&url("/a/zzz/b")));
    }

    #[test]
    fn crawl_delay_and_sitemaps_are_read() {
        let txt =
            "Sitemap: http://a.com/s.xml\nUser-agent: spinneret\nCrawl-delay: 2\nDisallow: /x\n";
        let r = parse(txt, "spinneret");
        assert_eq!(r.crawl_delay(), Some(Duration::from_secs(2)));
        assert_eq!(r.sitemaps().len(), 1);
        assert_eq!(r.sitemaps()[0].as_str(), "http://a.com/s.xml");
    }

    #[test]
    fn rules_past_the_size_cap_are_ignored() {
        let mut txt = String::from("User-agent: *\n");
        while txt.len() < 9 << 20 {
            txt.push_str(&format!("Disallow: /nothing-{}/\n", txt.len()));
        }
        txt.push_str("Disallow: /p/\n");
        let r = parse(&txt, "spinneret");
        assert!(r.allowed(&url("/p/1.html")), "a rule past 500 KiB applied");
        assert!(!r.allowed(&url("/nothing-14/")));
    }
}
