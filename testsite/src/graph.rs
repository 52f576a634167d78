//! The site's link graph and page rendering, both from one seeded RNG.

use crate::SiteSpec;
use bytes::Bytes;
use std::net::SocketAddr;

/// Where a link points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    Page(usize),
    /// `/r/{j}`: 301 to page j.
    Redirect(usize),
    /// `/missing/{j}.html`: 404.
    Missing(usize),
    /// `/private/{j}.html`: disallowed by robots.txt.
    Private(usize),
    /// `/img/{j}.jpg` or `/doc/{j}.pdf`: filtered by extension.
    Asset(usize),
}

impl Target {
    /// The host page `j`'s target lives on.
    fn host(self, hosts: usize) -> usize {
        match self {
            Target::Page(j)
            | Target::Redirect(j)
            | Target::Missing(j)
            | Target::Private(j)
            | Target::Asset(j) => j % hosts,
        }
    }

    fn path(self) -> String {
        match self {
            Target::Page(j) => format!("/p/{j}.html"),
            Target::Redirect(j) => format!("/r/{j}"),
            Target::Missing(j) => format!("/missing/{j}.html"),
            Target::Private(j) => format!("/private/{j}.html"),
            Target::Asset(j) if j % 2 == 0 => format!("/img/{j}.jpg"),
            Target::Asset(j) => format!("/doc/{j}.pdf"),
        }
    }

    /// Canonical absolute URL, as the crawler reports it.
    pub fn url(self, addrs: &[SocketAddr], hosts: usize) -> String {
        format!("http://{}{}", addrs[self.host(hosts)], self.path())
    }
}

/// SplitMix64: tiny, deterministic, good enough for a test site.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const FANOUT: usize = 4;
const RANDOM_LINKS: usize = 16;
const WORDS: &[&str] = &[
    "spinneret",
    "silk",
    "thread",
    "web",
    "crawler",
    "orb",
    "weaver",
    "frame",
    "radial",
    "spiral",
    "anchor",
    "bridge",
    "dew",
    "morning",
    "garden",
    "hedge",
    "lantern",
    "meadow",
    "harbour",
    "signal",
    "quiet",
    "amber",
    "copper",
    "river",
    "stone",
    "window",
    "ledger",
    "margin",
    "compass",
    "north",
];

pub struct Graph {
    spec: SiteSpec,
    links: Vec<Vec<Target>>,
}

impl Graph {
    pub fn new(spec: SiteSpec) -> Graph {
        let n = spec.pages;
        let links = (0..n)
            .map(|i| {
                let mut rng = Rng::new(spec.seed ^ (i as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
                let mut out = Vec::new();
                // Tree edges keep every page reachable from page 0.
                for c in i * FANOUT + 1..=(i * FANOUT + FANOUT) {
                    if c < n {
                        out.push(Target::Page(c));
                    }
                }
                for _ in 0..RANDOM_LINKS {
                    out.push(Target::Page(rng.below(n)));
                }
                if rng.chance(30) {
                    out.push(Target::Redirect(rng.below(n)));
                }
                if rng.chance(30) {
                    out.push(Target::Missing(i));
                }
                if rng.chance(30) {
                    out.push(Target::Private(i));
                }
                out.push(Target::Asset(i));
                out.push(Target::Asset(i + 1));
                out
            })
            .collect();
        Graph { spec, links }
    }

    /// Page `i`'s links that a crawl follows (assets excluded), in order.
    pub fn followable(&self, i: usize) -> impl Iterator<Item = Target> + '_ {
        self.links[i]
            .iter()
            .copied()
            .filter(|t| !matches!(t, Target::Asset(_)))
    }

    /// Render page `i` with links written in varied but equivalent forms.
    pub fn render(&self, i: usize, addrs: &[SocketAddr]) -> Bytes {
        let hosts = self.spec.hosts;
        let mut rng = Rng::new(self.spec.seed.wrapping_add(i as u64) ^ 0xdead_beef);
        let mut html = String::with_capacity(26 * 1024);
        html.push_str(&format!(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Page {i}</title>\n\
             <style>a[href=\"/style-only\"] {{ color: red }}</style></head>\n<body>\n<h1>Page {i}</h1>\n\
             <!-- <a href=\"/commented-out.html\">hidden</a> -->\n<nav>\n"
        ));
        let me = i % hosts;
        for (n, t) in self.links[i].iter().enumerate() {
            let same_host = t.host(hosts) == me;
            let path = t.path();
            let href = if !same_host {
                t.url(addrs, hosts)
            } else {
                match rng.below(4) {
                    0 => path,
                    1 => match path.strip_prefix("/p/") {
                        Some(rest) => rest.to_string(),
                        None => path,
                    },
                    2 => format!("..{path}"),
                    _ => t.url(addrs, hosts),
                }
            };
            let frag = if rng.chance(20) { "#section" } else { "" };
            if n == 0 {
                // One image-map link per page: <area> counts as a link too.
                html.push_str(&format!(
                    "<map name=\"m{i}\"><area shape=\"rect\" href=\"{href}{frag}\"></map>\n"
                ));
            } else {
                html.push_str(&format!(
                    "<a href=\"{href}{frag}\" class=\"l\">Link <b>{n}</b> of page {i}</a>\n"
                ));
            }
            if rng.chance(10) {
                html.push_str(&format!("<a href='{href}'>again</a>\n"));
            }
        }
        html.push_str("<a href=\"mailto:webmaster@example.com\">mail</a> <a href=\"javascript:void(0)\">js</a>\n</nav>\n");
        html.push_str("<script>var tpl = '<a href=\"/script-only.html\">x</a>';</script>\n");
        let target = 15_500 + rng.below(9_000);
        while html.len() < target {
            html.push_str("<p>");
            for _ in 0..(40 + rng.below(40)) {
                html.push_str(WORDS[rng.below(WORDS.len())]);
                html.push(' ');
            }
            html.push_str("</p>\n");
        }
        html.push_str("</body></html>\n");
        Bytes::from(html)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(n: usize) -> Vec<SocketAddr> {
        (0..n)
            .map(|k| SocketAddr::from(([127, 0, 0, (k + 1) as u8], 8000 + k as u16)))
            .collect()
    }

    #[test]
    fn pages_are_15_to_25_kb_and_deterministic() {
        let spec = SiteSpec {
            pages: 200,
            hosts: 3,
            seed: 9,
        };
        let (g, h) = (Graph::new(spec), Graph::new(spec));
        let a = addrs(3);
        for i in 0..200 {
            let page = g.render(i, &a);
            assert!(
                (15 * 1024..=25 * 1024).contains(&page.len()),
                "page {i} is {} bytes",
                page.len()
            );
            assert_eq!(
                page,
                h.render(i, &a),
                "page {i} differs between two renders"
            );
        }
    }

    #[test]
    fn every_page_is_reachable_from_page_0() {
        let g = Graph::new(SiteSpec {
            pages: 500,
            hosts: 4,
            seed: 1,
        });
        let mut seen = vec![false; 500];
        let mut stack = vec![0];
        while let Some(i) = stack.pop() {
            if std::mem::replace(&mut seen[i], true) {
                continue;
            }
            stack.extend(g.followable(i).filter_map(|t| match t {
                Target::Page(j) | Target::Redirect(j) => Some(j),
                _ => None,
            }));
        }
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn the_site_has_every_kind_of_link() {
        let g = Graph::new(SiteSpec {
            pages: 100,
            hosts: 3,
            seed: 5,
        });
        let all: Vec<Target> = (0..100).flat_map(|i| g.links[i].clone()).collect();
        for kind in [
            Target::Redirect(0),
            Target::Missing(0),
            Target::Private(0),
            Target::Asset(0),
        ] {
            assert!(
                all.iter()
                    .any(|t| std::mem::discriminant(t) == std::mem::discriminant(&kind)),
                "{kind:?}"
            );
        }
        let html = String::from_utf8_lossy(&g.render(1, &addrs(3))).into_owned();
        for needle in [
            "href=\"http://",
            "href=\"/",
            "href=\"..",
            "#section",
            ".jpg",
            ".pdf",
            "mailto:",
            "<area",
        ] {
            assert!(
                (0..20).any(|i| String::from_utf8_lossy(&g.render(i, &addrs(3))).contains(needle)),
                "{needle}"
            );
        }
        assert!(html.contains("<title>Page 1</title>"));
    }
}
