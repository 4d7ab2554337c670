//! Request and response header rewriting for a reverse proxy (RFC 9110
//! §7.6.1): hop-by-hop headers are removed, and so are the headers
//! `Connection` names (never `Host`); `Host` is kept.
//!
//! Who the client is, said to the backend:
//! - `X-Real-IP` is always set by the ingress: a client's own value is
//!   never passed on.
//! - `X-Forwarded-For` and `Forwarded` (RFC 7239) are **replaced** with the
//!   connection's peer, unless the peer is a trusted proxy
//!   (`--trust-proxy CIDR`): then the peer is **appended** to what that
//!   proxy sent, and `X-Real-IP` is the last address in the chain that is
//!   not a trusted proxy.
//! - `X-Forwarded-Proto` is the scheme the client used here.

use hyper::HeaderMap;
use hyper::header::{self, HeaderName, HeaderValue};
use std::net::IpAddr;

const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
];

/// Removes hop-by-hop headers, including those `Connection` names (but
/// never `Host`, whatever `Connection` says).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .filter(|n| *n != header::HOST)
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(header::UPGRADE);
}

/// A block of addresses, `10.0.0.0/8` or one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// `ADDR/PREFIX` or `ADDR`, as `--trust-proxy` takes it.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let err = || format!("`{text}` is not an address or a block like 10.0.0.0/8");
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let network: IpAddr = addr.parse().map_err(|_| err())?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(err)?,
            None => max,
        };
        Ok(Cidr { network, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.network, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

fn trusted(proxies: &[Cidr], ip: IpAddr) -> bool {
    proxies.iter().any(|c| c.contains(ip))
}

/// Sets `X-Forwarded-For`, `Forwarded`, `X-Real-IP` and
/// `X-Forwarded-Proto` for a request from `client` (see the module doc).
pub fn add_forwarded(headers: &mut HeaderMap, client: IpAddr, proto: &str, proxies: &[Cidr]) {
    let xff = HeaderName::from_static("x-forwarded-for");
    let forwarded = header::FORWARDED;
    let from_proxy = trusted(proxies, client);
    let prior_xff: Vec<String> = if from_proxy {
        headers
            .get_all(&xff)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|a| a.trim().to_string())
            .filter(|a| !a.is_empty())
            .collect()
    } else {
        Vec::new()
    };
    let prior_forwarded: Vec<String> = if from_proxy {
        headers
            .get_all(&forwarded)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_string)
            .collect()
    } else {
        Vec::new()
    };
    // The real client: from the right, the first address that is not one
    // of our trusted proxies (the peer itself when it is not trusted).
    let real = std::iter::once(client.to_string())
        .chain(prior_xff.iter().rev().cloned())
        .find(|a| a.parse::<IpAddr>().is_ok_and(|ip| !trusted(proxies, ip)))
        .unwrap_or_else(|| client.to_string());
    let mut chain = prior_xff;
    chain.push(client.to_string());
    headers.remove(&xff);
    if let Ok(v) = HeaderValue::from_str(&chain.join(", ")) {
        headers.insert(xff, v);
    }
    let node = match client {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("\"[{a}]\""),
    };
    let mut elements = prior_forwarded;
    elements.push(format!("for={node};proto={proto}"));
    headers.remove(&forwarded);
    if let Ok(v) = HeaderValue::from_str(&elements.join(", ")) {
        headers.insert(forwarded, v);
    }
    if let Ok(v) = HeaderValue::from_str(&real) {
        headers.insert(HeaderName::from_static("x-real-ip"), v);
    }
    headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static(if proto == "https" { "https" } else { "http" }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go_and_named_ones_too_but_never_host() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-secret-hop, host"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::HOST, HeaderValue::from_static("example.org"));
        h.insert("x-app", HeaderValue::from_static("kept"));
        strip_hop_by_hop(&mut h);
        assert!(h.get(header::CONNECTION).is_none());
        assert!(h.get("x-secret-hop").is_none());
        assert!(h.get(header::TRANSFER_ENCODING).is_none());
        assert!(h.get("keep-alive").is_none());
        assert_eq!(h.get(header::HOST).unwrap(), "example.org");
        assert_eq!(h.get("x-app").unwrap(), "kept");
    }

    fn forwarded_for(h: &mut HeaderMap, client: &str, proxies: &[Cidr]) {
        add_forwarded(h, client.parse().unwrap(), "http", proxies);
    }

    #[test]
    fn a_clients_own_forwarding_headers_are_replaced() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
        h.insert("x-real-ip", HeaderValue::from_static("6.6.6.6"));
        h.insert(header::FORWARDED, HeaderValue::from_static("for=6.6.6.6"));
        forwarded_for(&mut h, "10.0.0.1", &[]);
        assert_eq!(h.get("x-forwarded-for").unwrap(), "10.0.0.1");
        assert_eq!(h.get("x-real-ip").unwrap(), "10.0.0.1");
        assert_eq!(h.get(header::FORWARDED).unwrap(), "for=10.0.0.1;proto=http");
        assert_eq!(h.get("x-forwarded-proto").unwrap(), "http");
    }

    #[test]
    fn a_trusted_proxys_chain_is_appended_to() {
        let proxies = [Cidr::parse("10.0.0.0/8").unwrap()];
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("203.0.113.7, 10.1.2.3"),
        );
        h.insert("x-real-ip", HeaderValue::from_static("6.6.6.6"));
        h.insert(
            header::FORWARDED,
            HeaderValue::from_static("for=203.0.113.7"),
        );
        forwarded_for(&mut h, "10.9.9.9", &proxies);
        assert_eq!(
            h.get("x-forwarded-for").unwrap(),
            "203.0.113.7, 10.1.2.3, 10.9.9.9"
        );
        assert_eq!(
            h.get("x-real-ip").unwrap(),
            "203.0.113.7",
            "the last untrusted hop"
        );
        assert_eq!(
            h.get(header::FORWARDED).unwrap(),
            "for=203.0.113.7, for=10.9.9.9;proto=http"
        );
        // IPv6 nodes are quoted in `Forwarded`.
        let mut h = HeaderMap::new();
        add_forwarded(&mut h, "2001:db8::1".parse().unwrap(), "https", &[]);
        assert_eq!(
            h.get(header::FORWARDED).unwrap(),
            "for=\"[2001:db8::1]\";proto=https"
        );
    }

    #[test]
    fn blocks_contain_their_addresses() {
        let c = Cidr::parse("192.168.0.0/16").unwrap();
        assert!(c.contains("192.168.4.2".parse().unwrap()));
        assert!(!c.contains("192.169.0.1".parse().unwrap()));
        assert!(
            c.contains("::ffff:192.168.1.1".parse().unwrap()),
            "v4-mapped"
        );
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(
            Cidr::parse("10.0.0.1")
                .unwrap()
                .contains("10.0.0.1".parse().unwrap())
        );
        assert!(
            !Cidr::parse("10.0.0.1")
                .unwrap()
                .contains("10.0.0.2".parse().unwrap())
        );
        assert!(
            Cidr::parse("fd00::/8")
                .unwrap()
                .contains("fd12::1".parse().unwrap())
        );
        for bad in ["", "10.0.0.0/33", "x/8", "10.0.0.0/-1", "fd00::/129"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }
}
