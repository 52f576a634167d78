//! Queue keys and throttle keys, by registered domain.

use crate::config::Throttle as ThrottleSettings;

// A URL's registered domain is a URL rule, used by the rendering tier
// too: it lives with the other URL rules.
pub use crate::links::domain::{of_parsed, of_url, registered};

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
    fn throttle_keys_split_as_configured() {
        let mut s = ThrottleSettings::default();
        assert_eq!(throttle_key(&s, "link", "a.com"), "link|a.com");
        s.split_by_spider = false;
        s.split_by_egress = true;
        s.egress_id = "eu1".into();
        assert_eq!(throttle_key(&s, "link", "a.com"), "eu1|a.com");
    }
}
