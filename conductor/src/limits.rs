//! The conductor's bounds, in one place, each with a flag of `skr8tr
//! conductor`. The budget for refusals from senders who proved no key is
//! in `refusals` (fixed: at most 31 audit entries a minute); pages of the
//! audit log are capped in `api::history`; request bodies at
//! `wire::MAX_BODY_BYTES`.

use skr8tr_net::server;
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The API socket: connections, timeouts, head size.
    pub api: server::Limits,
    /// Request bodies held in memory at once, all connections together
    /// (`--max-buffered`); past it, a request is answered 503 unread.
    pub max_buffered_bytes: usize,
}

/// 64 MiB: room for 60 full-size commands arriving at once.
pub const MAX_BUFFERED_BYTES: usize = 64 << 20;

/// Connections at once (`--max-connections`): each node holds one or two,
/// an operator's command one.
pub const MAX_CONNECTIONS: usize = 4096;
/// Connections at once from one address (`--max-connections-per-ip`):
/// nodes behind one NAT address count together.
pub const MAX_PER_IP: usize = 256;
/// `--header-timeout`: a request head within 10 s; also how long a
/// keep-alive connection may sit idle between requests.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// `--idle-timeout`: no byte either way for 60 s closes a connection
/// (longer than the 25 s long-polls, which move none while they wait;
/// `logs -f` streams send a heartbeat more often).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// `--body-timeout`: a request body (at most a signed manifest, 1 MiB)
/// must arrive within 30 s of its head: 35 KiB/s at the least.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest request head: requests are small, their bodies carry the data.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            api: server::Limits {
                max_connections: MAX_CONNECTIONS,
                max_per_ip: MAX_PER_IP,
                header_timeout: HEADER_TIMEOUT,
                idle_timeout: IDLE_TIMEOUT,
                body_timeout: BODY_TIMEOUT,
                max_header_bytes: MAX_HEADER_BYTES,
                unlimited_sources: Vec::new(),
            },
            max_buffered_bytes: MAX_BUFFERED_BYTES,
        }
    }
}
