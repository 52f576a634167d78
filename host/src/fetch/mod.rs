//! The fetcher: one reqwest client (rustls) with connect and total
//! timeouts, a redirect limit, a body cap, the address policy applied
//! after DNS and on every redirect hop, and content decoding of its own
//! (`decode.rs`: the bytes as sent are kept for the archive). A response
//! is read, bounded and decoded in `read.rs`.

pub mod decode;
mod policy;
mod read;
mod robots;
pub mod sitemap;

pub use policy::AddressPolicy;
pub use robots::{Robots, RobotsCache};

use crate::config::Crawl as CrawlSettings;
use bytes::Bytes;
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;
use url::Url;

#[derive(Debug, Error, Clone)]
pub enum FetchError {
    /// The address policy refused the target; never retried.
    #[error("{0}")]
    Refused(String),
    #[error("invalid URL {0}")]
    InvalidUrl(String),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("network error: {0}")]
    Network(String),
    #[error("too many redirects (limit {0})")]
    TooManyRedirects(usize),
    #[error("body larger than crawl.max_body_bytes ({limit} bytes)")]
    TooLarge { limit: usize, status: u16 },
}

impl FetchError {
    /// Network trouble is worth another try; policy and size are not.
    pub fn retryable(&self) -> bool {
        matches!(self, FetchError::Timeout(_) | FetchError::Network(_))
    }
}

/// HTTP statuses the contract retries (§3).
pub fn retryable_status(code: u16) -> bool {
    matches!(code, 500 | 502 | 503 | 504 | 522 | 524 | 408)
}

/// What goes out.
pub struct Outgoing<'a> {
    pub url: &'a str,
    pub method: &'a str,
    pub headers: &'a [(String, String)],
    pub body: Option<&'a [u8]>,
    /// Follow redirects here (robots.txt). Crawl requests do not: a
    /// redirect comes back with the next hop's request (see
    /// [`Fetched::redirect`]), and the crawl queues it as a request of its
    /// own, throttled like any other.
    pub follow_redirects: bool,
    /// Redirect hops already taken to get here (the limit spans them all).
    pub redirects: usize,
    /// Stop reading the body after this many bytes and keep what came
    /// (robots.txt); `None`: a body over `max_body_bytes` fails the fetch.
    pub truncate_at: Option<usize>,
    /// Bytes several fetches share (a rendered page's sub-requests): each
    /// chunk read is taken from it, and a body it cannot cover fails.
    pub budget: Option<&'a ByteBudget>,
}

/// A byte allowance drawn down by the bodies read against it.
#[derive(Debug)]
pub struct ByteBudget {
    total: usize,
    left: std::sync::atomic::AtomicUsize,
}

impl ByteBudget {
    pub fn new(total: usize) -> ByteBudget {
        ByteBudget {
            total,
            left: total.into(),
        }
    }

    /// Take `n` bytes, or nothing if fewer are left.
    pub fn take(&self, n: usize) -> bool {
        use std::sync::atomic::Ordering::SeqCst;
        self.left
            .fetch_update(SeqCst, SeqCst, |left| left.checked_sub(n))
            .is_ok()
    }
}

/// What came back.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub status: u16,
    pub reason: String,
    pub response_url: String,
    pub request_headers: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub elapsed: Duration,
    /// For a redirect that was not followed: the next hop's request, made
    /// by the browser rules of [`Hop::redirect`], or why there is none
    /// (the redirect limit, a scheme we do not fetch).
    pub redirect: Option<Result<Hop, FetchError>>,
    /// `body` is the DOM a headless browser built from the response
    /// (UTF-8, `content-type` says so), not the response itself.
    pub rendered: bool,
    /// The body as the server sent it, when it came content-encoded and
    /// `body` is decoded (`headers` then lack `content-encoding` and
    /// `content-length`, which describe these bytes: they are kept here).
    pub encoded: Option<Encoded>,
    /// The HTTP version it came in: `HTTP/1.1`, `HTTP/2`.
    pub version: &'static str,
    /// Where the archive wrote it, when one did.
    pub archived: Option<Archived>,
}

/// Where a response's record is in the archive (`crate::archive` writes
/// it; the fetch carries it to its result as `warc`). `file` is relative
/// to `warc.dir` and names the file as sealed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Archived {
    pub file: String,
    pub offset: u64,
    pub length: u64,
}

/// A response body as sent, content-encoded, with the headers about it.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub body: Bytes,
    pub content_encoding: String,
    pub content_length: Option<String>,
}

impl Fetched {
    /// A response made without a fetch (a recorded page, a bench's or a
    /// test's): plain HTTP/1.1, not redirected, rendered or encoded.
    pub fn recorded(
        status: u16,
        response_url: String,
        headers: Vec<(String, String)>,
        body: Bytes,
    ) -> Fetched {
        Fetched {
            status,
            reason: String::new(),
            response_url,
            request_headers: Vec::new(),
            headers,
            body,
            elapsed: Duration::ZERO,
            redirect: None,
            rendered: false,
            encoded: None,
            version: "HTTP/1.1",
            archived: None,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    policy: AddressPolicy,
    max_body: usize,
    timeout: Duration,
    max_redirects: usize,
    /// A proxy is configured: it resolves targets itself, so each hop is
    /// resolved and checked here first.
    proxied: bool,
}

impl Fetcher {
    pub fn new(settings: &CrawlSettings) -> Result<Self, reqwest::Error> {
        let policy =
            AddressPolicy::with_networks(settings.allow_private, settings.allow_networks.clone());
        let timeout = settings.download_timeout;
        let builder = reqwest::Client::builder()
            .user_agent(settings.user_agent.clone())
            // Bodies are decoded here, bounded, and kept as sent too.
            .no_gzip()
            .no_brotli()
            .no_deflate()
            .connect_timeout(settings.connect_timeout)
            .read_timeout(settings.read_timeout)
            .timeout(timeout)
            .tcp_nodelay(true)
            .pool_max_idle_per_host(64)
            .dns_resolver(Arc::new(policy.resolver()))
            // Redirects are followed below, each hop checked by the policy.
            .redirect(reqwest::redirect::Policy::none());
        // Only the configured proxy: one from the environment (HTTP_PROXY,
        // ALL_PROXY, ...) would resolve targets out of the policy's reach.
        let client = match settings.proxy.as_str() {
            "" => builder.no_proxy(),
            proxy => builder.no_proxy().proxy(reqwest::Proxy::all(proxy)?),
        }
        .build()?;
        Ok(Fetcher {
            client,
            policy,
            max_body: settings.max_body_bytes,
            timeout,
            max_redirects: settings.max_redirects,
            proxied: !settings.proxy.is_empty(),
        })
    }

    pub fn policy(&self) -> &AddressPolicy {
        &self.policy
    }

    pub async fn fetch(&self, out: &Outgoing<'_>) -> Result<Fetched, FetchError> {
        let started = Instant::now();
        let mut hop = Hop {
            url: Url::parse(out.url).map_err(|_| FetchError::InvalidUrl(out.url.to_string()))?,
            method: reqwest::Method::from_bytes(out.method.as_bytes()).map_err(|_| {
                FetchError::InvalidUrl(format!("{} (bad method {})", out.url, out.method))
            })?,
            headers: out.headers.to_vec(),
            body: out.body.map(<[u8]>::to_vec),
        };
        for taken in out.redirects..=self.max_redirects {
            if self.proxied {
                self.policy.check_url(&hop.url).await?;
            } else {
                self.policy.check_literal(&hop.url)?;
            }
            let mut req = self.client.request(hop.method.clone(), hop.url.clone());
            for (k, v) in &hop.headers {
                req = req.header(k.as_str(), v.as_str());
            }
            if !hop
                .headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("accept-encoding"))
            {
                req = req.header("accept-encoding", decode::ACCEPTED);
            }
            if let Some(b) = &hop.body {
                req = req.body(b.clone());
            }
            let resp = req.send().await.map_err(|e| self.classify(e))?;
            let status = resp.status().as_u16();
            let location = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok());
            let next = resp
                .status()
                .is_redirection()
                .then(|| location.and_then(|l| hop.url.join(l).ok()))
                .flatten();
            match next {
                Some(next) if out.follow_redirects => hop = hop.redirect(status, next)?,
                Some(next) => {
                    let redirect = if taken < self.max_redirects {
                        hop.redirect(status, next)
                    } else {
                        Err(FetchError::TooManyRedirects(self.max_redirects))
                    };
                    return self.read(resp, out, started, Some(redirect)).await;
                }
                None => return self.read(resp, out, started, None).await,
            }
        }
        Err(FetchError::TooManyRedirects(self.max_redirects))
    }

    fn classify(&self, e: reqwest::Error) -> FetchError {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(err) = source {
            if let Some(f) = err.downcast_ref::<FetchError>() {
                return f.clone();
            }
            source = err.source();
        }
        if e.is_timeout() {
            FetchError::Timeout(self.timeout)
        } else {
            FetchError::Network(error_chain(&e))
        }
    }
}

/// One request of a redirect chain.
#[derive(Debug, Clone)]
pub struct Hop {
    pub url: Url,
    pub method: reqwest::Method,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

impl Hop {
    /// The request that follows a `status` redirect to `next`, as browsers
    /// do it: 303 (and 301/302 after a POST) become a GET without body, and
    /// credentials do not follow a redirect to another host.
    pub fn redirect(mut self, status: u16, next: Url) -> Result<Hop, FetchError> {
        if !matches!(next.scheme(), "http" | "https") {
            return Err(FetchError::InvalidUrl(format!("redirect to {next}")));
        }
        // A `Location` is a URL from outside: the same cap as any other.
        if next.as_str().len() > crate::links::MAX_URL_BYTES {
            return Err(FetchError::InvalidUrl(format!(
                "redirect to a URL of {} bytes, longer than the {} allowed",
                next.as_str().len(),
                crate::links::MAX_URL_BYTES
            )));
        }
        if status == 303 || (matches!(status, 301 | 302) && self.method == reqwest::Method::POST) {
            self.method = reqwest::Method::GET;
            self.body = None;
        }
        if next.host_str() != self.url.host_str() {
            self.headers.retain(|(k, _)| !is_credential_header(k));
        }
        self.url = next;
        Ok(self)
    }
}

/// Request headers that carry credentials: they stay on their host across
/// a redirect, go only to the crawl's own site, and are not published.
pub fn is_credential_header(name: &str) -> bool {
    ["cookie", "authorization", "proxy-authorization"]
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h))
}

/// An error and its causes on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// The body's character set: Content-Type, then `<meta charset>` in the
/// first KiB, then UTF-8.
pub fn encoding_of(content_type: Option<&str>, body: &[u8]) -> &'static encoding_rs::Encoding {
    if let Some(e) = content_type.and_then(|ct| charset_after(ct, "charset=")) {
        return e;
    }
    let head = String::from_utf8_lossy(&body[..body.len().min(1024)]);
    if head.to_ascii_lowercase().contains("<meta") {
        if let Some(e) = charset_after(&head, "charset") {
            return e;
        }
    }
    encoding_rs::UTF_8
}

/// The encoding named right after `marker` (case-insensitive) in `text`.
fn charset_after(text: &str, marker: &str) -> Option<&'static encoding_rs::Encoding> {
    let lower = text.to_ascii_lowercase();
    let at = lower.find(marker)? + marker.len();
    let label: String = lower[at..]
        .trim_start_matches(['=', ' ', '"', '\''])
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':' | '.'))
        .collect();
    encoding_rs::Encoding::for_label(label.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_byte_budget_gives_what_it_has_and_no_more() {
        let b = ByteBudget::new(10);
        assert!(b.take(6));
        assert!(!b.take(5), "only 4 left");
        assert!(b.take(4));
        assert!(!b.take(1));
        assert!(b.take(0));
    }

    #[test]
    fn a_redirect_location_is_held_to_the_url_cap() {
        let hop = || Hop {
            url: Url::parse("http://a.example/").expect("url"),
            method: reqwest::Method::GET,
            headers: Vec::new(),
            body: None,
        };
        let long = format!(
            "http://a.example/{}",
            "x".repeat(crate::links::MAX_URL_BYTES)
        );
        let e = hop()
            .redirect(302, Url::parse(&long).expect("url"))
            .expect_err("too long");
        assert!(
            e.to_string().contains("longer than the 8192 allowed"),
            "{e}"
        );
        let fine = Url::parse("http://a.example/next").expect("url");
        assert_eq!(hop().redirect(302, fine.clone()).expect("fine").url, fine);
    }

    /// Through a configured proxy, targets are still resolved and checked
    /// here (the proxy would resolve them itself), and allowed ones do go
    /// through the proxy.
    #[tokio::test]
    async fn through_a_proxy_targets_are_still_checked() {
        let proxy = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = proxy.local_addr().expect("addr");
        let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = seen.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = proxy.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                drop(sock);
            }
        });
        let get = |url: &'static str| Outgoing {
            url,
            method: "GET",
            headers: &[],
            body: None,
            follow_redirects: false,
            redirects: 0,
            truncate_at: None,
            budget: None,
        };
        let mut settings = CrawlSettings {
            proxy: format!("http://{addr}"),
            allow_private: false,
            ..CrawlSettings::default()
        };
        let strict = Fetcher::new(&settings).expect("fetcher");
        for url in ["http://localhost:9/", "http://127.0.0.1:9/"] {
            let err = strict.fetch(&get(url)).await.expect_err("refused");
            assert!(matches!(err, FetchError::Refused(_)), "{url}: {err}");
        }
        assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 0);
        settings.allow_private = true;
        let open = Fetcher::new(&settings).expect("fetcher");
        let _ = open.fetch(&get("http://127.0.0.1:9/")).await;
        assert!(
            seen.load(std::sync::atomic::Ordering::SeqCst) >= 1,
            "the proxy was not used"
        );
    }

    #[test]
    fn retry_classes_follow_the_contract() {
        for code in [500, 502, 503, 504, 522, 524, 408] {
            assert!(retryable_status(code));
        }
        assert!(!retryable_status(404) && !retryable_status(200));
        assert!(FetchError::Network("reset".into()).retryable());
        assert!(!FetchError::Refused("no".into()).retryable());
    }

    #[test]
    fn finds_the_charset() {
        assert_eq!(
            encoding_of(Some("text/html; charset=ISO-8859-1"), b""),
            encoding_rs::WINDOWS_1252
        );
        assert_eq!(
            encoding_of(None, b"<meta charset=\"shift_jis\">"),
            encoding_rs::SHIFT_JIS
        );
        assert_eq!(encoding_of(Some("text/html"), b"<p>"), encoding_rs::UTF_8);
    }
}
