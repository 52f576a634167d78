//! One fetch as records: the response as the server sent it (headers made
//! true to the stored bytes), the request as sent (credentials redacted),
//! and what the crawl knew of it.

use super::cdxj;
use super::record::{digests, http_head, record_id, Record};
use crate::fetch::Fetched;

/// A fetch and what the crawl knew when it made it.
pub struct Exchange<'a> {
    /// The URL asked for (this hop's, not the chain's start).
    pub url: &'a str,
    pub method: &'a str,
    pub request_body: Option<&'a [u8]>,
    pub fetched: &'a Fetched,
    pub owner: &'a Owner,
}

/// Whose fetch it was: the request's crawl, and for a rendered page's
/// sub-request, the page that asked for it.
#[derive(Debug, Clone)]
pub struct Owner {
    pub appid: String,
    pub crawlid: String,
    pub spiderid: String,
    pub depth: u32,
    pub via: Option<String>,
}

/// Records ready to append, in order, the first the response.
pub(super) struct Records {
    pub members: Vec<Member>,
}

pub(super) struct Member {
    pub bytes: Vec<u8>,
    /// What its index line says, when it has one.
    pub index: Option<IndexFields>,
}

pub(super) struct IndexFields {
    url: String,
    date: String,
    mime: String,
    status: u16,
    digest: Option<String>,
    kind: &'static str,
    appid: String,
    crawlid: String,
}

impl IndexFields {
    pub(super) fn entry(&self) -> cdxj::Entry<'_> {
        cdxj::Entry {
            url: &self.url,
            date: &self.date,
            mime: &self.mime,
            status: self.status,
            digest: self.digest.as_deref(),
            offset: 0,
            length: 0,
            filename: "",
            kind: self.kind,
            crawl: Some((&self.appid, &self.crawlid)),
        }
    }
}

impl Exchange<'_> {
    /// The fetch's records, compressed at `level` (a payload that came
    /// compressed is stored: deflating it again costs and saves nothing).
    pub(super) fn records(&self, redact: bool, level: u32) -> Records {
        let date = now(Stamp::Warc);
        let response_id = record_id();
        let members = vec![
            self.response_member(&date, &response_id, level),
            self.request_member(&date, &response_id, redact, level),
            self.metadata_member(&date, response_id, level),
        ];
        Records { members }
    }

    /// The response as received (a `revisit` for a 304), with its index
    /// line's fields.
    fn response_member(&self, date: &str, id: &str, level: u32) -> Member {
        let f = self.fetched;
        let (payload, headers) = self.wire();
        let head = http_head(&self.status_line(), &headers);
        let not_modified = f.status == 304;
        let (block_digest, digest) = if not_modified {
            (None, String::new())
        } else {
            let (block, payload) = digests(&head, payload);
            (Some(block), payload)
        };
        // Whose record it is, where readers look for a record's own
        // metadata (Browsertrix's field): the WACZ of a crawl is cut by it.
        let crawl = serde_json::json!({"appid": self.owner.appid, "crawlid": self.owner.crawlid});
        let mut warc_headers = vec![
            ("WARC-Protocol", self.protocol()),
            ("WARC-JSON-Metadata", crawl.to_string()),
        ];
        let kind = if not_modified {
            warc_headers.push((
                "WARC-Profile",
                "http://netpreserve.org/warc/1.1/revisit/server-not-modified".into(),
            ));
            "revisit"
        } else {
            warc_headers.push(("WARC-Payload-Digest", digest.clone()));
            "response"
        };
        let block: Vec<&[u8]> = if not_modified {
            vec![&head]
        } else {
            vec![&head, payload]
        };
        let response = Record {
            kind,
            id: id.to_string(),
            date,
            target: Some(self.url),
            headers: warc_headers,
            content_type: "application/http; msgtype=response",
            block: &block,
            block_digest,
        };
        let mime = f
            .header("content-type")
            .and_then(|t| t.split(';').next())
            .unwrap_or("unk")
            .trim()
            .to_ascii_lowercase();
        let packed = f.encoded.is_some() || compressed_media(&mime);
        Member {
            bytes: response.gzip(if packed { 0 } else { level }),
            index: Some(IndexFields {
                url: self.url.to_string(),
                date: date.to_string(),
                mime,
                status: f.status,
                digest: (!not_modified).then_some(digest),
                kind,
                appid: self.owner.appid.clone(),
                crawlid: self.owner.crawlid.clone(),
            }),
        }
    }

    /// The protocol as `WARC-Protocol` names it (`h2`, `http/1.1`).
    fn protocol(&self) -> String {
        self.fetched
            .version
            .to_ascii_lowercase()
            .replace("http/2", "h2")
            .replace("http/3", "h3")
    }

    /// The status line, in HTTP/1.1 for an HTTP/2 or /3 response (which
    /// has none), as WARC readers expect one.
    fn status_line(&self) -> String {
        let f = self.fetched;
        format!(
            "{} {} {}",
            if f.version.starts_with("HTTP/1") {
                f.version
            } else {
                "HTTP/1.1"
            },
            f.status,
            f.reason
        )
    }

    /// The request as sent, concurrent to the response `id`.
    fn request_member(&self, date: &str, id: &str, redact: bool, level: u32) -> Member {
        let request = self.request_block(redact);
        let body = self.request_body.unwrap_or_default();
        Member {
            bytes: Record {
                kind: "request",
                id: record_id(),
                date,
                target: Some(self.url),
                headers: vec![("WARC-Concurrent-To", id.to_string())],
                content_type: "application/http; msgtype=request",
                block: &[&request, body],
                block_digest: None,
            }
            .gzip(level),
            index: None,
        }
    }

    /// What the crawl knew of the fetch, concurrent to the response `id`.
    fn metadata_member(&self, date: &str, id: String, level: u32) -> Member {
        let meta = self.metadata();
        Member {
            bytes: Record {
                kind: "metadata",
                id: record_id(),
                date,
                target: Some(self.url),
                headers: vec![("WARC-Concurrent-To", id)],
                content_type: "application/warc-fields",
                block: &[meta.as_bytes()],
                block_digest: None,
            }
            .gzip(level),
            index: None,
        }
    }

    /// The payload as sent and headers true to it: `Content-Encoding` and
    /// the length as received; `Transfer-Encoding` (the client took the
    /// chunks apart) and a length that does not match kept under
    /// `X-Crawler-` names, and the true length added, as Heritrix does.
    fn wire(&self) -> (&[u8], Vec<(String, String)>) {
        let f = self.fetched;
        let mut headers = f.headers.clone();
        let payload: &[u8] = match &f.encoded {
            Some(e) => {
                headers.push(("content-encoding".into(), e.content_encoding.clone()));
                if let Some(l) = &e.content_length {
                    headers.push(("content-length".into(), l.clone()));
                }
                &e.body
            }
            None => &f.body,
        };
        let mut has_length = false;
        for (k, v) in headers.iter_mut() {
            if k.eq_ignore_ascii_case("transfer-encoding") {
                *k = format!("X-Crawler-{k}");
            } else if k.eq_ignore_ascii_case("content-length") {
                if v.trim() == payload.len().to_string() {
                    has_length = true;
                } else {
                    *k = format!("X-Crawler-{k}");
                }
            }
        }
        if !has_length && f.status != 304 {
            headers.push(("Content-Length".into(), payload.len().to_string()));
        }
        (payload, headers)
    }

    fn request_block(&self, redact: bool) -> Vec<u8> {
        let url = url::Url::parse(self.url).ok();
        let target = url.as_ref().map_or("/".to_string(), |u| match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_string(),
        });
        let mut headers = Vec::with_capacity(self.fetched.request_headers.len() + 2);
        if let Some(u) = &url {
            let host = match u.port() {
                Some(p) => format!("{}:{p}", u.host_str().unwrap_or_default()),
                None => u.host_str().unwrap_or_default().to_string(),
            };
            headers.push(("Host".to_string(), host));
        }
        let mut encoding = false;
        for (k, v) in &self.fetched.request_headers {
            encoding |= k.eq_ignore_ascii_case("accept-encoding");
            let v = if redact && crate::fetch::is_credential_header(k) {
                "(redacted)".to_string()
            } else {
                v.clone()
            };
            headers.push((k.clone(), v));
        }
        if !encoding {
            headers.push((
                "Accept-Encoding".into(),
                crate::fetch::decode::ACCEPTED.into(),
            ));
        }
        http_head(&format!("{} {target} HTTP/1.1", self.method), &headers)
    }

    fn metadata(&self) -> String {
        let mut m = format!(
            "appid: {}\r\ncrawlid: {}\r\nspiderid: {}\r\ndepth: {}\r\nfetch-time-ms: {}\r\n",
            one_line(&self.owner.appid),
            one_line(&self.owner.crawlid),
            one_line(&self.owner.spiderid),
            self.owner.depth,
            self.fetched.elapsed.as_millis()
        );
        if let Some(v) = &self.owner.via {
            m.push_str(&format!("via: {}\r\n", one_line(v)));
        }
        m
    }
}

fn one_line(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

/// How the archive writes the time.
pub(super) enum Stamp {
    /// A `WARC-Date`: `2026-12-06T21:51:29.123456Z`.
    Warc,
    /// `datapackage.json`'s `created`: `2026-12-06T21:51:29Z`.
    Seconds,
    /// In a file name: `20261206215129123`.
    File,
}

/// Now, in UTC, as `stamp` says.
pub(super) fn now(stamp: Stamp) -> String {
    let t = time::OffsetDateTime::now_utc();
    let (y, mo, d) = (t.year(), t.month() as u8, t.day());
    let (h, mi, s) = (t.hour(), t.minute(), t.second());
    match stamp {
        Stamp::Warc => format!(
            "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:06}Z",
            t.microsecond()
        ),
        Stamp::Seconds => format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z"),
        Stamp::File => format!(
            "{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}{:03}",
            t.millisecond()
        ),
    }
}

/// The `warcinfo` record that opens a file.
pub(super) fn warcinfo(filename: &str) -> Vec<u8> {
    let fields = format!(
        "software: spinneret/{}\r\nformat: WARC File Format 1.1\r\nconformsTo: http://iipc.github.io/warc-specifications/specifications/warc-format/warc-1.1/\r\n",
        env!("CARGO_PKG_VERSION")
    );
    Record {
        kind: "warcinfo",
        id: record_id(),
        date: &now(Stamp::Warc),
        target: None,
        headers: vec![("WARC-Filename", filename.to_string())],
        content_type: "application/warc-fields",
        block: &[fields.as_bytes()],
        block_digest: None,
    }
    .gzip(1)
}

/// Media types whose bytes are compressed already (images but the
/// textual ones, audio, video, fonts, archives): deflate would only cost.
fn compressed_media(mime: &str) -> bool {
    let (kind, sub) = mime.split_once('/').unwrap_or((mime, ""));
    match kind {
        "image" => !matches!(sub, "svg+xml" | "bmp" | "x-icon" | "vnd.microsoft.icon"),
        "audio" | "video" => true,
        "font" => matches!(sub, "woff" | "woff2"),
        "application" => matches!(
            sub,
            "zip"
                | "gzip"
                | "x-gzip"
                | "zstd"
                | "x-bzip2"
                | "x-xz"
                | "x-7z-compressed"
                | "vnd.rar"
                | "pdf"
        ),
        _ => false,
    }
}
