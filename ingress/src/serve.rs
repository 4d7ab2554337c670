//! One client connection, in the protocol it speaks: HTTP/2 when TLS
//! negotiated `h2` by ALPN, HTTP/2 or HTTP/1.1 told apart by the first
//! bytes on a plain connection when `--h2c` allows cleartext HTTP/2, and
//! HTTP/1.1 otherwise. Backends are always reached over pooled HTTP/1.1.
//!
//! HTTP/2's bounds: at most [`MAX_STREAMS`] requests at once per
//! connection, header lists of at most [`MAX_H2_HEADER_LIST`] decoded
//! bytes, and hyper's h2 defences (resets without a request,
//! pending-accept limits) as they come. HTTP/2 is opt-in (`--http2`,
//! `--h2c`): ARCHITECTURE lists what it does not bound yet.

use crate::proxy;
use crate::state::Shared;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::sync::Arc;

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
    let service = hyper::service::service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, std::convert::Infallible>(proxy::handle(shared, client, tls, req).await) }
    });
    let io = TokioIo::new(stream);
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
            b.serve_connection(io, service)
                .await
                .map_err(|e| e.to_string())
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
            b.serve_connection_with_upgrades(io, service)
                .await
                .map_err(|e| e.to_string())
        }
    };
    if let Err(e) = result {
        tracing::debug!("connection from {client}: {e}");
    }
}
