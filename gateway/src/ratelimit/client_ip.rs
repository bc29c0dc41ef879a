//! The client address a request is accounted to before it is authenticated.
//!
//! The TCP peer, unless the peer is a configured trusted proxy (the load balancer's subnets):
//! then `X-Forwarded-For` is read from the right, skipping trusted proxies, and the first
//! address that is not one is the client. Each proxy appends the address it received the
//! request from, so the rightmost untrusted entry is the one a trusted proxy wrote about its own
//! peer; everything to its left came from the client and is never believed. A peer that is not
//! trusted cannot move its key with the header at all.
//!
//! An entry that is not an address (or the walk reaching [`XFF_HOPS_MAX`]) stops the walk at
//! the last trusted address passed: the request is accounted to that proxy, a key many clients
//! share, never to a key the sender chose.

use std::net::{IpAddr, Ipv6Addr};

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The header proxies append the address of their peer to.
pub const X_FORWARDED_FOR: &str = "x-forwarded-for";
/// Most `X-Forwarded-For` entries read, from the right: more proxies than this in front of the
/// gateway is a configuration nobody has, and the walk stays bounded whatever a client sends.
pub const XFF_HOPS_MAX: usize = 16;
/// Most networks `trusted_proxies` may list.
pub const TRUSTED_PROXIES_MAX: usize = 256;

/// The networks whose `X-Forwarded-For` is believed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses a comma-separated list of CIDRs (`10.0.0.0/16`) or single addresses
    /// (`127.0.0.1`, `::1`); empty trusts none.
    pub fn parse(raw: &str) -> Result<TrustedProxies, String> {
        let mut nets = Vec::new();
        for item in raw.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let net = match item.parse::<IpNet>() {
                Ok(net) => net.trunc(),
                Err(_) => item
                    .parse::<IpAddr>()
                    .map(|ip| IpNet::from(ip.to_canonical()))
                    .map_err(|_| format!("{item:?} is neither a CIDR nor an IP address"))?,
            };
            nets.push(net);
        }
        if nets.len() > TRUSTED_PROXIES_MAX {
            return Err(format!("at most {TRUSTED_PROXIES_MAX} networks"));
        }
        Ok(TrustedProxies(nets))
    }

    /// Whether none is trusted (the header is then never read).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `ip` is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client address of a request from `peer` with these headers.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.contains(client) {
            return client;
        }
        // Several header fields are one list, in order (RFC 9110, 5.3).
        let fields: Vec<&str> = headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .map(|v| v.to_str().unwrap_or("\u{0}"))
            .collect();
        let entries = fields.iter().rev().flat_map(|f| f.rsplit(','));
        for entry in entries.take(XFF_HOPS_MAX) {
            let Some(ip) = parse_entry(entry) else {
                return client;
            };
            client = ip;
            if !self.contains(ip) {
                return ip;
            }
        }
        client
    }
}

impl std::fmt::Display for TrustedProxies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(none)");
        }
        let list: Vec<String> = self.0.iter().map(IpNet::to_string).collect();
        f.write_str(&list.join(","))
    }
}

/// One `X-Forwarded-For` entry: an address, maybe with a port (`1.2.3.4:80`, `[::1]:80`), as
/// some proxies write it.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Some(rest) = entry.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        let port_ok = after.is_empty()
            || after
                .strip_prefix(':')
                .is_some_and(|p| p.parse::<u16>().is_ok());
        return port_ok
            .then(|| inside.parse::<Ipv6Addr>().ok())
            .flatten()
            .map(|ip| IpAddr::V6(ip).to_canonical());
    }
    let (host, port) = entry.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// The key a client address is limited under: IPv4 addresses as they are, IPv6 addresses by
/// their /64 network, the smallest block a site is given (a host can pick any address in it, so
/// keying by whole address would give one client 2^64 budgets).
pub fn limit_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn check(trusted: &str, peer: &str, xff: &[&str], expected: &str) {
        let proxies = TrustedProxies::parse(trusted).expect("trusted proxies");
        let mut headers = HeaderMap::new();
        for value in xff {
            headers.append(
                X_FORWARDED_FOR,
                HeaderValue::from_bytes(value.as_bytes()).expect("header"),
            );
        }
        let peer: IpAddr = peer.parse().expect("peer");
        let got = proxies.client_ip(peer, &headers);
        assert_eq!(
            got.to_string(),
            expected,
            "trusted {trusted:?}, peer {peer}, X-Forwarded-For {xff:?}"
        );
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_sends() {
        check("", "203.0.113.7", &["198.51.100.1"], "203.0.113.7");
        check(
            "10.0.0.0/8",
            "203.0.113.7",
            &["198.51.100.1"],
            "203.0.113.7",
        );
        check("10.0.0.0/8", "203.0.113.7", &["10.0.0.1"], "203.0.113.7");
    }

    #[test]
    fn a_trusted_peer_names_the_rightmost_untrusted_address() {
        let alb = "10.0.0.0/16";
        check(alb, "10.0.1.2", &["198.51.100.1"], "198.51.100.1");
        // Spoofed entries on the left are the client's own words: ignored.
        check(
            alb,
            "10.0.1.2",
            &["1.1.1.1, 2.2.2.2, 198.51.100.1"],
            "198.51.100.1",
        );
        // A chain of trusted proxies is walked through.
        check(
            alb,
            "10.0.1.2",
            &["1.1.1.1, 198.51.100.1, 10.0.3.4"],
            "198.51.100.1",
        );
        // Several header fields are one list.
        check(
            alb,
            "10.0.1.2",
            &["1.1.1.1", "198.51.100.1, 10.0.3.4"],
            "198.51.100.1",
        );
        // No header: the proxy itself.
        check(alb, "10.0.1.2", &[], "10.0.1.2");
        // Only trusted entries: the leftmost of them.
        check(alb, "10.0.1.2", &["10.0.9.9, 10.0.3.4"], "10.0.9.9");
        // Single addresses are networks of one.
        check("127.0.0.1", "127.0.0.1", &["198.51.100.1"], "198.51.100.1");
        check("127.0.0.1", "127.0.0.2", &["198.51.100.1"], "127.0.0.2");
    }

    #[test]
    fn malformed_entries_stop_at_the_last_trusted_address() {
        let alb = "10.0.0.0/16";
        check(alb, "10.0.1.2", &["not-an-ip"], "10.0.1.2");
        check(alb, "10.0.1.2", &["198.51.100.1, "], "10.0.1.2");
        check(alb, "10.0.1.2", &["junk, 10.0.3.4"], "10.0.3.4");
        // Left of the client's entry, nothing is read.
        check(alb, "10.0.1.2", &["junk, 198.51.100.1"], "198.51.100.1");
        check(alb, "10.0.1.2", &["198.51.100.1/24"], "10.0.1.2");
        check(alb, "10.0.1.2", &["unknown"], "10.0.1.2");
        // Not valid UTF-8 header bytes: malformed.
        let proxies = TrustedProxies::parse(alb).expect("parse");
        let mut headers = HeaderMap::new();
        headers.insert(
            X_FORWARDED_FOR,
            HeaderValue::from_bytes(b"\xff\xfe").expect("opaque bytes"),
        );
        let peer: IpAddr = "10.0.1.2".parse().expect("peer");
        assert_eq!(proxies.client_ip(peer, &headers), peer);
    }

    #[test]
    fn ports_and_ipv6_are_understood() {
        let alb = "10.0.0.0/16, fd00::/8";
        check(alb, "10.0.1.2", &["198.51.100.1:4711"], "198.51.100.1");
        check(alb, "10.0.1.2", &["2001:db8::1"], "2001:db8::1");
        check(alb, "10.0.1.2", &["[2001:db8::1]:443"], "2001:db8::1");
        check(alb, "10.0.1.2", &["[2001:db8::1]"], "2001:db8::1");
        check(alb, "10.0.1.2", &["[2001:db8::1]:x"], "10.0.1.2");
        check(alb, "fd00::5", &["2001:db8::1, fd12::1"], "2001:db8::1");
        // IPv4-mapped IPv6 is the IPv4 address, for the peer and for entries.
        check(
            alb,
            "::ffff:10.0.1.2",
            &["::ffff:198.51.100.1"],
            "198.51.100.1",
        );
    }

    #[test]
    fn the_walk_is_bounded() {
        let proxies = XFF_HOPS_MAX + 5;
        let hops: Vec<String> = (1..=proxies).map(|i| format!("10.0.0.{i}")).collect();
        let xff = format!("198.51.100.1, {}", hops.join(", "));
        // The client sits beyond the bound: the last trusted address read stands in (the
        // XFF_HOPS_MAX rightmost of 10.0.0.1 ..= 10.0.0.{proxies}).
        let last_read = format!("10.0.0.{}", proxies - XFF_HOPS_MAX + 1);
        check("10.0.0.0/16", "10.0.1.2", &[&xff], &last_read);
    }

    #[test]
    fn trusted_proxies_parse_cidrs_and_addresses() {
        let proxies = TrustedProxies::parse(" 10.0.0.7/16 , ::1, 192.0.2.1 ").expect("parse");
        assert_eq!(proxies.to_string(), "10.0.0.0/16,::1/128,192.0.2.1/32");
        assert!(TrustedProxies::parse("").expect("empty").is_empty());
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
        assert!(TrustedProxies::parse("example.com").is_err());
        let many = vec!["10.0.0.1"; TRUSTED_PROXIES_MAX + 1].join(",");
        assert!(TrustedProxies::parse(&many).is_err());
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64() {
        let key = |ip: &str| limit_key(ip.parse().expect("ip")).to_string();
        assert_eq!(key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::");
        assert_eq!(key("2001:db8:1:2:bbbb::9"), "2001:db8:1:2::");
        assert_ne!(key("2001:db8:1:3::1"), key("2001:db8:1:2::1"));
        assert_eq!(key("198.51.100.1"), "198.51.100.1");
        assert_eq!(key("::ffff:198.51.100.1"), "198.51.100.1");
    }
}
