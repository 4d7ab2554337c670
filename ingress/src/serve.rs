//! One client connection, in the protocol it speaks: HTTP/2 when TLS
//! negotiated `h2` by ALPN, HTTP/2 or HTTP/1.1 told apart by the first
//! bytes on a plain connection when `--h2c` allows cleartext HTTP/2, and
//! HTTP/1.1 otherwise. Backends are always reached over pooled HTTP/1.1.
//!
//! HTTP/2's bounds: at most [`MAX_STREAMS`] requests at once per
//! connection, header lists of at most [`MAX_H2_HEADER_LIST`] decoded
//! bytes, requests in flight capped over all connections and per source
//! address ([`crate::gate`]), a connection with no request in flight for
//! the head timeout sent a GOAWAY and, a head timeout later, dropped
//! ([`quiet_close`]), and hyper's h2 defences (resets without a request,
//! pending-accept limits) as they come. HTTP/2 is opt-in (`--http2`,
//! `--h2c`).

use crate::gate::{self, Held};
use crate::proxy;
use crate::state::Shared;
use hyper::Response;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// Requests one HTTP/2 connection may have in flight.
pub const MAX_STREAMS: u32 = 32;
/// The largest HTTP/2 header list (decoded), whatever `--max-header` says:
/// HPACK lets a few bytes stand for a long header, so this stays at h2's
/// own default.
pub const MAX_H2_HEADER_LIST: u32 = 16 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
    /// Plain TCP with `--h2c`: HTTP/2 prior knowledge or HTTP/1.1.
    Either,
}

pub async fn serve<S>(
    shared: Arc<Shared>,
    client: std::net::SocketAddr,
    stream: S,
    tls: bool,
    protocol: Protocol,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let limits = shared.config.limits.clients.clone();
    let _open = shared.metrics.connection();
    let conn = gate::Conn::new();
    let per_source = protocol != Protocol::Http1;
    let watched = conn.clone();
    let service = hyper::service::service_fn(move |req| {
        let shared = shared.clone();
        let entry = shared.gate.enter(client.ip(), per_source, &conn);
        async move {
            let response = match entry {
                Ok(entry) => proxy::handle(shared, client, tls, req)
                    .await
                    .map(|body| Held::new(body, Some(entry))),
                Err(refused) => {
                    let status = match refused {
                        gate::Refused::Total(_) => hyper::StatusCode::SERVICE_UNAVAILABLE,
                        gate::Refused::Source(..) => hyper::StatusCode::TOO_MANY_REQUESTS,
                    };
                    shared.metrics.request(None, status.as_u16());
                    proxy::local(status, refused.to_string()).map(|body| Held::new(body, None))
                }
            };
            Ok::<Response<Held<proxy::Body>>, std::convert::Infallible>(response)
        }
    });
    let io = TokioIo::new(stream);
    let quiet = limits.header_timeout;
    let result = match protocol {
        Protocol::Http1 => limits
            .http1()
            .serve_connection(io, service)
            .with_upgrades()
            .await
            .map_err(|e| e.to_string()),
        Protocol::Http2 => {
            let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
            b.timer(TokioTimer::new())
                .max_concurrent_streams(MAX_STREAMS)
                .max_header_list_size((limits.max_header_bytes as u32).min(MAX_H2_HEADER_LIST));
            let mut connection = std::pin::pin!(b.serve_connection(io, service));
            quiet_close(
                connection.as_mut(),
                |c| c.graceful_shutdown(),
                &watched,
                quiet,
            )
            .await
        }
        Protocol::Either => {
            let mut b = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            b.http1()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .max_buf_size(limits.max_header_bytes.saturating_add(1024).max(8192));
            b.http2()
                .timer(TokioTimer::new())
                .max_concurrent_streams(MAX_STREAMS)
                .max_header_list_size((limits.max_header_bytes as u32).min(MAX_H2_HEADER_LIST));
            let mut connection = std::pin::pin!(b.serve_connection_with_upgrades(io, service));
            quiet_close(
                connection.as_mut(),
                |c| c.graceful_shutdown(),
                &watched,
                quiet,
            )
            .await
        }
    };
    if let Err(e) = result {
        tracing::debug!("connection from {client}: {e}");
    }
}

/// Serves `connection` until it ends; once it has had no request in
/// flight for `quiet`, asks it to close (`shutdown`: a GOAWAY, then the
/// streams it has finish), and drops it if it is still open `quiet` later
/// with nothing in flight (a peer that never finished its preface, or
/// never reads the GOAWAY).
async fn quiet_close<C, E>(
    mut connection: Pin<&mut C>,
    shutdown: impl Fn(Pin<&mut C>),
    conn: &gate::Conn,
    quiet: Duration,
) -> Result<(), String>
where
    C: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut asked = false;
    loop {
        let wait = match conn.quiet_for() {
            None => quiet,
            Some(q) if q >= quiet && !asked => {
                shutdown(connection.as_mut());
                asked = true;
                quiet
            }
            Some(q) if q >= quiet => {
                return Err("still open with nothing in flight after a GOAWAY; dropped".into());
            }
            Some(q) => quiet - q,
        };
        tokio::select! {
            result = connection.as_mut() => return result.map_err(|e| e.to_string()),
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
