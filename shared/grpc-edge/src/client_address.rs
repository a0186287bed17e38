//! Who the client is, for throttling and fair hashing: the TCP peer's address, or, only when
//! the peer is a configured trusted proxy (TRUSTED_PROXIES), the address the proxy says it
//! forwarded for: the rightmost hop that is not itself a trusted proxy, in the one header the
//! proxies are configured to append to (TRUSTED_PROXY_HEADER: `X-Forwarded-For` by default,
//! or RFC 7239 `Forwarded`). The other header is never read: a proxy that appends to one
//! passes the other through as the client wrote it.

use ipnet::IpNet;
use std::{
    fmt,
    net::{IpAddr, Ipv6Addr, SocketAddr},
};
use tonic::metadata::MetadataMap;

/// Whom a request is charged to: one IPv4 address, one IPv6 /64, or the shared "unknown".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey(Option<IpAddr>);

impl ClientKey {
    /// The client `ip` belongs to. An IPv4 address is one client (also when it arrives
    /// IPv4-mapped, `::ffff:a.b.c.d`, on a dual-stack listener); an IPv6 address stands for its
    /// /64, the smallest block one subscriber is usually given, so rotating through it gains
    /// nothing.
    pub fn from_ip(ip: IpAddr) -> Self {
        let key = match ip.to_canonical() {
            IpAddr::V4(v4) => IpAddr::V4(v4),
            IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & (u128::MAX << 64))),
        };
        Self(Some(key))
    }

    /// Requests whose address is not known. They all count as one client.
    pub fn unknown() -> Self {
        Self(None)
    }
}

impl fmt::Display for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(IpAddr::V6(prefix)) => write!(f, "{prefix}/64"),
            Some(ip) => write!(f, "{ip}"),
            None => f.write_str("unknown"),
        }
    }
}

/// A network of trusted proxies in CIDR notation, e.g. `10.0.0.0/8` or `fd00::/8`; a bare
/// address is its own /32 or /128. (ipnet parses and matches; what it does not do, and this
/// does, is treat an IPv4-mapped IPv6 peer, `::ffff:10.1.2.3` on a dual-stack listener, as the
/// IPv4 address it is.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyNetwork(IpNet);

impl std::str::FromStr for ProxyNetwork {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        raw.parse::<IpNet>()
            .or_else(|_| raw.parse::<IpAddr>().map(IpNet::from))
            .map(|net| Self(net.trunc()))
            .map_err(|_| format!("{raw:?} is not a CIDR like 10.0.0.0/8, 192.168.1.7 or fd00::/8"))
    }
}

impl ProxyNetwork {
    /// Whether `ip` is in this network (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip.to_canonical())
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
    proxies: Vec<ProxyNetwork>,
    header: ForwardingHeader,
}

impl TrustedProxies {
    /// Trusts `proxies` (none: only TCP peers count) about `header`.
    pub fn new(proxies: Vec<ProxyNetwork>, header: ForwardingHeader) -> Self {
        Self { proxies, header }
    }

    /// Whether `ip` is one of the trusted proxies.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.proxies.iter().any(|cidr| cidr.contains(ip))
    }

    /// The client of a request from `peer` with `metadata`.
    pub fn client(&self, peer: Option<SocketAddr>, metadata: &MetadataMap) -> ClientKey {
        self.client_ip(peer, metadata)
            .map_or_else(ClientKey::unknown, ClientKey::from_ip)
    }

    /// The address of the client of a request from `peer` with `metadata` (IPv4-mapped
    /// addresses as IPv4), or `None` when the peer is not known.
    pub fn client_ip(&self, peer: Option<SocketAddr>, metadata: &MetadataMap) -> Option<IpAddr> {
        let peer = peer?.ip().to_canonical();
        if !self.trusts(peer) {
            return Some(peer);
        }
        // Hops in the order they were added, the nearest last. Walking from the right, the
        // first hop that is not a trusted proxy is the client; an entry that is not an
        // address (`unknown`, an obfuscated id, a `unix:` socket) ends the walk at the last
        // trusted hop, since whatever stands left of it was written by someone we cannot
        // vouch for. If every hop is a trusted proxy, the request came from inside: the
        // farthest of them (the leftmost) it is.
        let mut client = peer;
        for hop in forwarded_for(metadata, self.header).into_iter().rev() {
            match hop {
                Some(hop) if self.trusts(hop) => client = hop,
                Some(hop) => {
                    client = hop;
                    break;
                }
                None => break,
            }
        }
        Some(client.to_canonical())
    }
}

/// The entries of `header`, in order (`for=` parameters of `Forwarded`), `None` for one that
/// is not an address.
fn forwarded_for(metadata: &MetadataMap, header: ForwardingHeader) -> Vec<Option<IpAddr>> {
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
        // An element without `for=` says nothing of who sent it: it ends the walk too.
        ForwardingHeader::Forwarded => values("forwarded")
            .iter()
            .map(|element| {
                element.split(';').find_map(|pair| {
                    let (name, value) = pair.split_once('=')?;
                    name.trim()
                        .eq_ignore_ascii_case("for")
                        .then(|| parse_node(value))
                })?
            })
            .collect(),
        ForwardingHeader::XForwardedFor => values("x-forwarded-for")
            .iter()
            .map(|hop| parse_node(hop))
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
        let trusted: Vec<ProxyNetwork> = vec!["10.0.0.0/8".parse().unwrap()];
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
        // Every hop a trusted proxy: the request came from inside, from the farthest of them.
        let md = metadata(&[("x-forwarded-for", "10.0.0.1")]);
        assert_eq!(proxies.client(peer, &md), key("10.0.0.1"));
        // No header: the proxy itself.
        assert_eq!(proxies.client(peer, &MetadataMap::new()), key("10.1.2.3"));
    }

    #[test]
    fn an_entry_that_is_not_an_address_ends_the_walk_at_the_last_trusted_hop() {
        let trusted: Vec<ProxyNetwork> = vec!["10.0.0.0/8".parse().unwrap()];
        let proxies = TrustedProxies::new(trusted.clone(), ForwardingHeader::XForwardedFor);
        let peer = Some("10.1.2.3:5000".parse().unwrap());
        // Left of our proxy 10.9.9.9 stands an entry that is not an address: whatever is
        // left of that (1.2.3.4) nobody we trust wrote, so the client is the last hop we do.
        for forged in [
            "1.2.3.4, unknown, 10.9.9.9",
            "1.2.3.4, _hidden, 10.9.9.9",
            "1.2.3.4,, 10.9.9.9",
        ] {
            let md = metadata(&[("x-forwarded-for", forged)]);
            assert_eq!(proxies.client(peer, &md), key("10.9.9.9"), "{forged}");
        }
        let rfc7239 = TrustedProxies::new(trusted, ForwardingHeader::Forwarded);
        let md = metadata(&[("forwarded", "for=1.2.3.4, for=unknown")]);
        assert_eq!(rfc7239.client(peer, &md), key("10.1.2.3"));
        let md = metadata(&[("forwarded", "for=1.2.3.4, for=\"unix:/run/x\"")]);
        assert_eq!(rfc7239.client(peer, &md), key("10.1.2.3"));
        let md = metadata(&[("forwarded", "for=1.2.3.4, proto=https")]);
        assert_eq!(rfc7239.client(peer, &md), key("10.1.2.3"));
    }

    #[test]
    fn networks_parse_and_match_both_families_and_mapped_addresses_count_as_ipv4() {
        let v4: ProxyNetwork = "192.168.0.0/16".parse().unwrap();
        assert!(v4.contains("192.168.4.2".parse().unwrap()));
        assert!(v4.contains("::ffff:192.168.4.2".parse().unwrap()));
        assert!(!v4.contains("192.169.0.1".parse().unwrap()));
        let v6: ProxyNetwork = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("fe80::1".parse().unwrap()));
        let all: ProxyNetwork = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        assert!(all.contains("::ffff:8.8.8.8".parse().unwrap()));
        let host: ProxyNetwork = "10.1.2.3".parse().unwrap();
        assert!(host.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!host.contains("10.1.2.4".parse().unwrap()));
        // Host bits set are cleared, as a network is meant.
        let sloppy: ProxyNetwork = "10.1.2.3/8".parse().unwrap();
        assert!(sloppy.contains("10.200.0.1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<ProxyNetwork>().is_err());
        assert!("nonsense".parse::<ProxyNetwork>().is_err());
    }

    #[test]
    fn ipv6_addresses_are_grouped_by_their_64_prefix_and_ipv4_by_the_whole_address() {
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff:ab:cd:ef"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("2001:db8:1:2::1").to_string(), "2001:db8:1:2::/64");
        assert_ne!(key("10.0.0.1"), key("10.0.0.2"));
        assert_eq!(key("::ffff:10.0.0.1"), key("10.0.0.1"));
        assert_ne!(key("::ffff:10.0.0.1"), key("::ffff:10.0.0.2"));
        assert_eq!(ClientKey::unknown(), ClientKey::unknown());
        assert_ne!(ClientKey::unknown(), key("0.0.0.0"));
        assert_ne!(ClientKey::unknown(), key("::"));
    }
}
