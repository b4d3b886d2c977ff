//! The SSRF guard: which addresses a webhook may never reach, and the operator's exemptions.
//!
//! The guard judges *addresses*, not names: a hostname is only as safe as what it resolves to at
//! connect time (see [`crate::resolver`]), so DNS rebinding cannot smuggle a private address in.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::error::OutboundError;

/// IPv4 networks a webhook may not reach: unspecified/"this network", private (RFC 1918), CGNAT,
/// loopback, link-local (which holds cloud metadata at 169.254.169.254), IETF protocol
/// assignments, benchmarking, multicast, and reserved (which includes broadcast).
const REFUSED_V4: &[(Ipv4Addr, u8)] = &[
    (Ipv4Addr::new(0, 0, 0, 0), 8),
    (Ipv4Addr::new(10, 0, 0, 0), 8),
    (Ipv4Addr::new(100, 64, 0, 0), 10),
    (Ipv4Addr::new(127, 0, 0, 0), 8),
    (Ipv4Addr::new(169, 254, 0, 0), 16),
    (Ipv4Addr::new(172, 16, 0, 0), 12),
    (Ipv4Addr::new(192, 0, 0, 0), 24),
    (Ipv4Addr::new(192, 168, 0, 0), 16),
    (Ipv4Addr::new(198, 18, 0, 0), 15),
    (Ipv4Addr::new(224, 0, 0, 0), 4),
    (Ipv4Addr::new(240, 0, 0, 0), 4),
];

/// IPv6 networks a webhook may not reach: unique-local, link-local and multicast. `::` and `::1`
/// are covered by the IPv4-compatible rule (they embed 0.0.0.0 and 0.0.0.1, both in 0.0.0.0/8),
/// but are listed anyway so the table reads as the policy.
const REFUSED_V6: &[(Ipv6Addr, u8)] = &[
    (Ipv6Addr::UNSPECIFIED, 128),
    (Ipv6Addr::LOCALHOST, 128),
    (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7),
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10),
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8),
];

/// The NAT64 well-known prefix (RFC 6052): a gateway translates `64:ff9b::a.b.c.d` to
/// `a.b.c.d`, so such an address is only as safe as the IPv4 address it embeds.
const NAT64_PREFIX: (Ipv6Addr, u8) = (Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96);

/// Whether `ip` lies in a range webhooks are refused, regardless of any allow-list.
pub fn is_refused(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_refused_v4(v4),
        IpAddr::V6(v6) => {
            if REFUSED_V6.iter().any(|&(net, len)| v6_contains(net, len, v6)) {
                return true;
            }
            // Mapped (::ffff:a.b.c.d), compatible (::a.b.c.d) and NAT64 addresses reach the
            // embedded IPv4 host, so they are judged by it.
            match embedded_v4(v6) {
                Some(v4) => is_refused_v4(v4),
                None => false,
            }
        }
    }
}

fn is_refused_v4(ip: Ipv4Addr) -> bool {
    REFUSED_V4.iter().any(|&(net, len)| v4_contains(net, len, ip))
}

/// The IPv4 address an IPv6 address stands for, if it is mapped, compatible or NAT64.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4() {
        // `to_ipv4` covers both ::ffff:0:0/96 (mapped) and ::/96 (compatible).
        return Some(v4);
    }
    let (net, len) = NAT64_PREFIX;
    if v6_contains(net, len, ip) {
        let [.., a, b, c, d] = ip.octets();
        return Some(Ipv4Addr::new(a, b, c, d));
    }
    None
}

fn v4_contains(net: Ipv4Addr, len: u8, ip: Ipv4Addr) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    u32::from(net) & mask == u32::from(ip) & mask
}

fn v6_contains(net: Ipv6Addr, len: u8, ip: Ipv6Addr) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    u128::from(net) & mask == u128::from(ip) & mask
}

/// One network of the allow-list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cidr {
    V4(Ipv4Addr, u8),
    V6(Ipv6Addr, u8),
}

impl Cidr {
    /// Parses `a.b.c.d/len` or `x:y::z/len`; a bare address means that single host.
    fn parse(entry: &str) -> Option<Self> {
        let entry = entry.trim();
        let (addr, len) = match entry.split_once('/') {
            Some((addr, len)) => (addr, Some(len.parse::<u8>().ok()?)),
            None => (entry, None),
        };
        match addr.parse::<IpAddr>().ok()? {
            IpAddr::V4(a) => {
                let len = len.unwrap_or(32);
                (len <= 32).then_some(Self::V4(a, len))
            }
            IpAddr::V6(a) => {
                let len = len.unwrap_or(128);
                (len <= 128).then_some(Self::V6(a, len))
            }
        }
    }

    fn contains(self, ip: IpAddr) -> bool {
        match (self, ip) {
            (Self::V4(net, len), IpAddr::V4(ip)) => v4_contains(net, len, ip),
            (Self::V6(net, len), IpAddr::V6(ip)) => v6_contains(net, len, ip),
            _ => false,
        }
    }
}

/// Refused ranges minus the operator's exemptions (`dispatcher.ssrf_allow`).
#[derive(Debug, Clone, Default)]
pub struct SsrfGuard {
    allow: Vec<Cidr>,
}

impl SsrfGuard {
    /// Builds the guard; the first entry that is not a CIDR (or bare address) is the error.
    pub fn new(allow: &[String]) -> Result<Self, OutboundError> {
        let allow = allow
            .iter()
            .map(|entry| Cidr::parse(entry).ok_or_else(|| OutboundError::InvalidAllowList { entry: entry.clone() }))
            .collect::<Result<_, _>>()?;
        Ok(Self { allow })
    }

    /// Whether a connection to `ip` may be made.
    pub fn permits(&self, ip: IpAddr) -> bool {
        if !is_refused(ip) {
            return true;
        }
        // An exemption written for the IPv4 network also covers its mapped/NAT64 spellings, so
        // "127.0.0.0/8" does what the operator means on a dual-stack resolver.
        let v4 = match ip {
            IpAddr::V6(v6) => embedded_v4(v6).map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        self.allow.iter().any(|net| net.contains(ip) || v4.is_some_and(|v4| net.contains(v4)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn refuses_every_listed_range() {
        let refused = [
            "0.0.0.0",
            "0.255.255.255",
            "10.0.0.1",
            "10.255.255.255",
            "100.64.0.1",
            "100.127.255.255",
            "127.0.0.1",
            "127.255.255.254",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf:ffff::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
        ];
        for s in refused {
            assert!(is_refused(ip(s)), "{s} should be refused");
            assert!(!SsrfGuard::default().permits(ip(s)), "{s} should not be permitted");
        }
    }

    #[test]
    fn permits_public_addresses_and_range_edges() {
        let public = [
            "93.184.216.34",
            "8.8.8.8",
            "1.1.1.1",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "128.0.0.1",
            "169.253.255.255",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.1",
            "192.167.255.255",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "2606:2800:220:1::",
            "2001:4860:4860::8888",
            "::ffff:93.184.216.34",
            "64:ff9b::808:808",
            "fbff:ffff::1",
            "fec0::1",
        ];
        for s in public {
            assert!(!is_refused(ip(s)), "{s} should be allowed");
            assert!(SsrfGuard::default().permits(ip(s)));
        }
    }

    #[test]
    fn allow_list_exempts_its_networks_only() {
        let guard = SsrfGuard::new(&["127.0.0.0/8".into(), "::1/128".into(), "10.1.2.3".into()]).unwrap();
        assert!(guard.permits(ip("127.0.0.1")));
        assert!(guard.permits(ip("127.10.0.1")));
        assert!(guard.permits(ip("::1")));
        assert!(guard.permits(ip("::ffff:127.0.0.1")), "mapped form follows the IPv4 exemption");
        assert!(guard.permits(ip("10.1.2.3")));
        assert!(!guard.permits(ip("10.1.2.4")));
        assert!(!guard.permits(ip("169.254.169.254")));
        assert!(!guard.permits(ip("fe80::1")));
    }

    #[test]
    fn invalid_allow_entries_are_named() {
        for bad in ["", "localhost", "127.0.0.0/33", "::1/129", "10.0.0.0/x", "10.0.0/8", "1.2.3.4/8/9"] {
            match SsrfGuard::new(&["127.0.0.0/8".into(), bad.into()]) {
                Err(OutboundError::InvalidAllowList { entry }) => assert_eq!(entry, bad),
                other => panic!("{bad:?} should be rejected, got {other:?}"),
            }
        }
        assert!(SsrfGuard::new(&["0.0.0.0/0".into(), "::/0".into(), " 10.0.0.0/8 ".into()]).is_ok());
    }

    #[test]
    fn zero_length_prefix_matches_everything() {
        let guard = SsrfGuard::new(&["0.0.0.0/0".into()]).unwrap();
        assert!(guard.permits(ip("127.0.0.1")));
        assert!(guard.permits(ip("::ffff:10.0.0.1")));
        assert!(!guard.permits(ip("fe80::1")));
    }
}
