//! The bounded listener every Skr8tr daemon serves on (conductor API, node
//! log endpoint, ingress, static file server). Each connection is held to
//! [`Limits`]:
//!
//! - a cap on connections at once, and per source address; past either,
//!   a new connection is closed at once and the fact logged (once per
//!   interval, with a count);
//! - a header-read timeout: a request head must arrive within it of the
//!   connection being ready for one (hyper's timer, which also ends a
//!   keep-alive connection idle that long between requests);
//! - an idle timeout: a connection that moves no byte either way for that
//!   long is closed ([`Guarded`]), whatever it is doing — a client that
//!   stopped reading its response, a stalled upload;
//! - a body-read timeout: a request body must arrive whole within it of
//!   its head ([`DeadlineBody`]);
//! - an exact limit on the request head's size (431 past it).
//!
//! Accept errors (out of file descriptors above all) back off instead of
//! spinning, and are logged once per interval, not once per try.
//!
//! Layout: this file (`Limits`, `serve`, the caps); `addr` (`IpNet`,
//! `source_of`); `guarded` (`Guarded`, the idle timeout); `body`
//! (`BodyBudget`, `DeadlineBody`).

mod addr;
mod body;
mod guarded;
#[cfg(test)]
mod tests;

pub use addr::{IpNet, source_of};
pub use body::{BodyBudget, BodyTimeout, BoxError, DeadlineBody, Reservation};
pub use guarded::Guarded;

use hyper_util::rt::TokioTimer;
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// The bounds of one listening socket. Each daemon keeps its own defaults
/// (and flags) in its own `Limits`, which holds one of these.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once. Lowered at start to leave room under
    /// the process's file limit (see [`effective_max_connections`]).
    pub max_connections: usize,
    /// Connections at once from one source address (never more than a
    /// quarter of `max_connections`).
    pub max_per_ip: usize,
    /// A request head must arrive within this long of the connection
    /// being ready for one; a keep-alive connection idle this long between
    /// requests is closed too.
    pub header_timeout: Duration,
    /// A connection that moves no byte either way for this long is closed.
    pub idle_timeout: Duration,
    /// A request body must arrive whole within this long of its head.
    pub body_timeout: Duration,
    /// Largest request head, request line included (answered 431).
    pub max_header_bytes: usize,
    /// Sources exempt from the per-address cap (proxies in front of this
    /// daemon, which carry everyone's connections).
    pub unlimited_sources: Vec<IpNet>,
}

/// File descriptors kept free for everything but connections (the store,
/// health probes, replicas' pipes, outgoing requests).
pub const FD_RESERVE: usize = 64;
/// How often a repeated listener problem is logged at most.
const LOG_EVERY: Duration = Duration::from_secs(10);
const ACCEPT_BACKOFF_FIRST: Duration = Duration::from_millis(50);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

impl Limits {
    /// A hyper HTTP/1 server builder with the header timeout and head size
    /// limit applied.
    pub fn http1(&self) -> hyper::server::conn::http1::Builder {
        let mut b = hyper::server::conn::http1::Builder::new();
        b.timer(TokioTimer::new())
            .header_read_timeout(self.header_timeout)
            .max_header_size(self.max_header_bytes)
            // The read buffer must hold a whole head; hyper's floor is 8 KiB.
            .max_buf_size(self.max_header_bytes.saturating_add(1024).max(8192));
        b
    }
}

/// The open-file limit of this process (`Max open files`, soft), if
/// `/proc` says.
pub fn file_limit() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line.split_whitespace().nth(3)?;
    match soft {
        "unlimited" => Some(usize::MAX),
        n => n.parse().ok(),
    }
}

/// `wanted`, lowered to leave [`FD_RESERVE`] descriptors (and half of a
/// small limit) for the rest of the process.
pub fn effective_max_connections(wanted: usize, file_limit: Option<usize>) -> usize {
    match file_limit {
        Some(limit) => {
            let room = limit.saturating_sub(FD_RESERVE.min(limit / 2));
            wanted.min(room).max(1)
        }
        None => wanted.max(1),
    }
}

/// Serves `listener` until `shutdown`: every accepted connection within
/// the caps is wrapped in [`Guarded`] and handed to `serve` on a task of
/// its own. `name` names the socket in log lines.
pub async fn serve<F, Fut>(
    name: &'static str,
    listener: TcpListener,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
    serve: F,
) where
    F: Fn(Guarded<TcpStream>, SocketAddr) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let max = effective_max_connections(limits.max_connections, file_limit());
    if max < limits.max_connections {
        tracing::warn!(
            "{name}: serving at most {max} connections, not {}: the open-file limit is {} \
             (raise it with `ulimit -n` or LimitNOFILE=)",
            limits.max_connections,
            file_limit().unwrap_or(0)
        );
    }
    // No one address may hold more than a quarter of all connections, so
    // one attacker cannot crowd out everyone else.
    let max_per_ip = limits.max_per_ip.min((max / 4).max(1));
    let slots = Arc::new(Semaphore::new(max));
    let per_ip = Arc::new(Mutex::new(HashMap::<IpAddr, usize>::new()));
    let serve = Arc::new(serve);
    let mut refused = Throttled::new();
    let mut failing = Throttled::new();
    let mut backoff = ACCEPT_BACKOFF_FIRST;
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut shutdown => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => {
                backoff = ACCEPT_BACKOFF_FIRST;
                a
            }
            Err(e) => {
                if let Some(more) = failing.due() {
                    tracing::warn!("{name}: cannot accept connections: {e}{more}; backing off");
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = &mut shutdown => return,
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if let Some(more) = refused.due() {
                tracing::warn!(
                    "{name}: {max} connections open, the cap: closing new ones (now from {peer}){more}"
                );
            }
            continue;
        };
        let exempt = limits
            .unlimited_sources
            .iter()
            .any(|n| n.contains(peer.ip()));
        let cap = if exempt { usize::MAX } else { max_per_ip };
        let Some(source) = SourceSlot::take(&per_ip, source_of(peer.ip()), cap) else {
            if let Some(more) = refused.due() {
                tracing::warn!(
                    "{name}: {max_per_ip} connections open from {}, the cap per address: closing new ones{more}",
                    peer.ip()
                );
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        // The connection holds its slots for as long as its socket lives:
        // past an `Upgrade`, that is the tunnel's life, not the handler's.
        let io = Guarded::new(stream, limits.idle_timeout).holding(Box::new((slot, source)));
        let serve = serve.clone();
        tokio::spawn(async move {
            serve(io, peer).await;
        });
    }
}

/// One connection counted against its source address's cap.
struct SourceSlot {
    table: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl SourceSlot {
    fn take(
        table: &Arc<Mutex<HashMap<IpAddr, usize>>>,
        ip: IpAddr,
        max: usize,
    ) -> Option<SourceSlot> {
        let mut t = table.lock().unwrap_or_else(|p| p.into_inner());
        let n = t.entry(ip).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(SourceSlot {
            table: table.clone(),
            ip,
        })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = t.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                t.remove(&self.ip);
            }
        }
    }
}

/// Logs a repeated event at most once per [`LOG_EVERY`], saying how many
/// were not logged.
#[derive(Debug, Default)]
pub struct Throttled {
    last: Option<std::time::Instant>,
    quiet: u64,
}

impl Throttled {
    pub fn new() -> Throttled {
        Throttled {
            last: None,
            quiet: 0,
        }
    }

    /// `Some(suffix)` when this one should be logged.
    pub fn due(&mut self) -> Option<String> {
        let now = std::time::Instant::now();
        if self.last.is_some_and(|t| now.duration_since(t) < LOG_EVERY) {
            self.quiet += 1;
            return None;
        }
        self.last = Some(now);
        let quiet = std::mem::take(&mut self.quiet);
        Some(if quiet > 0 {
            format!(" ({quiet} more since the last such line)")
        } else {
            String::new()
        })
    }
}
