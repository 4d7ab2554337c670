//! The ingress's bounds, in one place, each with a flag of `skr8tr
//! ingress`.

use skr8tr_net::server;
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Client connections: caps, header, idle and body timeouts, head size.
    pub clients: server::Limits,
    /// `--max-body`: largest request body forwarded. It is buffered, so a
    /// failed connection can be retried on another replica.
    pub max_body_bytes: usize,
    /// `--timeout`: longest a backend may take to answer (and to accept
    /// an `Upgrade`).
    pub request_timeout: Duration,
    /// `--max-buffered`: request bodies held at once, all connections
    /// together; past it, a request is answered 503 unread.
    pub max_buffered_bytes: usize,
}

/// 256 MiB: 25 full-size uploads at once.
pub const MAX_BUFFERED_BYTES: usize = 256 << 20;

/// `--max-connections`: client connections at once (lowered at start to
/// fit the open-file limit, which backend connections share).
pub const MAX_CONNECTIONS: usize = 10_000;
/// `--max-connections-per-ip`.
pub const MAX_PER_IP: usize = 512;
/// `--header-timeout`: a request head within 10 s; also how long a
/// keep-alive connection may sit idle between requests.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// `--idle-timeout`: no byte either way for 90 s closes a connection
/// (longer than `--timeout`, which a slow backend may use up quietly; an
/// upgraded connection quiet that long is closed too).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// `--body-timeout`: a request body must arrive within 60 s of its head.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(60);
/// `--max-header`: largest request head, request line included (431).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
pub const MAX_BODY_BYTES: usize = 10 << 20;
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            clients: server::Limits {
                max_connections: MAX_CONNECTIONS,
                max_per_ip: MAX_PER_IP,
                header_timeout: HEADER_TIMEOUT,
                idle_timeout: IDLE_TIMEOUT,
                body_timeout: BODY_TIMEOUT,
                max_header_bytes: MAX_HEADER_BYTES,
                unlimited_sources: Vec::new(),
            },
            max_body_bytes: MAX_BODY_BYTES,
            request_timeout: REQUEST_TIMEOUT,
            max_buffered_bytes: MAX_BUFFERED_BYTES,
        }
    }
}
