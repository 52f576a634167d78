//! HTTP/1.1 serving of the pre-rendered pages, with a request log.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Instant;

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
}

impl Log {
    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().map(|h| h.clone()).unwrap_or_default()
    }
    fn push(&self, hit: Hit) {
        if let Ok(mut h) = self.hits.lock() {
            h.push(hit);
        }
    }
}

pub async fn serve(
    listener: tokio::net::TcpListener,
    host: usize,
    hosts: usize,
    quirks: crate::Quirks,
    pages: Arc<Vec<Bytes>>,
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
                let resp = if robots && !quirks.robots.is_zero() && req.uri().query().is_none() {
                    log.push(hit(&req, host));
                    Response::builder()
                        .status(StatusCode::MOVED_PERMANENTLY)
                        .header("location", "/robots.txt?hop=2")
                        .body(Full::new(Bytes::new()))
                        .unwrap_or_default()
                } else if robots && quirks.huge_robots && host + 1 == hosts {
                    log.push(hit(&req, host));
                    text(StatusCode::OK, "text/plain", huge_robots())
                } else {
                    respond(&req, host, hosts, &pages, &log)
                };
                let slow = if robots { quirks.robots } else { quirks.page };
                async move {
                    if !slow.is_zero() {
                        tokio::time::sleep(slow).await;
                    }
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

fn respond(
    req: &Request<hyper::body::Incoming>,
    host: usize,
    hosts: usize,
    pages: &[Bytes],
    log: &Log,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    log.push(hit(req, host));
    let page_on_this_host = |j: usize| j < pages.len() && j % hosts == host;
    if path == "/robots.txt" {
        return text(
            StatusCode::OK,
            "text/plain",
            "User-agent: *\nDisallow: /private/\n",
        );
    }
    // Hostile pages (`Site::hostile_url`), the same on every host.
    if path == "/hostile/redirect" {
        // An open redirect: `?to=URL` (tests of what crosses a redirect).
        let to = req
            .uri()
            .query()
            .and_then(|q| q.strip_prefix("to="))
            .unwrap_or("/");
        return Response::builder()
            .status(StatusCode::FOUND)
            .header("location", to)
            .body(Full::new(Bytes::new()))
            .unwrap_or_default();
    }
    if path == "/hostile/links.html" {
        return text(StatusCode::OK, "text/html", many_links());
    }
    if path == "/hostile/links2k.html" {
        return text(StatusCode::OK, "text/html", links_to_pages(2000));
    }
    if path == "/hostile/entity.html" {
        // An entity cut inside a multi-byte character, in a link's text
        // and in its href.
        return text(
            StatusCode::OK,
            "text/html; charset=utf-8",
            "<html><body><a href=\"/p/0.html?x&aaaaaaaa\u{e9}\">&aaaaaaaa\u{e9}</a></body></html>",
        );
    }
    if let Some(j) = path
        .strip_prefix("/p/")
        .and_then(|r| r.strip_suffix(".html"))
        .and_then(|n| n.parse().ok())
    {
        if page_on_this_host(j) {
            return Response::builder()
                .header("content-type", "text/html; charset=utf-8")
                .body(Full::new(pages[j].clone()))
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
