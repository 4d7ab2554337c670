//! Requests in flight, counted three ways, so that HTTP/2 is bounded as
//! HTTP/1.1 is:
//! - over all connections, at most the client connection cap: an HTTP/1.1
//!   connection has one request in flight, so this is the number of
//!   backend sockets HTTP/1.1 could hold anyway, now also for HTTP/2's
//!   streams (a client that stalls its receive window holds a backend
//!   connection per stream);
//! - per source address (as the per-address connection cap groups them),
//!   at most the per-address connection cap, on HTTP/2 connections (an
//!   HTTP/1.1 connection is already bounded by that cap);
//! - per connection, only counted: an HTTP/2 connection with nothing in
//!   flight for the head timeout is closed, as an idle HTTP/1.1 keep-alive
//!   connection is, however many PINGs keep its bytes moving ([`Conn`]).
//!
//! A request past a cap is answered at once (503 over all, 429 for one
//! address) and holds nothing. An entry lasts until the response body is
//! sent or dropped ([`Held`]).

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

pub struct Gate {
    total: AtomicUsize,
    max_total: usize,
    per_source: Mutex<HashMap<IpAddr, usize>>,
    max_per_source: usize,
}

/// Why a request was not let in.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    Total(usize),
    Source(IpAddr, usize),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Total(n) => write!(f, "the ingress has {n} requests in flight; try again"),
            Refused::Source(ip, n) => write!(
                f,
                "{ip} has {n} requests in flight here; wait for some to finish"
            ),
        }
    }
}

impl Gate {
    pub fn new(max_total: usize, max_per_source: usize) -> Arc<Gate> {
        Arc::new(Gate {
            total: AtomicUsize::new(0),
            max_total: max_total.max(1),
            per_source: Mutex::new(HashMap::new()),
            max_per_source: max_per_source.max(1),
        })
    }

    /// Lets a request in, counted over all connections, for its source
    /// when `per_source` (HTTP/2), and on its connection.
    pub fn enter(
        self: &Arc<Gate>,
        client: IpAddr,
        per_source: bool,
        conn: &Arc<Conn>,
    ) -> Result<Entry, Refused> {
        let admitted = self
            .total
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_total).then_some(n + 1)
            });
        if admitted.is_err() {
            return Err(Refused::Total(self.max_total));
        }
        let source = per_source.then(|| skr8tr_net::server::source_of(client));
        if let Some(source) = source {
            let mut counts = self.per_source.lock().unwrap_or_else(|p| p.into_inner());
            let n = counts.entry(source).or_insert(0);
            if *n >= self.max_per_source {
                drop(counts);
                self.total.fetch_sub(1, Ordering::AcqRel);
                return Err(Refused::Source(source, self.max_per_source));
            }
            *n += 1;
        }
        conn.in_flight.fetch_add(1, Ordering::AcqRel);
        Ok(Entry {
            gate: self.clone(),
            source,
            conn: conn.clone(),
        })
    }
}

/// One request let in; leaving on drop.
pub struct Entry {
    gate: Arc<Gate>,
    source: Option<IpAddr>,
    conn: Arc<Conn>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        if let Some(source) = self.source {
            let mut counts = self
                .gate
                .per_source
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if let Some(n) = counts.get_mut(&source) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    counts.remove(&source);
                }
            }
        }
        self.gate.total.fetch_sub(1, Ordering::AcqRel);
        self.conn.leave();
    }
}

/// One client connection's requests in flight, and since when it has had
/// none.
pub struct Conn {
    started: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `started` when the last request left.
    quiet_from_ms: AtomicU64,
}

impl Conn {
    pub fn new() -> Arc<Conn> {
        Arc::new(Conn {
            started: Instant::now(),
            in_flight: AtomicUsize::new(0),
            quiet_from_ms: AtomicU64::new(0),
        })
    }

    fn leave(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.quiet_from_ms.store(ms, Ordering::Release);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    /// How long the connection has had no request in flight, or `None`
    /// while it has one.
    pub fn quiet_for(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let from = Duration::from_millis(self.quiet_from_ms.load(Ordering::Acquire));
        Some(self.started.elapsed().saturating_sub(from))
    }
}

/// A response body holding its request's [`Entry`] until it is sent or
/// dropped (a reset stream, a closed connection).
pub struct Held<B> {
    body: B,
    _entry: Option<Entry>,
}

impl<B> Held<B> {
    pub fn new(body: B, entry: Option<Entry>) -> Held<B> {
        Held {
            body,
            _entry: entry,
        }
    }
}

impl<B> Body for Held<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_over_all_and_per_source_refuse_and_release() {
        let gate = Gate::new(3, 2);
        let conn = Conn::new();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = gate.enter(a, true, &conn).unwrap();
        let _a2 = gate.enter(a, true, &conn).unwrap();
        assert_eq!(
            gate.enter(a, true, &conn).err(),
            Some(Refused::Source(a, 2))
        );
        assert_eq!(
            gate.total.load(Ordering::Acquire),
            2,
            "a refused request holds nothing"
        );
        let _b1 = gate.enter(b, true, &conn).unwrap();
        assert_eq!(gate.enter(b, false, &conn).err(), Some(Refused::Total(3)));
        assert!(conn.quiet_for().is_none(), "requests are in flight");
        drop(a1);
        let _a3 = gate.enter(a, true, &conn).unwrap();
        assert_eq!(gate.total.load(Ordering::Acquire), 3);
    }

    #[test]
    fn a_connection_is_quiet_from_when_its_last_request_left() {
        let gate = Gate::new(10, 10);
        let conn = Conn::new();
        let e = gate
            .enter("10.0.0.1".parse().unwrap(), false, &conn)
            .unwrap();
        std::thread::sleep(Duration::from_millis(30));
        assert!(conn.quiet_for().is_none());
        drop(e);
        let quiet = conn.quiet_for().unwrap();
        assert!(quiet < Duration::from_millis(25), "{quiet:?}");
        assert_eq!(gate.total.load(Ordering::Acquire), 0);
        assert!(gate.per_source.lock().unwrap().is_empty());
    }
}
