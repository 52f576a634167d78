//! Pages for the archive's tests (`/enc/…`, `/big/…`): the same text sent
//! gzip-encoded, brotli-encoded and chunked, a page that answers 304 to
//! its ETag, a redirect chain, and a 3 MiB page. [`sent`] gives the bytes
//! each puts on the wire, to compare an archive's payloads with.

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use std::collections::VecDeque;
use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll};

/// The page every encoding carries.
pub fn text(name: &str) -> String {
    let mut t = format!("<!doctype html><html><head><title>{name}</title></head><body>\n");
    for i in 0..200 {
        t.push_str(&format!(
            "<p>Line {i} of the {name} page, the same words again and again.</p>\n"
        ));
    }
    t.push_str("</body></html>\n");
    t
}

/// The index linking to every archive page.
pub const INDEX: &str = "/enc/index.html";

/// What the index links to, the redirect chain's start among them.
pub const PAGES: [&str; 6] = [
    "/enc/gzip.html",
    "/enc/br.html",
    "/enc/chunked.html",
    "/enc/etag.html",
    "/enc/not-modified.html",
    "/enc/hop/1",
];

/// The chain `/enc/hop/1` → `/enc/hop/2` → `/enc/end.html`.
pub const CHAIN: [&str; 3] = ["/enc/hop/1", "/enc/hop/2", "/enc/end.html"];

/// The ETag of `/enc/etag.html`: a request with `If-None-Match` naming it
/// gets a 304. (`/enc/not-modified.html` answers 304 to any request.)
pub const ETAG: &str = "\"v1\"";

/// The 3 MiB page.
pub const BIG: &str = "/big/3m.html";

pub fn big() -> Bytes {
    static PAGE: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
    PAGE.get_or_init(|| {
        let mut page = String::from("<!doctype html><html><body>\n");
        let mut i = 0;
        while page.len() < 3 << 20 {
            page.push_str(&format!(
                "<p>{i:08} large page line, kept whole by the claim check.</p>\n"
            ));
            i += 1;
        }
        page.push_str("</body></html>\n");
        Bytes::from(page)
    })
    .clone()
}

/// The bytes `path`'s response body puts on the wire (before chunking),
/// if it is an archive page.
pub fn sent(path: &str) -> Option<Bytes> {
    Some(match path {
        INDEX => {
            let links: String = PAGES
                .iter()
                .map(|p| format!("<a href=\"{p}\">{p}</a>\n"))
                .collect();
            Bytes::from(format!("<html><body>\n{links}</body></html>\n"))
        }
        "/enc/gzip.html" => {
            let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            z.write_all(text("gzip").as_bytes()).ok()?;
            z.finish().ok()?.into()
        }
        "/enc/br.html" => {
            let mut out = Vec::new();
            let params = brotli::enc::BrotliEncoderParams::default();
            brotli::BrotliCompress(&mut text("br").as_bytes(), &mut out, &params).ok()?;
            out.into()
        }
        "/enc/chunked.html" => text("chunked").into(),
        "/enc/etag.html" | "/enc/end.html" => text(path).into(),
        "/enc/hop/1" | "/enc/hop/2" | "/enc/not-modified.html" => Bytes::new(),
        BIG => big(),
        _ => return None,
    })
}

/// The response for an archive page; `None` if `path` is not one.
pub fn respond(path: &str, if_none_match: Option<&str>) -> Option<hyper::Response<Sent>> {
    let body = sent(path)?;
    let b = hyper::Response::builder();
    let r = match path {
        "/enc/gzip.html" | "/enc/br.html" => b
            .header("content-type", "text/html; charset=utf-8")
            .header(
                "content-encoding",
                if path.contains("gzip") { "gzip" } else { "br" },
            )
            .body(Sent::Whole(body)),
        "/enc/chunked.html" => {
            let parts = body.chunks(1000).map(Bytes::copy_from_slice).collect();
            b.header("content-type", "text/html; charset=utf-8")
                .body(Sent::Chunked(parts))
        }
        "/enc/etag.html" | "/enc/not-modified.html"
            if if_none_match == Some(ETAG) || path.contains("not-modified") =>
        {
            b.status(304)
                .header("etag", ETAG)
                .body(Sent::Whole(Bytes::new()))
        }
        "/enc/etag.html" => b
            .header("content-type", "text/html; charset=utf-8")
            .header("etag", ETAG)
            .body(Sent::Whole(body)),
        "/enc/hop/1" | "/enc/hop/2" => b
            .status(if path.ends_with('1') { 302 } else { 301 })
            .header(
                "location",
                if path.ends_with('1') {
                    "/enc/hop/2"
                } else {
                    "/enc/end.html"
                },
            )
            .body(Sent::Whole(body)),
        _ => b
            .header("content-type", "text/html; charset=utf-8")
            .body(Sent::Whole(body)),
    };
    r.ok()
}

/// A body sent whole (with its length) or in chunks (no length: HTTP/1.1
/// chunked transfer).
pub enum Sent {
    Whole(Bytes),
    Chunked(VecDeque<Bytes>),
}

impl Body for Sent {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let next = match self.get_mut() {
            Sent::Whole(b) if b.is_empty() => None,
            Sent::Whole(b) => Some(std::mem::take(b)),
            Sent::Chunked(parts) => parts.pop_front(),
        };
        Poll::Ready(next.map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Sent::Whole(b) => b.is_empty(),
            Sent::Chunked(parts) => parts.is_empty(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Sent::Whole(b) => SizeHint::with_exact(b.len() as u64),
            Sent::Chunked(_) => SizeHint::default(),
        }
    }
}
