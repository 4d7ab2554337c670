//! The node agent's bounds, in one place, each with a flag of `skr8tr
//! node`. Its one listening socket is the log endpoint, which serves only
//! the conductor: its caps sit far below the process's file limit, so an
//! attack on it can never take the descriptors that health probes and
//! replica starts need.

use skr8tr_net::server;
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The log endpoint's socket.
    pub logs: server::Limits,
}

/// `--logs-max-connections`: the conductor asks one request at a time per
/// replica followed; 32 is room for plenty, and nothing next to the file
/// limit (1024 by default).
pub const LOGS_MAX_CONNECTIONS: usize = 32;
/// Per source address.
pub const LOGS_MAX_PER_IP: usize = 16;
/// Requests are a signature and a replica id: small and quick.
pub const LOGS_HEADER_TIMEOUT: Duration = Duration::from_secs(5);
pub const LOGS_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
pub const LOGS_BODY_TIMEOUT: Duration = Duration::from_secs(5);
pub const LOGS_MAX_HEADER_BYTES: usize = 8 * 1024;

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            logs: server::Limits {
                max_connections: LOGS_MAX_CONNECTIONS,
                max_per_ip: LOGS_MAX_PER_IP,
                header_timeout: LOGS_HEADER_TIMEOUT,
                idle_timeout: LOGS_IDLE_TIMEOUT,
                body_timeout: LOGS_BODY_TIMEOUT,
                max_header_bytes: LOGS_MAX_HEADER_BYTES,
                unlimited_sources: Vec::new(),
            },
        }
    }
}
