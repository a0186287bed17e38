//! Who the client is, for throttling and fair hashing: the TCP peer's address, or, only when
//! the peer is a configured trusted proxy (TRUSTED_PROXIES), the address the proxy says it
//! forwarded for: the rightmost hop that is not itself a trusted proxy, in the one header the
//! proxies are configured to append to (TRUSTED_PROXY_HEADER: `X-Forwarded-For` by default,
//! or RFC 7239 `Forwarded`). The other header is never read: a proxy that appends to one
//! passes the other through as the client wrote it.

use crate::fair::ClientKey;
use std::net::{IpAddr, SocketAddr};
use tonic::metadata::MetadataMap;

/// An IP network in CIDR notation, e.g. `10.0.0.0/8` or `fd00::/8` (a bare address is /32
/// or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        let invalid = || format!("{raw:?} is not a CIDR like 10.0.0.0/8, 192.168.1.7 or fd00::/8");
        let (address, prefix) = match raw.trim().split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (raw.trim(), None),
        };
        let network: IpAddr = address.parse().map_err(|_| invalid())?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(prefix) => prefix.parse::<u8>().map_err(|_| invalid())?,
            None => max,
        };
        if prefix > max {
            return Err(invalid());
        }
        Ok(Self { network, prefix })
    }
}

impl Cidr {
    /// Whether `ip` is in this network (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let (bits, network, ip) = match (self.network, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                (32, u128::from(n.to_bits()), u128::from(a.to_bits()))
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => (128, n.to_bits(), a.to_bits()),
            _ => return false,
        };
        let host_bits = bits - u32::from(self.prefix);
        host_bits >= 128 || network >> host_bits == ip >> host_bits
    }
}

/// The header trusted proxies append the client's address to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ForwardingHeader {
    /// `X-Forwarded-For: client, proxy1, …` (nginx `$proxy_add_x_forwarded_for`, envoy).
    #[default]
    #[value(name = "x-forwarded-for")]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for=proxy1` .
    #[value(name = "forwarded")]
    Forwarded,
}

/// The proxies whose forwarding header is believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    proxies: Vec<Cidr>,
    header: ForwardingHeader,
}

impl TrustedProxies {
    /// Trusts `proxies` (none: only TCP peers count) about `header`.
    pub fn new(proxies: Vec<Cidr>, header: ForwardingHeader) -> Self {
        Self { proxies, header }
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.proxies.iter().any(|cidr| cidr.contains(ip))
    }

    /// The client of a request from `peer` with `metadata`.
    pub fn client(&self, peer: Option<SocketAddr>, metadata: &MetadataMap) -> ClientKey {
        let Some(peer) = peer.map(|p| p.ip()) else {
            return ClientKey::unknown();
        };
        if !self.trusts(peer) {
            return ClientKey::from_ip(peer);
        }
        // Hops in the order they were added, the nearest last; if every hop is a trusted
        // proxy, the request came from inside: the peer it is.
        let hops: Vec<IpAddr> = forwarded_for(metadata, self.header);
        let client = hops
            .iter()
            .rev()
            .copied()
            .find(|hop| !self.trusts(*hop))
            .unwrap_or(peer);
        ClientKey::from_ip(client)
    }
}

/// The addresses of `header`, in order (`for=` parameters of `Forwarded`).
fn forwarded_for(metadata: &MetadataMap, header: ForwardingHeader) -> Vec<IpAddr> {
    let values = |name: &str| -> Vec<String> {
        metadata
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|hop| hop.trim().to_owned())
            .collect()
    };
    match header {
        ForwardingHeader::Forwarded => values("forwarded")
            .iter()
            .filter_map(|element| {
                element.split(';').find_map(|pair| {
                    let (name, value) = pair.split_once('=')?;
                    name.trim()
                        .eq_ignore_ascii_case("for")
                        .then(|| parse_node(value))?
                })
            })
            .collect(),
        ForwardingHeader::XForwardedFor => values("x-forwarded-for")
            .iter()
            .filter_map(|hop| parse_node(hop))
            .collect(),
    }
}

/// An address of a forwarding header: `192.0.2.7`, `192.0.2.7:4711`, `"[2001:db8::1]:4711"`.
fn parse_node(raw: &str) -> Option<IpAddr> {
    let raw = raw.trim().trim_matches('"');
    if let Ok(ip) = raw.parse() {
        return Some(ip);
    }
    if let Some(rest) = raw.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    raw.parse::<SocketAddr>().ok().map(|a| a.ip())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn metadata(headers: &[(&'static str, &'static str)]) -> MetadataMap {
        let mut md = MetadataMap::new();
        for (name, value) in headers {
            md.append(*name, value.parse().unwrap());
        }
        md
    }

    fn key(ip: &str) -> ClientKey {
        ClientKey::from_ip(ip.parse().unwrap())
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let trusted = vec!["10.0.0.0/8".parse().unwrap()];
        let proxies = TrustedProxies::new(trusted, ForwardingHeader::XForwardedFor);
        let peer = Some("203.0.113.9:5000".parse().unwrap());
        let md = metadata(&[("x-forwarded-for", "198.51.100.1")]);
        assert_eq!(proxies.client(peer, &md), key("203.0.113.9"));
    }

    #[test]
    fn a_trusted_proxy_is_believed_for_the_rightmost_untrusted_hop_of_its_header_only() {
        let trusted: Vec<Cidr> = vec!["10.0.0.0/8".parse().unwrap()];
        let proxies = TrustedProxies::new(trusted.clone(), ForwardingHeader::XForwardedFor);
        let peer = Some("10.1.2.3:5000".parse().unwrap());
        // The client forged the first entry and a whole Forwarded header; 198.51.100.7 is
        // what our proxies saw.
        let md = metadata(&[
            ("x-forwarded-for", "1.2.3.4, 198.51.100.7, 10.9.9.9"),
            ("forwarded", "for=203.0.113.66"),
        ]);
        assert_eq!(proxies.client(peer, &md), key("198.51.100.7"));
        let rfc7239 = TrustedProxies::new(trusted, ForwardingHeader::Forwarded);
        let md = metadata(&[
            (
                "forwarded",
                "for=1.2.3.4, for=\"[2001:db8::7]:4711\";proto=https",
            ),
            ("x-forwarded-for", "203.0.113.66"),
        ]);
        assert_eq!(rfc7239.client(peer, &md), key("2001:db8::7"));
        // Every hop a trusted proxy: the peer.
        let md = metadata(&[("x-forwarded-for", "10.0.0.1")]);
        assert_eq!(proxies.client(peer, &md), key("10.1.2.3"));
        // No header: the proxy itself.
        assert_eq!(proxies.client(peer, &MetadataMap::new()), key("10.1.2.3"));
    }

    #[test]
    fn cidrs_parse_and_match_both_families() {
        let v4: Cidr = "192.168.0.0/16".parse().unwrap();
        assert!(v4.contains("192.168.4.2".parse().unwrap()));
        assert!(v4.contains("::ffff:192.168.4.2".parse().unwrap()));
        assert!(!v4.contains("192.169.0.1".parse().unwrap()));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("fe80::1".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nonsense".parse::<Cidr>().is_err());
    }
}
