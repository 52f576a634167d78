//! Registered domains (public suffix list): the unit of the throttle, of
//! credentials and of a rendered page's sub-requests; and origins
//! (scheme, host, port), the unit of a site's own pace (pauses, its
//! robots.txt's Crawl-delay, the learned rate).

/// The registered domain of a host: `news.bbc.co.uk` -> `bbc.co.uk`. IP
/// addresses and single labels are their own domain.
pub fn registered(host: &str) -> String {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host.parse::<std::net::IpAddr>().is_ok() || host.starts_with('[') {
        return host;
    }
    psl::domain_str(&host).map(str::to_string).unwrap_or(host)
}

/// The registered domain of a URL's host, or "" for a URL without one.
pub fn of_url(url: &str) -> String {
    url::Url::parse(url)
        .map(|u| of_parsed(&u))
        .unwrap_or_default()
}

/// The registered domain of a parsed URL's host, or "" without one.
pub fn of_parsed(url: &url::Url) -> String {
    url.host_str().map(registered).unwrap_or_default()
}

/// A URL's origin, `scheme://host[:port]` (the port when not the
/// scheme's default), or "" for a URL without a host.
pub fn origin_of(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) if u.host_str().is_some() => u.origin().ascii_serialization(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_registered_domains() {
        assert_eq!(registered("news.bbc.co.uk"), "bbc.co.uk");
        assert_eq!(registered("www.bbc.co.uk"), "bbc.co.uk");
        assert_eq!(registered("127.0.0.3"), "127.0.0.3");
        assert_eq!(of_url("http://Sub.Example.COM:8080/x"), "example.com");
        assert_eq!(
            origin_of("http://Sub.Example.COM:8080/x"),
            "http://sub.example.com:8080"
        );
        assert_eq!(
            origin_of("https://a.example.com:443/"),
            "https://a.example.com"
        );
        assert_eq!(origin_of("not a url"), "");
    }
}
