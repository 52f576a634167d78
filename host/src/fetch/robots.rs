//! robots.txt: fetched once per origin through the same fetcher (so the
//! address policy applies), cached for `crawl.robots_ttl`, matched with the
//! usual rules: the most specific user-agent group, longest path match, `*`
//! and `$` wildcards, Allow winning ties. Unreachable or 4xx robots.txt
//! allows everything, as Scrapy does.

use super::{Fetcher, Outgoing};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;
use tokio::time::Instant;
use url::Url;

#[derive(Debug, Default, Clone)]
pub struct Robots {
    /// (allow, pattern)
    rules: Vec<(bool, String)>,
}

impl Robots {
    /// Parse robots.txt for the product token `agent` (e.g. "spinneret").
    pub fn parse(text: &str, agent: &str) -> Robots {
        let agent = agent.to_ascii_lowercase();
        let mut specific: Vec<(bool, String)> = Vec::new();
        let mut star: Vec<(bool, String)> = Vec::new();
        let mut found_specific = false;
        let (mut group_star, mut group_mine, mut in_agents) = (false, false, false);
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let (key, value) = (key.trim().to_ascii_lowercase(), value.trim());
            match key.as_str() {
                "user-agent" => {
                    if !in_agents {
                        group_star = false;
                        group_mine = false;
                    }
                    in_agents = true;
                    let v = value.to_ascii_lowercase();
                    if v == "*" {
                        group_star = true;
                    } else if !v.is_empty() && agent.starts_with(&v) {
                        group_mine = true;
                        found_specific = true;
                    }
                }
                "allow" | "disallow" => {
                    in_agents = false;
                    if value.is_empty() {
                        continue;
                    }
                    let rule = (key == "allow", value.to_string());
                    if group_mine {
                        specific.push(rule.clone());
                    }
                    if group_star {
                        star.push(rule);
                    }
                }
                _ => in_agents = false,
            }
        }
        Robots {
            rules: if found_specific { specific } else { star },
        }
    }

    pub fn allowed(&self, url: &Url) -> bool {
        let path = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        let mut best: Option<(usize, bool)> = None;
        for (allow, pattern) in &self.rules {
            if matches(pattern, &path) {
                let len = pattern.len();
                best = match best {
                    Some((l, a)) if l > len || (l == len && a) => Some((l, a)),
                    _ => Some((len, *allow)),
                };
            }
        }
        best.is_none_or(|(_, allow)| allow)
    }
}

/// robots.txt path matching with `*` (any run) and a trailing `$` (end).
fn matches(pattern: &str, path: &str) -> bool {
    let (pattern, anchored) = match pattern.strip_suffix('$') {
        Some(p) => (p, true),
        None => (pattern, false),
    };
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    if !path.starts_with(first) {
        return false;
    }
    let mut pos = first.len();
    let rest: Vec<&str> = parts.collect();
    for (i, part) in rest.iter().enumerate() {
        if anchored && i == rest.len() - 1 {
            return path.len() >= pos + part.len() && path.ends_with(part);
        }
        match path[pos..].find(part) {
            Some(at) => pos += at + part.len(),
            None => return false,
        }
    }
    !anchored || pos == path.len() || (rest.is_empty() && path.len() == first.len())
}

type Slot = Arc<OnceCell<(Instant, Arc<Robots>)>>;

/// robots.txt per origin, fetched once even when many workers ask at once.
pub struct RobotsCache {
    fetcher: Fetcher,
    agent: String,
    ttl: Duration,
    slots: Mutex<HashMap<String, Slot>>,
}

impl RobotsCache {
    pub fn new(fetcher: Fetcher, user_agent: &str, ttl: Duration) -> Self {
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
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// The answer for `url` if its origin's robots.txt is already known;
    /// never fetches.
    pub fn known(&self, url: &Url) -> Option<bool> {
        let origin = url.origin().ascii_serialization();
        let slots = self.slots.lock();
        let (at, robots) = slots.get(&origin)?.get()?;
        (at.elapsed() < self.ttl).then(|| robots.allowed(url))
    }

    /// May `url` be fetched? Fetches the origin's robots.txt once.
    pub async fn allowed(&self, url: &Url) -> bool {
        let origin = url.origin().ascii_serialization();
        let slot = {
            let mut slots = self.slots.lock();
            let slot = slots.entry(origin.clone()).or_default().clone();
            match slot.get() {
                Some((at, _)) if at.elapsed() >= self.ttl => {
                    let fresh: Slot = Arc::default();
                    slots.insert(origin.clone(), fresh.clone());
                    fresh
                }
                _ => slot,
            }
        };
        let (_, robots) = slot
            .get_or_init(|| async {
                let robots_url = format!("{origin}/robots.txt");
                let out = Outgoing {
                    url: &robots_url,
                    method: "GET",
                    headers: &[],
                    body: None,
                    follow_redirects: true,
                    redirects: 0,
                };
                let robots = match self.fetcher.fetch(&out).await {
                    Ok(f) if (200..300).contains(&f.status) => {
                        Robots::parse(&String::from_utf8_lossy(&f.body), &self.agent)
                    }
                    _ => Robots::default(),
                };
                (Instant::now(), Arc::new(robots))
            })
            .await;
        robots.allowed(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(p: &str) -> Url {
        Url::parse(&format!("http://a.com{p}")).expect("url")
    }

    #[test]
    fn star_group_and_longest_match() {
        let r = Robots::parse(
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
        let r = Robots::parse(txt, "spinneret");
        assert!(r.allowed(&url("/yes")));
        assert!(!r.allowed(&url("/no/1")));
    }

    #[test]
    fn wildcards() {
        let r = Robots::parse("User-agent: *\nDisallow: /*.pdf$\nDisallow: /a*b\n", "x");
        assert!(!r.allowed(&url("/docs/x.pdf")));
        assert!(r.allowed(&url("/docs/x.pdf.html")));
        assert!(!r.allowed(&url("/a/zzz/b")));
    }
}
