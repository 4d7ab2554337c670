//! The flags that bound a daemon's listening socket, shared by `skr8tr
//! conductor`, `node` (its log endpoint), `ingress` and `serve-static`.
//! Each daemon has its own defaults, in its crate's `Limits`.

use skr8tr_net::server::Limits;
use std::time::Duration;

#[derive(clap::Args, Debug, Default)]
pub struct ListenFlags {
    /// Connections served at once; past it, new ones are closed [default: the daemon's]
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// Connections at once from one address [default: the daemon's]
    #[arg(long, value_name = "N")]
    max_connections_per_ip: Option<usize>,
    /// A request head must arrive within this long (also ends keep-alive
    /// connections idle that long) [default: the daemon's]
    #[arg(long, value_parser = crate::duration)]
    header_timeout: Option<Duration>,
    /// A connection that moves no byte for this long is closed [default: the daemon's]
    #[arg(long, value_parser = crate::duration)]
    idle_timeout: Option<Duration>,
    /// A request body must arrive within this long of its head [default: the daemon's]
    #[arg(long, value_parser = crate::duration)]
    body_timeout: Option<Duration>,
}

impl ListenFlags {
    /// `defaults`, with what the flags set.
    pub fn apply(&self, mut limits: Limits) -> Limits {
        if let Some(n) = self.max_connections {
            limits.max_connections = n.max(1);
        }
        if let Some(n) = self.max_connections_per_ip {
            limits.max_per_ip = n.max(1);
        }
        if let Some(d) = self.header_timeout {
            limits.header_timeout = d;
        }
        if let Some(d) = self.idle_timeout {
            limits.idle_timeout = d;
        }
        if let Some(d) = self.body_timeout {
            limits.body_timeout = d;
        }
        limits
    }
}
