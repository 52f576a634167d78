//! Address policy: by default no fetch reaches loopback, private,
//! link-local or other non-public addresses. Checked on IP literals before a
//! request and on every redirect hop, and on every DNS answer (so a public
//! name that resolves to 127.0.0.1 is refused too).

use super::FetchError;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use url::{Host, Url};

const HINT: &str = "pass --allow-private (or set crawl.allow_private = true) to crawl loopback, private and link-local addresses";

#[derive(Debug, Clone)]
pub struct AddressPolicy {
    allow_private: bool,
}

impl AddressPolicy {
    pub fn new(allow_private: bool) -> Self {
        AddressPolicy { allow_private }
    }

    /// Refuse a URL whose host is a non-public IP literal.
    pub fn check_literal(&self, url: &Url) -> Result<(), FetchError> {
        let ip = match url.host() {
            Some(Host::Ipv4(ip)) => IpAddr::V4(ip),
            Some(Host::Ipv6(ip)) => IpAddr::V6(ip),
            _ => return Ok(()),
        };
        self.check_ip(ip)
            .map_err(|kind| FetchError::Refused(format!("refusing {url}: {ip} is {kind}; {HINT}")))
    }

    /// Refuse a URL whose host is, or resolves to, a non-public address.
    pub async fn check_url(&self, url: &Url) -> Result<(), FetchError> {
        self.check_literal(url)?;
        if let Some(Host::Domain(name)) = url.host() {
            self.resolve(name).await?;
        }
        Ok(())
    }

    fn check_ip(&self, ip: IpAddr) -> Result<(), &'static str> {
        if self.allow_private {
            return Ok(());
        }
        match classify(ip) {
            None => Ok(()),
            Some(kind) => Err(kind),
        }
    }

    async fn resolve(&self, name: &str) -> Result<Vec<SocketAddr>, FetchError> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name, 0))
            .await
            .map_err(|e| FetchError::Network(format!("cannot resolve {name}: {e}")))?
            .collect();
        let allowed: Vec<SocketAddr> = addrs
            .iter()
            .copied()
            .filter(|a| self.check_ip(a.ip()).is_ok())
            .collect();
        if allowed.is_empty() {
            let (ip, kind) = addrs
                .first()
                .and_then(|a| classify(a.ip()).map(|k| (a.ip(), k)))
                .unwrap_or((IpAddr::V4(Ipv4Addr::UNSPECIFIED), "not public"));
            return Err(FetchError::Refused(format!(
                "refusing {name}: it resolves to {ip}, which is {kind}; {HINT}"
            )));
        }
        Ok(allowed)
    }

    pub fn resolver(&self) -> PolicyResolver {
        PolicyResolver {
            policy: self.clone(),
        }
    }
}

/// reqwest's DNS hook: resolve, then drop what the policy refuses.
pub struct PolicyResolver {
    policy: AddressPolicy,
}

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let addrs = policy
                .resolve(name.as_str())
                .await
                .map_err(|e| Box::new(e) as Box<_>)?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Why an address is not public, or `None` if it is.
pub fn classify(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return classify_v4(v4);
            }
            classify_v6(v6)
        }
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_private() {
        Some("a private address")
    } else if ip.is_link_local() {
        Some("a link-local address")
    } else if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || o[0] == 0 {
        Some("not a unicast address")
    } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
        Some("a shared (carrier-grade NAT) address")
    } else {
        None
    }
}

fn classify_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if ip.is_loopback() {
        Some("a loopback address")
    } else if (s[0] & 0xffc0) == 0xfe80 {
        Some("a link-local address")
    } else if (s[0] & 0xfe00) == 0xfc00 {
        Some("a private (unique local) address")
    } else if ip.is_unspecified() || ip.is_multicast() {
        Some("not a unicast address")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_non_public_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "100.64.0.1",
        ] {
            assert!(
                classify(ip.parse().expect("ip")).is_some(),
                "{ip} should be refused"
            );
        }
        for ip in ["93.184.216.34", "2606:2800:220:1::1", "8.8.8.8"] {
            assert!(
                classify(ip.parse().expect("ip")).is_none(),
                "{ip} should be allowed"
            );
        }
    }

    #[test]
    fn literal_check_names_the_way_out() {
        let p = AddressPolicy::new(false);
        let url = Url::parse("http://127.0.0.1:8080/").expect("url");
        let msg = p.check_literal(&url).expect_err("refused").to_string();
        assert!(
            msg.contains("loopback") && msg.contains("--allow-private"),
            "{msg}"
        );
        assert!(AddressPolicy::new(true).check_literal(&url).is_ok());
    }

    #[tokio::test]
    async fn names_resolving_to_loopback_are_refused() {
        let p = AddressPolicy::new(false);
        let url = Url::parse("http://localhost:9/").expect("url");
        let err = p.check_url(&url).await.expect_err("refused");
        assert!(matches!(err, FetchError::Refused(_)), "{err}");
    }
}
