//! Registered domains (public suffix list), queue keys and throttle keys.

use crate::config::Throttle as ThrottleSettings;

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

/// The throttle bucket a fetch of `domain` by `spider` counts against.
pub fn throttle_key(settings: &ThrottleSettings, spider: &str, domain: &str) -> String {
    let mut key = String::with_capacity(domain.len() + spider.len() + 8);
    if settings.split_by_egress {
        key.push_str(&settings.egress_id);
        key.push('|');
    }
    if settings.split_by_spider {
        key.push_str(spider);
        key.push('|');
    }
    key.push_str(domain);
    key
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

    #[test]
    fn throttle_keys_split_as_configured() {
        let mut s = ThrottleSettings::default();
        assert_eq!(throttle_key(&s, "link", "a.com"), "link|a.com");
        s.split_by_spider = false;
        s.split_by_egress = true;
        s.egress_id = "eu1".into();
        assert_eq!(throttle_key(&s, "link", "a.com"), "eu1|a.com");
    }
}
