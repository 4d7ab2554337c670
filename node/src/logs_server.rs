//! The node's log endpoint: `POST /v1/logs` with a request the conductor
//! signed (pinned key, this node's name, fresh, not served before). It serves workload output
//! and nothing else — a node still has no command port. Operators reach it
//! only through the conductor, which audits every read.

use crate::supervisor::Supervisor;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use skr8tr_net::server;
use skr8tr_proto::keys::PublicKey;
use skr8tr_proto::wire::{self, LogLine, ReplicaLog, Run, SignedLogRequest};
use std::sync::Arc;
use std::time::Duration;

/// Requests are a few kilobytes (a signature and a replica id).
const MAX_REQUEST_BYTES: usize = 16 * 1024;
/// Answers stay well within what the conductor reads from a node
/// (`wire::MAX_BODY_BYTES`), however long the replica's lines are.
const MAX_REPLY_BYTES: usize = 512 * 1024;

pub struct LogServer {
    pub supervisor: Arc<Supervisor>,
    pub conductor_key: PublicKey,
    pub node: String,
    /// Refused requests, logged once per interval.
    pub refused: std::sync::Mutex<server::Throttled>,
    /// Nonces of the requests served within the freshness window: each
    /// request is served once.
    pub served: std::sync::Mutex<Served>,
}

/// Most nonces remembered: a conductor follows a few replicas at a time,
/// two requests a second each, within a window of minutes.
pub const MAX_REMEMBERED: usize = 65_536;

/// The nonces of requests already served, with when each was issued;
/// older than the freshness window they are forgotten (such a request is
/// refused as stale anyway).
#[derive(Default)]
pub struct Served {
    seen: std::collections::HashMap<[u8; 16], u64>,
}

impl Served {
    /// Records `nonce`; false if it was served before.
    pub fn first(&mut self, nonce: [u8; 16], issued_at_ms: u64, now_ms: u64) -> bool {
        let window = 2 * skr8tr_proto::envelope::MAX_CLOCK_SKEW.as_millis() as u64;
        if self.seen.len() >= MAX_REMEMBERED {
            self.seen
                .retain(|_, at| now_ms.saturating_sub(*at) <= window);
        }
        if self.seen.len() >= MAX_REMEMBERED {
            // Still full of fresh ones: forget the oldest.
            if let Some(oldest) = self.seen.iter().min_by_key(|(_, at)| **at).map(|(n, _)| *n) {
                self.seen.remove(&oldest);
            }
        }
        self.seen.insert(nonce, issued_at_ms).is_none()
    }
}

impl LogServer {
    /// Accepts TLS connections (with the node's log identity, which the
    /// conductor pins from the node's reports), within `limits`, until
    /// the task is aborted.
    pub async fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        limits: server::Limits,
        tls: tokio_rustls::TlsAcceptor,
    ) {
        let http = limits.clone();
        server::serve(
            "log endpoint",
            listener,
            limits,
            std::future::pending(),
            move |io, _peer| {
                let me = self.clone();
                let http = http.clone();
                let tls = tls.clone();
                async move {
                    let Ok(io) = skr8tr_net::tls::accept(&tls, io, http.header_timeout).await
                    else {
                        return;
                    };
                    let body_timeout = http.body_timeout;
                    let service = hyper::service::service_fn(move |req| {
                        let me = me.clone();
                        async move {
                            Ok::<_, std::convert::Infallible>(me.handle(req, body_timeout).await)
                        }
                    });
                    let _ = http
                        .http1()
                        .serve_connection(TokioIo::new(io), service)
                        .await;
                }
            },
        )
        .await;
    }

    async fn handle(
        &self,
        req: Request<Incoming>,
        body_timeout: Duration,
    ) -> Response<Full<Bytes>> {
        if req.method() != hyper::Method::POST || req.uri().path() != "/v1/logs" {
            return reply(StatusCode::NOT_FOUND, b"not found".to_vec());
        }
        let body = server::DeadlineBody::new(req.into_body(), body_timeout);
        let body = match Limited::new(body, MAX_REQUEST_BYTES).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                let status = if e.is::<http_body_util::LengthLimitError>() {
                    StatusCode::PAYLOAD_TOO_LARGE
                } else {
                    StatusCode::REQUEST_TIMEOUT
                };
                return reply(status, format!("{e}").into_bytes());
            }
        };
        let now = skr8tr_proto::clock::now_ms();
        let (request, run) = match wire::decode::<SignedLogRequest>(&body)
            .and_then(|s| s.open(&self.conductor_key, &self.node, now))
            .and_then(|(r, run)| {
                let first = self.served.lock().unwrap_or_else(|p| p.into_inner()).first(
                    r.nonce,
                    r.issued_at_ms,
                    now,
                );
                if first {
                    Ok((r, run))
                } else {
                    Err("already served (a replayed request)".to_string())
                }
            }) {
            Ok(r) => r,
            Err(e) => {
                // Anyone can send these: counted into a line every 10 s at most.
                if let Some(more) = self.refused.lock().unwrap_or_else(|p| p.into_inner()).due() {
                    tracing::warn!("log request refused: {e}{more}");
                }
                return reply(StatusCode::FORBIDDEN, format!("refused: {e}").into_bytes());
            }
        };
        let limit = request.limit as usize;
        let lines = match run {
            Run::Current => self
                .supervisor
                .logs(
                    &request.replica,
                    if request.after_seq.is_some() {
                        usize::MAX
                    } else {
                        limit
                    },
                )
                .ok_or_else(|| format!("replica {} is not on node {}", request.replica, self.node)),
            Run::Previous => self.supervisor.previous_logs(&request.replica, limit).await,
        };
        let log = match lines {
            Ok(lines) => {
                let mut lines: Vec<LogLine> = lines
                    .into_iter()
                    .filter(|l| request.after_seq.is_none_or(|after| l.seq > after))
                    .map(|l| LogLine {
                        seq: l.seq,
                        at_ms: l.at_ms,
                        stderr: l.stream == crate::logs::Stream::Stderr,
                        text: l.text,
                    })
                    .collect();
                if lines.len() > limit {
                    lines.drain(..lines.len() - limit);
                }
                // Within what the conductor reads in one answer: the oldest
                // lines go first, so a follower still moves on.
                let mut bytes: usize = lines.iter().map(|l| l.text.len() + 32).sum();
                let mut cut = 0;
                while bytes > MAX_REPLY_BYTES && cut < lines.len() {
                    bytes -= lines[cut].text.len() + 32;
                    cut += 1;
                }
                lines.drain(..cut);
                ReplicaLog {
                    replica: request.replica,
                    node: self.node.clone(),
                    lines,
                    error: None,
                }
            }
            Err(error) => ReplicaLog {
                error: Some(error),
                replica: request.replica,
                node: self.node.clone(),
                lines: vec![],
            },
        };
        reply(StatusCode::OK, wire::encode(&log))
    }
}

fn reply(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_request_is_served_once_and_memory_stays_bounded() {
        let mut served = Served::default();
        let now = 1_800_000_000_000;
        assert!(served.first([1; 16], now, now));
        assert!(!served.first([1; 16], now, now + 5), "a replay is refused");
        assert!(served.first([2; 16], now, now));
        // Full of old nonces: they are forgotten, new ones are served.
        for i in 0..MAX_REMEMBERED as u32 {
            let mut n = [0u8; 16];
            n[..4].copy_from_slice(&i.to_le_bytes());
            n[15] = 7;
            served.first(n, now, now);
        }
        assert!(served.seen.len() <= MAX_REMEMBERED);
        let later = now + 10 * 60 * 1000;
        assert!(served.first([3; 16], later, later));
        assert!(
            served.seen.len() < 10,
            "stale nonces dropped: {}",
            served.seen.len()
        );
    }
}
