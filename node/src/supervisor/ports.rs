//! Ports for `port auto` replicas, and the address probes connect to.

use super::Inner;
use super::table::Table;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, TcpListener};

impl Inner {
    /// The port for a `port auto` replica: the next port of the range, after
    /// the last one given, that no replica here holds and that binds.
    pub(super) fn pick_port(&self, table: &mut Table) -> Option<u16> {
        let (lo, hi) = self.config.port_range;
        if lo > hi {
            return None;
        }
        let used: Vec<u16> = table.replicas.values().filter_map(|e| e.port).collect();
        let span = u32::from(hi - lo) + 1;
        let start = table.next_port.clamp(lo, hi);
        for i in 0..span {
            let port = (u32::from(start - lo) + i) % span + u32::from(lo);
            let port = port as u16; // within lo..=hi, so it fits
            if used.contains(&port) || !self.bindable(port) {
                continue;
            }
            table.next_port = if port == hi { lo } else { port + 1 };
            return Some(port);
        }
        None
    }

    fn bindable(&self, port: u16) -> bool {
        match TcpListener::bind((self.config.address, port)) {
            Ok(_) => true,
            // The advertised address may be one this host only routes to
            // (NAT): then check the port on every local address.
            Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => {
                TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok()
            }
            Err(_) => false,
        }
    }

    pub(super) fn probe_ip(&self) -> IpAddr {
        match self.config.address {
            IpAddr::V4(a) if a.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(a) if a.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            a => a,
        }
    }
}
