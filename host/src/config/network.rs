//! `crawl.allow_networks`: address blocks, parsed when the settings load.

use serde::Deserialize;
use std::net::IpAddr;

/// An address block, `ip/prefix` (a bare address is one address).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(try_from = "String")]
pub struct Network {
    ip: IpAddr,
    bits: u32,
}

impl std::str::FromStr for Network {
    type Err = String;
    fn from_str(s: &str) -> Result<Network, String> {
        let (ip, bits) = s.split_once('/').unwrap_or((s, ""));
        let ip: IpAddr = ip
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an address or a CIDR block (like 10.1.0.0/16)"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            "" => max,
            b => b
                .parse()
                .ok()
                .filter(|b| *b <= max)
                .ok_or_else(|| format!("{s:?}: the prefix must be from 0 to {max}"))?,
        };
        Ok(Network { ip, bits })
    }
}

impl Network {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.ip, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - self.bits).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - self.bits).unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl TryFrom<String> for Network {
    type Error = String;
    /// Only `crawl.allow_networks` holds networks: the error names it.
    fn try_from(s: String) -> Result<Network, String> {
        s.parse().map_err(|e| format!("crawl.allow_networks: {e}"))
    }
}
