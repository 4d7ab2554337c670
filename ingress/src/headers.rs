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

/// A block of trusted proxy addresses (`--trust-proxy`).
pub use skr8tr_net::server::IpNet as Cidr;

fn trusted(proxies: &[Cidr], ip: IpAddr) -> bool {
    proxies.iter().any(|c| c.contains(ip))
}

/// An address or `Forwarded` element formatted on the stack: the common
/// request (an untrusted client) allocates only its header values.
struct Line {
    buf: [u8; 96],
    len: usize,
}

impl Line {
    fn of(args: std::fmt::Arguments<'_>) -> Line {
        use std::io::Write;
        let mut buf = [0u8; 96];
        let mut cursor = std::io::Cursor::new(&mut buf[..]);
        // 96 bytes hold any IPv6 element (`for="[…45…]";proto=https`):
        // a longer write is cut, never reached.
        let _ = cursor.write_fmt(args);
        let len = cursor.position() as usize;
        Line { buf, len }
    }

    fn value(&self) -> Option<HeaderValue> {
        HeaderValue::from_bytes(&self.buf[..self.len]).ok()
    }
}

/// Sets `X-Forwarded-For`, `Forwarded`, `X-Real-IP` and
/// `X-Forwarded-Proto` for a request from `client` (see the module doc).
pub fn add_forwarded(headers: &mut HeaderMap, client: IpAddr, proto: &str, proxies: &[Cidr]) {
    let xff = HeaderName::from_static("x-forwarded-for");
    let real_ip = HeaderName::from_static("x-real-ip");
    let peer = Line::of(format_args!("{client}"));
    let element = match client {
        IpAddr::V4(a) => Line::of(format_args!("for={a};proto={proto}")),
        IpAddr::V6(a) => Line::of(format_args!("for=\"[{a}]\";proto={proto}")),
    };
    if trusted(proxies, client) {
        let peer = String::from_utf8_lossy(&peer.buf[..peer.len]).into_owned();
        let element = String::from_utf8_lossy(&element.buf[..element.len]).into_owned();
        let mut chain: Vec<String> = headers
            .get_all(&xff)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|a| a.trim().to_string())
            .filter(|a| !a.is_empty())
            .collect();
        let mut elements: Vec<String> = headers
            .get_all(header::FORWARDED)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_string)
            .collect();
        // The real client: from the right, the first address that is not
        // one of our trusted proxies. An entry that is not an address ends
        // the walk: what stands left of it was written by whoever wrote it,
        // not by a proxy we trust.
        let mut real = client;
        for entry in chain.iter().rev() {
            match entry.parse::<IpAddr>() {
                Ok(ip) => {
                    real = ip;
                    if !trusted(proxies, ip) {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        chain.push(peer);
        elements.push(element);
        let values = [
            (xff, HeaderValue::from_str(&chain.join(", ")).ok()),
            (
                header::FORWARDED,
                HeaderValue::from_str(&elements.join(", ")).ok(),
            ),
            (real_ip, Line::of(format_args!("{real}")).value()),
        ];
        for (name, value) in values {
            headers.remove(&name);
            if let Some(v) = value {
                headers.insert(name, v);
            }
        }
    } else {
        // `X-Forwarded-Host`, `-Port`, `-Prefix`…: only a trusted proxy's.
        // Collected only if there is one (no allocation otherwise).
        if headers
            .keys()
            .any(|n| n.as_str().starts_with("x-forwarded-"))
        {
            let spoofable: Vec<HeaderName> = headers
                .keys()
                .filter(|n| n.as_str().starts_with("x-forwarded-"))
                .cloned()
                .collect();
            for name in spoofable {
                headers.remove(name);
            }
        }
        headers.remove(header::FORWARDED);
        headers.remove(&real_ip);
        if let Some(v) = peer.value() {
            headers.insert(xff, v.clone());
            headers.insert(real_ip, v);
        }
        if let Some(v) = element.value() {
            headers.insert(header::FORWARDED, v);
        }
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
    fn the_walk_stops_at_what_a_client_wrote_itself() {
        let proxies = [Cidr::parse("10.0.0.0/8").unwrap()];
        let mut h = HeaderMap::new();
        // `unknown` is not an address: 6.6.6.6 left of it is the client's own.
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, unknown"),
        );
        forwarded_for(&mut h, "10.9.9.9", &proxies);
        assert_eq!(h.get("x-real-ip").unwrap(), "10.9.9.9");
        // From an untrusted client, every x-forwarded-* of its own goes.
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-host", HeaderValue::from_static("evil.example"));
        h.insert("x-forwarded-prefix", HeaderValue::from_static("/admin"));
        forwarded_for(&mut h, "203.0.113.9", &proxies);
        assert!(h.get("x-forwarded-host").is_none());
        assert!(h.get("x-forwarded-prefix").is_none());
        assert_eq!(h.get("x-forwarded-proto").unwrap(), "http", "ours is set");
        // A trusted proxy's are kept.
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-host", HeaderValue::from_static("app.example"));
        forwarded_for(&mut h, "10.1.1.1", &proxies);
        assert_eq!(h.get("x-forwarded-host").unwrap(), "app.example");
    }
}
