//! A deterministic local web site for tests, the demo and the benchmarks.
//!
//! `pages` pages spread over `hosts` loopback hosts (127.0.0.1, 127.0.0.2,
//! ...), each page 15-25 KB of HTML. Page `i` lives on host `i % hosts` at
//! `/p/{i}.html`. Pages link within and across hosts, with relative and
//! absolute links, fragments, duplicates, 404s (`/missing/`), redirects
//! (`/r/{j}` -> `/p/{j}.html`), assets that a crawl must filter (`.jpg`,
//! `.pdf`), `mailto:`/`javascript:` links, and paths robots.txt disallows
//! (`/private/`). Every page is reachable from page 0.
//!
//! [`Site::expected`] gives the exact set of URLs a crawl to depth `d` must
//! return, computed from the same link graph the pages are rendered from.

pub mod archived;
pub mod articles;
pub mod catalogue;
mod graph;
mod scripted;
mod server;

pub use graph::{Graph, Target};
pub use scripted::TREE as SCRIPTED_TREE;
pub use server::Hit;

use bytes::Bytes;
use std::collections::{BTreeSet, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;

#[derive(Debug, Clone, Copy)]
pub struct SiteSpec {
    pub pages: usize,
    pub hosts: usize,
    pub seed: u64,
}

impl Default for SiteSpec {
    fn default() -> Self {
        SiteSpec {
            pages: 300,
            hosts: 3,
            seed: 7,
        }
    }
}

/// How the site misbehaves: how long it takes to answer, and whether its
/// last host serves a hostile robots.txt.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quirks {
    pub page: std::time::Duration,
    pub robots: std::time::Duration,
    /// The last host's robots.txt is ~9 MB of rules that match nothing,
    /// then `Disallow: /p/` past the 500 KiB any crawler should read.
    pub huge_robots: bool,
    /// The last host refuses its first page requests (429, 503).
    pub refuse: Option<Refusal>,
    /// The last host's pages sit behind a rate limiter.
    pub limit: Option<Limit>,
    /// The last host's robots.txt asks for this `Crawl-delay` (seconds).
    pub crawl_delay: Option<u32>,
    /// The last host's pages take this long instead of `page` (see also
    /// [`Site::set_last_host_delay`]).
    pub last_host_page: std::time::Duration,
    /// Host 0's robots.txt lists a sitemap index of two sitemaps (the
    /// second gzipped) naming pages no page links to: [`Site::orphans`].
    pub sitemaps: bool,
    /// Pages go gzip-encoded (level 1, as nginx's `gzip on` sends HTML)
    /// to clients that accept it.
    pub gzip: bool,
    /// Pages carry an `ETag` (a hash of the page as it is now: see
    /// [`Site::change_page`]) and answer 304 to an `If-None-Match` naming
    /// it, as nginx does for static files.
    pub etags: bool,
}

/// The last host answers its first `times` page requests with `status`,
/// and `Retry-After: <retry_after>` when set.
#[derive(Debug, Clone, Copy)]
pub struct Refusal {
    pub status: u16,
    pub times: usize,
    pub retry_after: Option<u32>,
}

/// A token bucket in front of the last host's pages, as nginx's
/// `limit_req` is: `per_sec` requests a second, `burst` at once beyond
/// them, the rest answered 429 (with `Retry-After` when set).
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    pub per_sec: f64,
    pub burst: f64,
    pub retry_after: Option<u32>,
}

/// The span [`LimitFigures::slowest`] is measured over.
pub const WINDOW: std::time::Duration = std::time::Duration::from_secs(5);

/// What [`Site::against_limit`] measured.
#[derive(Debug, Clone, Copy)]
pub struct LimitFigures {
    /// Pages served per second after the start.
    pub per_sec: f64,
    /// The fewest pages served per second in any [`WINDOW`] after the
    /// start: a stall that the average would hide shows here.
    pub slowest: f64,
    /// Page requests the limited host saw, and of them answered 429.
    pub requests: usize,
    pub refused: usize,
}

impl LimitFigures {
    /// The share of requests answered 429.
    pub fn refused_share(&self) -> f64 {
        self.refused as f64 / self.requests.max(1) as f64
    }
}

/// A running site. Dropping it stops the servers.
pub struct Site {
    pub spec: SiteSpec,
    graph: Arc<Graph>,
    addrs: Vec<SocketAddr>,
    log: Arc<server::Log>,
    _servers: Vec<tokio::task::JoinHandle<()>>,
}

impl Site {
    /// Bind one listener per host on 127.0.0.{k+1} (free ports), render the
    /// pages and start serving.
    pub async fn start(spec: SiteSpec) -> std::io::Result<Site> {
        Self::start_slow(spec, std::time::Duration::ZERO).await
    }

    /// Like [`Site::start`], with every page taking `delay` to serve (a slow
    /// server keeps a crawler's requests in flight).
    pub async fn start_slow(spec: SiteSpec, delay: std::time::Duration) -> std::io::Result<Site> {
        Self::start_with(
            spec,
            Quirks {
                page: delay,
                ..Quirks::default()
            },
        )
        .await
    }

    /// Like [`Site::start`], with the `quirks`. A slow robots.txt is also
    /// one redirect hop long, so fetching it takes twice `quirks.robots`.
    pub async fn start_with(spec: SiteSpec, quirks: Quirks) -> std::io::Result<Site> {
        let mut listeners = Vec::new();
        for k in 0..spec.hosts {
            let ip = std::net::Ipv4Addr::new(127, 0, 0, (k + 1) as u8);
            listeners.push(tokio::net::TcpListener::bind((ip, 0)).await?);
        }
        let addrs: Vec<SocketAddr> = listeners
            .iter()
            .map(|l| l.local_addr())
            .collect::<Result<_, _>>()?;
        let graph = Arc::new(Graph::new(spec));
        let plain: Vec<Bytes> = (0..spec.pages).map(|i| graph.render(i, &addrs)).collect();
        let gzip = match quirks.gzip {
            true => plain.iter().map(|p| server::gzip(p)).collect(),
            false => Vec::new(),
        };
        let pages = Arc::new(server::Pages { plain, gzip });
        let log = Arc::new(server::Log::default());
        log.set_last_host_delay(quirks.last_host_page);
        let servers = listeners
            .into_iter()
            .enumerate()
            .map(|(k, l)| {
                tokio::spawn(server::serve(
                    l,
                    k,
                    spec.hosts,
                    quirks,
                    pages.clone(),
                    log.clone(),
                ))
            })
            .collect();
        Ok(Site {
            spec,
            graph,
            addrs,
            log,
            _servers: servers,
        })
    }

    /// Page `i` changes: a paragraph is added to it (and its `ETag`
    /// changes), from now on.
    pub fn change_page(&self, i: usize) {
        self.log.change_page(i);
    }

    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Canonical URL of page `i`.
    pub fn url(&self, i: usize) -> String {
        Target::Page(i).url(&self.addrs, self.spec.hosts)
    }

    pub fn seed_url(&self) -> String {
        self.url(0)
    }

    /// A page built by its script on host `host`: `/js/<name>` (see
    /// `scripted.rs`).
    pub fn scripted_url(&self, host: usize, name: &str) -> String {
        format!("http://{}/js/{name}", self.addrs[host])
    }

    /// A hostile page on host 0: `/hostile/<name>.html` (see the server).
    /// Page `i` of a chain of `n` pages (0: endless), each linking to the
    /// next only.
    pub fn chain_url(&self, n: u64, i: u64) -> String {
        format!("http://{}/walk/{n}/{i}.html", self.addrs[0])
    }

    /// An archive test page (`archived::PAGES`, `archived::BIG`) on host 0.
    pub fn archive_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addrs[0])
    }

    /// An article (`articles.rs`) on host 0: `/articles/<name>`.
    pub fn article_url(&self, name: &str) -> String {
        format!("http://{}/articles/{name}", self.addrs[0])
    }

    /// A catalogue page (`catalogue.rs`) on host 0: `/catalogue/<name>`.
    pub fn catalogue_url(&self, name: &str) -> String {
        format!("http://{}/catalogue/{name}", self.addrs[0])
    }

    pub fn hostile_url(&self, name: &str) -> String {
        format!("http://{}/hostile/{name}.html", self.addrs[0])
    }

    /// The URLs a crawl from page `seed` must return results for with the
    /// link spider at `maxdepth` (`None`: unlimited), robots.txt obeyed.
    ///
    /// Exact for maxdepth 0, 1, 2 and unlimited whatever the crawl order: a
    /// page's depth is fixed by the time its links are followed (see
    /// ARCHITECTURE.md, "Depth and dedup").
    pub fn expected(&self, seed: usize, maxdepth: Option<u32>) -> BTreeSet<String> {
        let hosts = self.spec.hosts;
        let mut seen: HashSet<Target> = HashSet::new();
        let mut queue = VecDeque::new();
        seen.insert(Target::Page(seed));
        queue.push_back((Target::Page(seed), 0u32));
        while let Some((t, depth)) = queue.pop_front() {
            if maxdepth.is_some_and(|m| depth >= m) {
                continue;
            }
            let page = match t {
                Target::Page(j) | Target::Redirect(j) => j,
                _ => continue,
            };
            for link in self.graph.followable(page) {
                if seen.insert(link) {
                    queue.push_back((link, depth + 1));
                }
            }
        }
        seen.into_iter()
            .filter(|t| !matches!(t, Target::Private(_)))
            .map(|t| t.url(&self.addrs, hosts))
            .collect()
    }

    /// The pages only host 0's sitemaps name (`Quirks::sitemaps`), and one
    /// URL they name that a crawl must filter out (a `.pdf`).
    pub fn orphans(&self) -> (Vec<String>, String) {
        let base = format!("http://{}", self.addrs[0]);
        let pages = (0..server::ORPHANS)
            .map(|i| format!("{base}/orphan/{i}.html"))
            .collect();
        (pages, format!("{base}/orphan/report.pdf"))
    }

    /// From now on the last host's pages take `delay`.
    pub fn set_last_host_delay(&self, delay: std::time::Duration) {
        self.log.set_last_host_delay(delay);
    }

    /// The most requests host `host` has had open at once.
    pub fn max_open(&self, host: usize) -> usize {
        self.log.max_open(host)
    }

    /// Every request the site has served, in order.
    /// When the last host's limiter answered 429 (`Quirks::limit`).
    pub fn limited(&self) -> Vec<std::time::Instant> {
        self.log.limited()
    }

    /// How a crawl met the last host's limiter: the pages/s it served
    /// from `after` its first page request on, and the requests it saw
    /// and answered 429 in all.
    pub fn against_limit(&self, after: std::time::Duration) -> LimitFigures {
        let last = self.spec.hosts - 1;
        let hits: Vec<_> = self
            .hits()
            .into_iter()
            .filter(|h| h.host == last && h.path != "/robots.txt")
            .map(|h| h.at)
            .collect();
        let limited = self.limited();
        let from = hits.first().map(|t| *t + after);
        let served: Vec<_> = hits
            .iter()
            .filter(|t| !limited.contains(t) && from.is_some_and(|f| **t >= f))
            .collect();
        let per_sec = match (served.first(), served.last()) {
            (Some(a), Some(b)) if b > a => (served.len() - 1) as f64 / (**b - **a).as_secs_f64(),
            _ => 0.0,
        };
        // Every window that starts at a served page and ends before the last.
        let slowest = served
            .iter()
            .take_while(|&&&t| served.last().is_some_and(|&&l| t + WINDOW <= l))
            .map(|&&t| {
                served
                    .iter()
                    .filter(|&&&s| s >= t && s < t + WINDOW)
                    .count()
            })
            .min()
            .map_or(per_sec, |n| n as f64 / WINDOW.as_secs_f64());
        LimitFigures {
            per_sec,
            slowest,
            requests: hits.len(),
            refused: limited.len(),
        }
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.log.hits()
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }
}
