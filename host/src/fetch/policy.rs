//! Address policy: by default no fetch reaches loopback, private,
//! link-local or other non-public addresses. Checked on IP literals before a
//! request and on every redirect hop, and on every DNS answer (so a public
//! name that resolves to 127.0.0.1 is refused too).

use super::FetchError;
use crate::config::Network;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use url::{Host, Url};

const HINT: &str = "pass --allow-private (or set crawl.allow_private = true) to crawl loopback, private and link-local addresses";

#[derive(Debug, Clone)]
pub struct AddressPolicy {
    allow_private: bool,
    /// Non-public networks allowed anyway (`crawl.allow_networks`).
    networks: Vec<Network>,
}

impl AddressPolicy {
    pub fn new(allow_private: bool) -> Self {
        Self::with_networks(allow_private, Vec::new())
    }

    /// A policy that also allows `networks` (validated settings).
    pub fn with_networks(allow_private: bool, networks: Vec<Network>) -> Self {
        AddressPolicy {
            allow_private,
            networks,
        }
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
        if self.allow_private || self.networks.iter().any(|n| n.contains(ip)) {
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

/// Why an address is not public, or `None` if it is: every range of the
/// IANA IPv4 and IPv6 special-purpose registries that is not globally
/// reachable, and IPv6 forms that wrap an IPv4 address (mapped,
/// compatible, NAT64, 6to4) by the address they wrap.
pub fn classify(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    let within = |net: [u8; 4], bits: u32| {
        // A /0 network shifts by 32, which overflows: its mask has no bits.
        let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
        u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
    };
    if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_private() {
        Some("a private address")
    } else if ip.is_link_local() {
        Some("a link-local address")
    } else if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || o[0] == 0 {
        Some("not a unicast address")
    } else if within([100, 64, 0, 0], 10) {
        Some("a shared (carrier-grade NAT) address")
    } else if within([192, 0, 0, 0], 24) || within([192, 88, 99, 0], 24) {
        Some("a protocol-assignment address")
    } else if within([192, 0, 2, 0], 24)
        || within([198, 51, 100, 0], 24)
        || within([203, 0, 113, 0], 24)
    {
        Some("a documentation address")
    } else if within([198, 18, 0, 0], 15) {
        Some("a benchmarking address")
    } else if within([240, 0, 0, 0], 4) {
        Some("a reserved address")
    } else {
        None
    }
}

fn classify_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    // The IPv4 address in the low 32 bits.
    let low_v4 = || Ipv4Addr::from((u32::from(s[6]) << 16) | u32::from(s[7]));
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_unspecified() || ip.is_multicast() {
        Some("not a unicast address")
    } else if s[..6] == [0; 6] {
        // ::a.b.c.d, deprecated IPv4-compatible: never routed.
        Some("an IPv4-compatible address")
    } else if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        // NAT64 well-known prefix: as public as the IPv4 address it wraps.
        classify_v4(low_v4())
    } else if s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1 {
        Some("a local-use NAT64 address")
    } else if s[0] == 0x2002 {
        // 6to4: the IPv4 address is in the second and third segments.
        classify_v4(Ipv4Addr::from((u32::from(s[1]) << 16) | u32::from(s[2])))
    } else if (s[0] & 0xffc0) == 0xfe80 {
        Some("a link-local address")
    } else if (s[0] & 0xffc0) == 0xfec0 {
        Some("a site-local address")
    } else if (s[0] & 0xfe00) == 0xfc00 {
        Some("a private (unique local) address")
    } else if s[0] == 0x100 && s[1..4] == [0, 0, 0] {
        Some("a discard-only address")
    } else if s[0] == 0x2001 && s[1] == 0xdb8 || (s[0] == 0x3fff && s[1] < 0x1000) {
        Some("a documentation address")
    } else if s[0] == 0x2001 && s[1] < 0x200 {
        // 2001::/23, IETF protocol assignments (Teredo, ORCHID, ...).
        Some("a protocol-assignment address")
    } else if s[0] == 0x5f00 {
        Some("a segment-routing address")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One address per special-purpose range that is not globally
    /// reachable (IANA registries), and the IPv6 forms that wrap them.
    #[test]
    fn every_special_purpose_range_is_refused() {
        let refused = [
            "0.1.2.3",
            "10.1.2.3",
            "100.64.0.1",
            "127.0.0.1",
            "169.254.169.254",
            "172.16.0.1",
            "192.0.0.8",
            "192.0.2.1",
            "192.88.99.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.1",
            "198.51.100.1",
            "203.0.113.1",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "::8.8.8.8",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "100::1",
            "2001::1",
            "2001:2::1",
            "2001:10::1",
            "2001:db8::1",
            "2002:7f00:1::1",
            "2002:c0a8:101::1",
            "3fff::1",
            "5f00::1",
            "fc00::1",
            "fd00::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
        ];
        for ip in refused {
            assert!(
                classify(ip.parse().expect("ip")).is_some(),
                "{ip} should be refused"
            );
        }
        let public = [
            "8.8.8.8",
            "93.184.216.34",
            "192.31.196.1",
            "2606:2800:220:1::1",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "2a00:1450::1",
        ];
        for ip in public {
            assert!(
                classify(ip.parse().expect("ip")).is_none(),
                "{ip} should be allowed"
            );
        }
    }

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
        let nets = ["127.0.0.2", "10.1.0.0/16"].map(|n| n.parse().expect("network"));
        let p = AddressPolicy::with_networks(false, nets.to_vec());
        for ok in ["http://127.0.0.2:8/", "http://10.1.200.3/"] {
            assert!(
                p.check_literal(&Url::parse(ok).expect("url")).is_ok(),
                "{ok}"
            );
        }
        for refused in ["http://127.0.0.1:8/", "http://10.2.0.1/", "http://[::1]/"] {
            assert!(
                p.check_literal(&Url::parse(refused).expect("url")).is_err(),
                "{refused}"
            );
        }
        assert!("10.0.0.0/33".parse::<Network>().is_err());
        assert!("localhost".parse::<Network>().is_err());
    }

    #[tokio::test]
    async fn names_resolving_to_loopback_are_refused() {
        let p = AddressPolicy::new(false);
        let url = Url::parse("http://localhost:9/").expect("url");
        let err = p.check_url(&url).await.expect_err("refused");
        assert!(matches!(err, FetchError::Refused(_)), "{err}");
    }
}
