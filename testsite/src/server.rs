//! HTTP/1.1 serving of the pre-rendered pages, with a request log.

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::{Request, Response, StatusCode};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request the site served.
#[derive(Debug, Clone)]
pub struct Hit {
    pub at: Instant,
    /// Host index (0-based; host k is 127.0.0.{k+1}).
    pub host: usize,
    pub path: String,
    /// Request headers, lowercased names.
    pub headers: Vec<(String, String)>,
}

#[derive(Default)]
pub struct Log {
    hits: Mutex<Vec<Hit>>,
    /// Page requests the last host has refused (`Quirks::refuse`).
    refused: AtomicUsize,
    /// Per host: requests open now, and the most at once.
    open: Mutex<HashMap<usize, (usize, usize)>>,
    /// How long the last host's pages take, in µs.
    last_host_delay_us: AtomicU64,
    /// The last host's token bucket (`Quirks::limit`): tokens, and when
    /// they were counted; and when it answered 429.
    bucket: Mutex<Option<(f64, Instant)>>,
    limited: Mutex<Vec<Instant>>,
    /// Pages changed since the start (`Site::change_page`).
    changed: Mutex<std::collections::HashSet<usize>>,
}

impl Log {
    pub fn change_page(&self, i: usize) {
        if let Ok(mut c) = self.changed.lock() {
            c.insert(i);
        }
    }

    fn is_changed(&self, i: usize) -> bool {
        self.changed.lock().is_ok_and(|c| c.contains(&i))
    }

    pub fn set_last_host_delay(&self, d: Duration) {
        self.last_host_delay_us
            .store(d.as_micros() as u64, Ordering::Relaxed);
    }

    fn last_host_delay(&self) -> Duration {
        Duration::from_micros(self.last_host_delay_us.load(Ordering::Relaxed))
    }

    pub fn max_open(&self, host: usize) -> usize {
        self.open
            .lock()
            .map(|o| o.get(&host).map_or(0, |c| c.1))
            .unwrap_or(0)
    }

    fn opened(&self, host: usize, by: isize) {
        if let Ok(mut o) = self.open.lock() {
            let c = o.entry(host).or_default();
            c.0 = c.0.saturating_add_signed(by);
            c.1 = c.1.max(c.0);
        }
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().map(|h| h.clone()).unwrap_or_default()
    }

    pub fn limited(&self) -> Vec<Instant> {
        self.limited.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// A token from the bucket of `limit` (full at first), or false.
    fn take_token(&self, limit: &crate::Limit) -> bool {
        let Ok(mut bucket) = self.bucket.lock() else {
            return false;
        };
        let now = Instant::now();
        let (tokens, at) = bucket.get_or_insert((limit.burst + 1.0, now));
        *tokens = (*tokens + (now - *at).as_secs_f64() * limit.per_sec).min(limit.burst + 1.0);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            return true;
        }
        false
    }

    /// The limiter answered the request of `hit` with 429.
    fn push_limited(&self, hit: Hit) {
        if let Ok(mut l) = self.limited.lock() {
            l.push(hit.at);
        }
        self.push(hit);
    }
    fn push(&self, hit: Hit) {
        if let Ok(mut h) = self.hits.lock() {
            h.push(hit);
        }
    }
}

/// The site's pages, and gzip-encoded when `Quirks::gzip` is set.
pub struct Pages {
    pub plain: Vec<Bytes>,
    pub gzip: Vec<Bytes>,
}

/// `body` gzip-encoded at level 1.
pub fn gzip(body: &[u8]) -> Bytes {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let _ = e.write_all(body);
    e.finish().unwrap_or_default().into()
}

pub async fn serve(
    listener: tokio::net::TcpListener,
    host: usize,
    hosts: usize,
    quirks: crate::Quirks,
    pages: Arc<Pages>,
    log: Arc<Log>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (pages, log) = (pages.clone(), log.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let robots = req.uri().path() == "/robots.txt";
                let inm = req
                    .headers()
                    .get("if-none-match")
                    .and_then(|v| v.to_str().ok());
                let archived = crate::archived::respond(req.uri().path(), inm);
                let resp = if let Some(r) = archived {
                    log.push(hit(&req, host));
                    r.map(Either::Right)
                } else {
                    let full = if robots && !quirks.robots.is_zero() && req.uri().query().is_none()
                    {
                        log.push(hit(&req, host));
                        Response::builder()
                            .status(StatusCode::MOVED_PERMANENTLY)
                            .header("location", "/robots.txt?hop=2")
                            .body(Full::new(Bytes::new()))
                            .unwrap_or_default()
                    } else if robots && quirks.huge_robots && host + 1 == hosts {
                        log.push(hit(&req, host));
                        text(StatusCode::OK, "text/plain", huge_robots())
                    } else if let Some(r) = refusal(&quirks, &log, robots, host + 1 == hosts) {
                        log.push(hit(&req, host));
                        r
                    } else if let Some(r) = limited(&quirks, &log, robots, host + 1 == hosts) {
                        log.push_limited(hit(&req, host));
                        r
                    } else if robots && host + 1 == hosts && quirks.crawl_delay.is_some() {
                        log.push(hit(&req, host));
                        let delay = quirks.crawl_delay.unwrap_or_default();
                        let txt =
                            format!("User-agent: *\nCrawl-delay: {delay}\nDisallow: /private/\n");
                        text(StatusCode::OK, "text/plain", txt)
                    } else {
                        respond(&req, (host, hosts), &quirks, &pages, &log)
                    };
                    full.map(Either::Left)
                };
                let slow = if robots {
                    quirks.robots
                } else if let Some(d) = crate::scripted::delay(req.uri().path()) {
                    d
                } else if host + 1 == hosts && !log.last_host_delay().is_zero() {
                    log.last_host_delay()
                } else {
                    quirks.page
                };
                log.opened(host, 1);
                let log = log.clone();
                async move {
                    if !slow.is_zero() {
                        tokio::time::sleep(slow).await;
                    }
                    log.opened(host, -1);
                    Ok::<_, Infallible>(resp)
                }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, svc)
                .await;
        });
    }
}

/// The last host's refusal of a page request, while `Quirks::refuse` has
/// some left.
fn refusal(
    quirks: &crate::Quirks,
    log: &Log,
    robots: bool,
    last: bool,
) -> Option<Response<Full<Bytes>>> {
    let r = quirks.refuse.filter(|_| last && !robots)?;
    if log.refused.fetch_add(1, Ordering::Relaxed) >= r.times {
        return None;
    }
    let mut b = Response::builder().status(r.status);
    if let Some(secs) = r.retry_after {
        b = b.header("retry-after", secs.to_string());
    }
    Some(
        b.body(Full::new(Bytes::from_static(b"slow down")))
            .unwrap_or_default(),
    )
}

/// The last host's limiter refusing a page request (`Quirks::limit`).
fn limited(
    quirks: &crate::Quirks,
    log: &Log,
    robots: bool,
    last: bool,
) -> Option<Response<Full<Bytes>>> {
    let limit = quirks.limit.filter(|_| last && !robots)?;
    if log.take_token(&limit) {
        return None;
    }
    let mut b = Response::builder().status(429);
    if let Some(secs) = limit.retry_after {
        b = b.header("retry-after", secs.to_string());
    }
    Some(
        b.body(Full::new(Bytes::from_static(b"too many requests")))
            .unwrap_or_default(),
    )
}

fn respond(
    req: &Request<hyper::body::Incoming>,
    (host, hosts): (usize, usize),
    quirks: &crate::Quirks,
    pages: &Pages,
    log: &Log,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    log.push(hit(req, host));
    let page_on_this_host = |j: usize| j < pages.plain.len() && j % hosts == host;
    let base = || {
        let h = req.headers().get("host").and_then(|h| h.to_str().ok());
        format!("http://{}", h.unwrap_or("localhost"))
    };
    if path == "/robots.txt" {
        let mut txt = String::from("User-agent: *\nDisallow: /private/\n");
        if quirks.sitemaps && host == 0 {
            txt.push_str(&format!("Sitemap: {}/sitemaps/index.xml\n", base()));
        }
        return text(StatusCode::OK, "text/plain", txt);
    }
    if quirks.sitemaps && host == 0 {
        if let Some(r) = sitemaps(&path, &base()) {
            return r;
        }
    }
    if let Some(to) = crate::scripted::moved(&path) {
        return Response::builder()
            .status(StatusCode::MOVED_PERMANENTLY)
            .header("location", to)
            .body(Full::new(Bytes::new()))
            .unwrap_or_default();
    }
    if let Some((ctype, body)) = crate::catalogue::page(&path) {
        return text(StatusCode::OK, ctype, body);
    }
    if let Some(body) = crate::articles::page(&path) {
        return text(StatusCode::OK, "text/html; charset=utf-8", body);
    }
    if let Some((ctype, body)) = crate::scripted::page(&path) {
        return text(StatusCode::OK, ctype, body);
    }
    // Chains for walking spiders (`Site::chain_url`): `/walk/N/I.html`
    // links to page I+1 while I+1 < N; N = 0 never ends.
    if let Some(page) = chain_page(&path) {
        return text(StatusCode::OK, "text/html; charset=utf-8", page);
    }
    // Hostile pages (`Site::hostile_url`), the same on every host.
    if let Some(r) = hostile(req, &path) {
        return r;
    }
    if let Some(j) = path
        .strip_prefix("/p/")
        .and_then(|r| r.strip_suffix(".html"))
        .and_then(|n| n.parse().ok())
    {
        if page_on_this_host(j) && quirks.etags {
            return with_etag(req, j, pages, log.is_changed(j));
        }
        if page_on_this_host(j) {
            let accepts_gzip = req
                .headers()
                .get("accept-encoding")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("gzip"));
            let r = Response::builder().header("content-type", "text/html; charset=utf-8");
            return match pages.gzip.get(j).filter(|_| accepts_gzip) {
                Some(gz) => r
                    .header("content-encoding", "gzip")
                    .header("vary", "Accept-Encoding")
                    .body(Full::new(gz.clone())),
                None => r.body(Full::new(pages.plain[j].clone())),
            }
            .unwrap_or_default();
        }
    }
    if let Some(j) = path
        .strip_prefix("/r/")
        .and_then(|n| n.parse::<usize>().ok())
    {
        if page_on_this_host(j) {
            return Response::builder()
                .status(StatusCode::MOVED_PERMANENTLY)
                .header("location", format!("/p/{j}.html"))
                .body(Full::new(Bytes::new()))
                .unwrap_or_default();
        }
    }
    text(
        StatusCode::NOT_FOUND,
        "text/html",
        "<html><body><h1>Not found</h1></body></html>",
    )
}

/// Page `j` with its `ETag`, or 304 to a request that names it; a page
/// changed since the start has a paragraph more.
fn with_etag(
    req: &Request<hyper::body::Incoming>,
    j: usize,
    pages: &Pages,
    changed: bool,
) -> Response<Full<Bytes>> {
    let body = match changed {
        false => pages.plain[j].clone(),
        true => {
            let mut b = pages.plain[j].to_vec();
            b.extend_from_slice(b"<p>This paragraph was added since the last visit.</p>\n");
            Bytes::from(b)
        }
    };
    let etag = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        body.hash(&mut h);
        format!("\"{:016x}\"", h.finish())
    };
    let named = req
        .headers()
        .get("if-none-match")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let r = Response::builder()
        .header("content-type", "text/html; charset=utf-8")
        .header("etag", &etag);
    match named {
        true => r
            .status(StatusCode::NOT_MODIFIED)
            .body(Full::new(Bytes::new())),
        false => r.body(Full::new(body)),
    }
    .unwrap_or_default()
}

/// A hostile page (`Site::hostile_url`) at `path`, if it names one.
fn hostile(req: &Request<hyper::body::Incoming>, path: &str) -> Option<Response<Full<Bytes>>> {
    if path == "/hostile/redirect" {
        // An open redirect: `?to=URL` (tests of what crosses a redirect).
        let to = req
            .uri()
            .query()
            .and_then(|q| q.strip_prefix("to="))
            .unwrap_or("/");
        return Some(
            Response::builder()
                .status(StatusCode::FOUND)
                .header("location", to)
                .body(Full::new(Bytes::new()))
                .unwrap_or_default(),
        );
    }
    if path == "/hostile/links.html" {
        return Some(text(StatusCode::OK, "text/html", many_links()));
    }
    if path == "/hostile/links2k.html" {
        return Some(text(StatusCode::OK, "text/html", links_to_pages(2000)));
    }
    if path == "/hostile/deep.html" {
        // 100,000 elements nested in one another.
        let page = "<div>".repeat(100_000) + "deep";
        return Some(text(StatusCode::OK, "text/html", page));
    }
    if path == "/hostile/nodes.html" {
        // A million elements (7 MB), under the crawl's body cap.
        let page = "<title>Many</title>".to_string() + &"<p>x</p>".repeat(1_000_000);
        return Some(text(StatusCode::OK, "text/html", page));
    }
    if path == "/hostile/attribute.html" {
        // A 50 MB attribute (a crawl must raise its body cap to read it).
        let page = format!(
            "<html><head><meta name=\"description\" content=\"{}\"><title>Big</title></head>\
             <body><h1>Big</h1></body></html>",
            "x".repeat(50_000_000)
        );
        return Some(text(StatusCode::OK, "text/html", page));
    }
    if path == "/hostile/entity.html" {
        // An entity cut inside a multi-byte character, in a link's text
        // and in its href.
        return Some(text(
            StatusCode::OK,
            "text/html; charset=utf-8",
            "<html><body><a href=\"/p/0.html?x&aaaaaaaa\u{e9}\">&aaaaaaaa\u{e9}</a></body></html>",
        ));
    }
    None
}

/// A host `a.xml` names that is not its own (nothing answers there).
pub const OFF_HOST: &str = "off-host.invalid";

/// Pages only the sitemaps name (`/orphan/{i}.html`).
pub const ORPHANS: usize = 6;

/// Host 0's sitemaps (`Quirks::sitemaps`): an index of `a.xml` (orphans
/// 0-2 and a `.pdf`) and `b.xml.gz` (orphans 3-5, gzipped), and the
/// orphan pages themselves.
fn sitemaps(path: &str, base: &str) -> Option<Response<Full<Bytes>>> {
    let urlset = |range: std::ops::Range<usize>, extra: &str| {
        let mut x = String::from("<?xml version=\"1.0\"?>\n<urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">\n");
        for i in range {
            x.push_str(&format!("<url><loc>{base}/orphan/{i}.html</loc></url>\n"));
        }
        x.push_str(extra);
        x.push_str("</urlset>\n");
        x
    };
    let body = match path {
        // The third sitemap is where robots.txt disallows: never read.
        "/sitemaps/index.xml" => format!(
            "<?xml version=\"1.0\"?>\n<sitemapindex><sitemap><loc>{base}/sitemaps/a.xml</loc></sitemap>\n<sitemap><loc>{base}/sitemaps/b.xml.gz</loc></sitemap>\n<sitemap><loc>{base}/private/c.xml</loc></sitemap></sitemapindex>\n"
        ),
        // Its last URL is on another host: not taken.
        "/sitemaps/a.xml" => urlset(0..3, &format!("<url><loc>{base}/orphan/report.pdf</loc></url>\n<url><loc>http://{OFF_HOST}/orphan/0.html</loc></url>\n")),
        "/sitemaps/b.xml.gz" => {
            use std::io::Write;
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(urlset(3..ORPHANS, "").as_bytes()).ok()?;
            return Some(text(StatusCode::OK, "application/gzip", gz.finish().ok()?));
        }
        _ => {
            let i: usize = path.strip_prefix("/orphan/")?.strip_suffix(".html")?.parse().ok()?;
            (i < ORPHANS).then_some(())?;
            let page = format!("<html><body><h1>Orphan {i}</h1><p>Only a sitemap names this page.</p></body></html>");
            return Some(text(StatusCode::OK, "text/html; charset=utf-8", page));
        }
    };
    Some(text(StatusCode::OK, "application/xml", body))
}

/// A page of 200,000 distinct links (`/l/0` ...), built once.
fn many_links() -> Bytes {
    static PAGE: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
    PAGE.get_or_init(|| {
        let mut page = String::from("<html><body>\n");
        for i in 0..200_000 {
            page.push_str(&format!("<a href=\"/l/{i}\">{i}</a>\n"));
        }
        page.push_str("</body></html>\n");
        Bytes::from(page)
    })
    .clone()
}

/// A page linking to pages `/p/0.html` .. `/p/{n-1}.html` of its own host
/// (most of them 404 on a small site: robots.txt is what is exercised).
fn links_to_pages(n: usize) -> Bytes {
    let mut page = String::from("<html><body>\n");
    for i in 0..n {
        page.push_str(&format!("<a href=\"/p/{i}.html\">{i}</a>\n"));
    }
    page.push_str("</body></html>\n");
    Bytes::from(page)
}

/// ~9 MB of `Disallow` rules that match nothing, then `Disallow: /p/`:
/// a crawler reading past 500 KiB refuses every page.
fn huge_robots() -> Bytes {
    static TXT: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
    TXT.get_or_init(|| {
        let mut txt = String::from("User-agent: *\n");
        let mut i = 0;
        while txt.len() < 9 << 20 {
            txt.push_str(&format!("Disallow: /nothing-{i}/*/x$\n"));
            i += 1;
        }
        txt.push_str("Disallow: /p/\n");
        Bytes::from(txt)
    })
    .clone()
}

fn hit(req: &Request<hyper::body::Incoming>, host: usize) -> Hit {
    Hit {
        at: Instant::now(),
        host,
        path: req.uri().path().to_string(),
        headers: req
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
    }
}

fn text(status: StatusCode, ctype: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", ctype)
        .body(Full::new(body.into()))
        .unwrap_or_default()
}

/// A page of a chain (`/walk/N/I.html`): one link, to the next page.
fn chain_page(path: &str) -> Option<String> {
    let (n, i) = path.strip_prefix("/walk/")?.split_once('/')?;
    let (n, i): (u64, u64) = (n.parse().ok()?, i.strip_suffix(".html")?.parse().ok()?);
    let next = if n == 0 || i + 1 < n {
        format!("<a href=\"/walk/{n}/{}.html\">next</a>", i + 1)
    } else {
        String::new()
    };
    Some(format!("<html><body><h1>Step {i}</h1>{next}</body></html>"))
}
