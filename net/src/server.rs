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

use hyper::body::{Body, Frame, SizeHint};
use hyper_util::rt::TokioTimer;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};

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

/// A block of addresses, `10.0.0.0/8` or one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    network: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// `ADDR/PREFIX` or `ADDR`.
    pub fn parse(text: &str) -> Result<IpNet, String> {
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
        Ok(IpNet {
            network: network.to_canonical(),
            prefix,
        })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
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

/// Whom the per-address cap counts together: an IPv4 address (IPv4-mapped
/// IPv6 ones included), or an IPv6 /64 — one host's, on most networks.
pub fn source_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & (u128::MAX << 64);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
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

/// A connection that is closed once it moves no byte either way for its
/// idle timeout: reads and writes fail with `TimedOut` then. The timer runs
/// while the connection is polled — and hyper polls it while a handler
/// works, to see the client leave — so a handler that sends nothing for
/// that long is cut off too: long-polls answer sooner, streams send
/// heartbeats. It holds the connection's slots under the caps until it is
/// dropped.
pub struct Guarded<S> {
    inner: S,
    idle: Duration,
    last: Instant,
    timer: Pin<Box<Sleep>>,
    _held: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl<S> Guarded<S> {
    pub fn new(inner: S, idle: Duration) -> Guarded<S> {
        let now = Instant::now();
        Guarded {
            inner,
            idle,
            last: now,
            timer: Box::pin(tokio::time::sleep_until(now + idle)),
            _held: None,
        }
    }

    /// The same connection, keeping `held` alive as long as it lives.
    pub fn holding(mut self, held: Box<dyn std::any::Any + Send + Sync>) -> Guarded<S> {
        self._held = Some(held);
        self
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// After a pending read or write: whether the connection has been
    /// idle too long (the timer re-arms itself after progress).
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                return false;
            }
            let due = self.last + self.idle;
            if Instant::now() >= due {
                return true;
            }
            self.timer.as_mut().reset(due);
        }
    }
}

fn idle_error() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "the connection was idle too long")
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    self.last = Instant::now();
                }
                Poll::Ready(r)
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(idle_error())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S> Guarded<S> {
    /// A write's outcome: progress resets the idle clock; waiting too long
    /// becomes the idle error.
    fn wrote(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match r {
            Poll::Ready(r) => {
                if r.as_ref().is_ok_and(|n| *n > 0) {
                    self.last = Instant::now();
                }
                Poll::Ready(r)
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(idle_error())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Room for request bodies held in memory at once, across all
/// connections: a body is reserved for before it is read (its
/// `Content-Length`, or the daemon's body limit when it has none), so many
/// large uploads held just short of done cannot add up past it.
#[derive(Clone, Debug)]
pub struct BodyBudget {
    kib: Arc<Semaphore>,
    total_kib: usize,
}

/// Room reserved for one body; released when dropped.
pub struct Reservation(#[allow(dead_code)] Option<tokio::sync::OwnedSemaphorePermit>);

impl Reservation {
    /// No room held (a request without a body).
    pub fn none() -> Reservation {
        Reservation(None)
    }
}

impl BodyBudget {
    pub fn new(bytes: usize) -> BodyBudget {
        let total_kib = (bytes / 1024).clamp(1, Semaphore::MAX_PERMITS);
        BodyBudget {
            kib: Arc::new(Semaphore::new(total_kib)),
            total_kib,
        }
    }

    /// Room for a body of up to `bytes`; `None` while the budget is spent.
    pub fn reserve(&self, bytes: u64) -> Option<Reservation> {
        if bytes == 0 {
            return Some(Reservation(None));
        }
        let kib = usize::try_from(bytes.div_ceil(1024))
            .unwrap_or(usize::MAX)
            .min(self.total_kib);
        let n = u32::try_from(kib).unwrap_or(u32::MAX);
        self.kib
            .clone()
            .try_acquire_many_owned(n)
            .ok()
            .map(|p| Reservation(Some(p)))
    }
}

/// The error of a body that did not arrive in time.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
pub struct BodyTimeout(pub Duration);

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body that fails with [`BodyTimeout`] unless it arrives whole
/// within its deadline (counted from when it is wrapped: the head's
/// arrival). Catches a body trickled a byte a second, or stalled.
pub struct DeadlineBody<B> {
    inner: B,
    limit: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl<B> DeadlineBody<B> {
    pub fn new(inner: B, limit: Duration) -> DeadlineBody<B> {
        DeadlineBody {
            inner,
            limit,
            deadline: Box::pin(tokio::time::sleep(limit)),
        }
    }
}

impl<B> Body for DeadlineBody<B>
where
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending if self.deadline.as_mut().poll(cx).is_ready() => {
                Poll::Ready(Some(Err(Box::new(BodyTimeout(self.limit)))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper::{Request, Response};
    use hyper_util::rt::TokioIo;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn limits() -> Limits {
        Limits {
            max_connections: 100,
            max_per_ip: 100,
            header_timeout: Duration::from_millis(300),
            idle_timeout: Duration::from_millis(600),
            body_timeout: Duration::from_millis(400),
            max_header_bytes: 1024,
            unlimited_sources: Vec::new(),
        }
    }

    /// An HTTP server on the bounded listener: `/` answers at once, a
    /// body is read whole (within the body timeout) and its size returned.
    async fn server(limits: Limits) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let l = limits.clone();
        tokio::spawn(serve(
            "test",
            listener,
            limits,
            std::future::pending(),
            move |io, _peer| {
                let l = l.clone();
                async move {
                    let body_timeout = l.body_timeout;
                    let service = hyper::service::service_fn(
                        move |req: Request<hyper::body::Incoming>| async move {
                            let body = DeadlineBody::new(req.into_body(), body_timeout);
                            let text = match body.collect().await {
                                Ok(b) => format!("got {}", b.to_bytes().len()),
                                Err(e) => format!("failed: {e}"),
                            };
                            Ok::<_, std::convert::Infallible>(Response::new(Full::new(
                                Bytes::from(text),
                            )))
                        },
                    );
                    let _ = l.http1().serve_connection(TokioIo::new(io), service).await;
                }
            },
        ));
        addr
    }

    /// Reads until the server closes (or `within` passes): what came.
    async fn read_all(s: &mut TcpStream, within: Duration) -> Option<String> {
        let mut out = Vec::new();
        match tokio::time::timeout(within, s.read_to_end(&mut out)).await {
            Ok(_) => Some(String::from_utf8_lossy(&out).into_owned()),
            Err(_) => None,
        }
    }

    #[tokio::test]
    async fn past_the_cap_new_connections_are_closed_at_once() {
        let addr = server(Limits {
            max_connections: 2,
            ..limits()
        })
        .await;
        let _a = TcpStream::connect(addr).await.unwrap();
        let _b = TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut c = TcpStream::connect(addr).await.unwrap();
        let closed = read_all(&mut c, Duration::from_secs(5)).await;
        assert_eq!(closed.as_deref(), Some(""), "closed without an answer");
    }

    #[tokio::test]
    async fn a_connection_handed_on_keeps_its_slot_until_its_socket_closes() {
        // As after an `Upgrade`: the handler returns, the socket lives on.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = Limits {
            max_connections: 2,
            ..limits()
        };
        tokio::spawn(serve(
            "test",
            listener,
            limits,
            std::future::pending(),
            |io, _| async move {
                tokio::spawn(async move {
                    let _tunnel = io;
                    tokio::time::sleep(Duration::from_secs(30)).await;
                });
            },
        ));
        let _a = TcpStream::connect(addr).await.unwrap();
        let _b = TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut c = TcpStream::connect(addr).await.unwrap();
        assert_eq!(
            read_all(&mut c, Duration::from_secs(5)).await.as_deref(),
            Some(""),
            "the two tunnels still count"
        );
    }

    #[tokio::test]
    async fn one_address_gets_its_cap_and_others_still_get_in() {
        let addr = server(Limits {
            max_per_ip: 1,
            ..limits()
        })
        .await;
        // (A quarter of the 100 connections would allow 25: 1 is lower.)
        let _first = TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut second = TcpStream::connect(addr).await.unwrap();
        assert_eq!(
            read_all(&mut second, Duration::from_secs(5))
                .await
                .as_deref(),
            Some("")
        );
        // Another source address (all of 127.0.0.0/8 is this host).
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let mut other = socket.connect(addr).await.unwrap();
        other
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let answer = read_all(&mut other, Duration::from_secs(5)).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }

    #[tokio::test]
    async fn a_trickled_head_is_cut_off_at_the_header_timeout() {
        let addr = server(limits()).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        let started = std::time::Instant::now();
        s.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        for _ in 0..20 {
            if s.write_all(b"x").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let rest = read_all(&mut s, Duration::from_secs(5)).await;
        assert!(rest.is_some(), "the server closed the connection");
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_head_past_the_limit_is_answered_431() {
        let addr = server(limits()).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        let big = format!(
            "GET / HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
            "a".repeat(2000)
        );
        s.write_all(big.as_bytes()).await.unwrap();
        let answer = read_all(&mut s, Duration::from_secs(5)).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
        // Just under: served.
        let mut s = TcpStream::connect(addr).await.unwrap();
        let fits = format!(
            "GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-big: {}\r\n\r\n",
            "a".repeat(900)
        );
        s.write_all(fits.as_bytes()).await.unwrap();
        let answer = read_all(&mut s, Duration::from_secs(5)).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }

    #[tokio::test]
    async fn a_trickled_body_fails_at_the_body_timeout() {
        let addr = server(limits()).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(
            b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\nconnection: close\r\n\r\n",
        )
        .await
        .unwrap();
        for _ in 0..8 {
            let _ = s.write_all(b"y").await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let answer = read_all(&mut s, Duration::from_secs(5)).await.unwrap();
        assert!(
            answer.contains("failed: the request body did not arrive within"),
            "{answer}"
        );
        // A whole body in time is read.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(
            b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\nconnection: close\r\n\r\nabc",
        )
        .await
        .unwrap();
        let answer = read_all(&mut s, Duration::from_secs(5)).await.unwrap();
        assert!(answer.ends_with("got 3"), "{answer}");
    }

    #[tokio::test]
    async fn an_idle_connection_is_closed() {
        let addr = server(Limits {
            header_timeout: Duration::from_secs(60),
            ..limits()
        })
        .await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        let started = std::time::Instant::now();
        let rest = read_all(&mut s, Duration::from_secs(5)).await;
        assert_eq!(rest.as_deref(), Some(""));
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(500) && took < Duration::from_secs(3),
            "{took:?}"
        );
    }

    #[test]
    fn sources_are_hosts_and_blocks_contain_their_addresses() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(source_of(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
        assert_eq!(source_of(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(
            source_of(ip("2001:db8:1:2:bbbb::9")),
            source_of(ip("2001:db8:1:2::7"))
        );
        assert_ne!(
            source_of(ip("2001:db8:1:3::1")),
            source_of(ip("2001:db8:1:2::1"))
        );
        let net = IpNet::parse("192.168.0.0/16").unwrap();
        assert!(net.contains(ip("192.168.4.2")));
        assert!(!net.contains(ip("192.169.0.1")));
        assert!(net.contains(ip("::ffff:192.168.1.1")), "v4-mapped");
        assert!(IpNet::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(IpNet::parse("10.0.0.1").unwrap().contains(ip("10.0.0.1")));
        assert!(!IpNet::parse("10.0.0.1").unwrap().contains(ip("10.0.0.2")));
        assert!(IpNet::parse("fd00::/8").unwrap().contains(ip("fd12::1")));
        for bad in ["", "10.0.0.0/33", "x/8", "10.0.0.0/-1", "fd00::/129"] {
            assert!(IpNet::parse(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn an_exempt_source_is_not_held_to_the_per_address_cap() {
        let addr = server(Limits {
            max_per_ip: 1,
            unlimited_sources: vec![IpNet::parse("127.0.0.1").unwrap()],
            ..limits()
        })
        .await;
        let _first = TcpStream::connect(addr).await.unwrap();
        let mut second = TcpStream::connect(addr).await.unwrap();
        second
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let answer = read_all(&mut second, Duration::from_secs(5)).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }

    #[test]
    fn bodies_in_memory_stay_within_their_budget() {
        let budget = BodyBudget::new(10 * 1024);
        let a = budget.reserve(6 * 1024).unwrap();
        assert!(budget.reserve(5 * 1024).is_none(), "over the budget");
        let b = budget.reserve(4 * 1024).unwrap();
        assert!(budget.reserve(1).is_none());
        assert!(budget.reserve(0).is_some(), "no body needs no room");
        drop(a);
        assert!(budget.reserve(5 * 1024).is_some());
        drop(b);
        assert!(
            budget.reserve(u64::MAX).is_some(),
            "a huge claim takes all, not more"
        );
    }

    #[test]
    fn the_cap_leaves_room_under_the_file_limit() {
        assert_eq!(
            effective_max_connections(4096, Some(1024)),
            1024 - FD_RESERVE
        );
        assert_eq!(effective_max_connections(100, Some(1024)), 100);
        assert_eq!(effective_max_connections(4096, Some(100)), 50);
        assert_eq!(effective_max_connections(4096, None), 4096);
        assert!(file_limit().is_some_and(|n| n > 0));
    }
}
