//! Registered domains (public suffix list): the unit of politeness, of
//! credentials and of a rendered page's sub-requests.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_registered_domains() {
        assert_eq!(registered("news.bbc.co.uk"), "bbc.co.uk");
        assert_eq!(registered("www.bbc.co.uk"), "bbc.co.uk");
        assert_eq!(registered("127.0.0.3"), "127.0.0.3");
        assert_eq!(of_url("http://Sub.Example.COM:8080/x"), "example.com");
    }
}
