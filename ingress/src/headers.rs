//! Request and response header rewriting for a reverse proxy (RFC 9110
//! §7.6.1): hop-by-hop headers are removed, `X-Forwarded-For`,
//! `X-Real-IP` and `X-Forwarded-Proto` are set, `Host` is kept.

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

/// Removes hop-by-hop headers, including those `Connection` names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(header::UPGRADE);
}

/// Adds the client to `X-Forwarded-For`, sets `X-Real-IP` if absent and
/// `X-Forwarded-Proto`.
pub fn add_forwarded(headers: &mut HeaderMap, client: IpAddr, proto: &str) {
    let xff = HeaderName::from_static("x-forwarded-for");
    let value = match headers.get(&xff).and_then(|v| v.to_str().ok()) {
        Some(prior) if !prior.is_empty() => format!("{prior}, {client}"),
        _ => client.to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert(xff, v);
    }
    let real = HeaderName::from_static("x-real-ip");
    if !headers.contains_key(&real)
        && let Ok(v) = HeaderValue::from_str(&client.to_string())
    {
        headers.insert(real, v);
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
    fn hop_by_hop_headers_go_and_named_ones_too() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-secret-hop"),
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

    #[test]
    fn forwarded_headers_append_and_keep_the_first_real_ip() {
        let mut h = HeaderMap::new();
        add_forwarded(&mut h, "10.0.0.1".parse().unwrap(), "http");
        assert_eq!(h.get("x-forwarded-for").unwrap(), "10.0.0.1");
        assert_eq!(h.get("x-real-ip").unwrap(), "10.0.0.1");
        assert_eq!(h.get("x-forwarded-proto").unwrap(), "http");
        add_forwarded(&mut h, "127.0.0.1".parse().unwrap(), "https");
        assert_eq!(h.get("x-forwarded-for").unwrap(), "10.0.0.1, 127.0.0.1");
        assert_eq!(h.get("x-real-ip").unwrap(), "10.0.0.1");
        assert_eq!(h.get("x-forwarded-proto").unwrap(), "https");
    }
}
