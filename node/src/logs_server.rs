//! The node's log endpoint: `POST /v1/logs` with a request the conductor
//! signed (pinned key, this node's name, fresh). It serves workload output
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
use skr8tr_proto::wire::{self, LogLine, ReplicaLog, SignedLogRequest};
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
}

impl LogServer {
    /// Accepts connections, within `limits`, until the task is aborted.
    pub async fn serve(self: Arc<Self>, listener: tokio::net::TcpListener, limits: server::Limits) {
        let http = limits.clone();
        server::serve(
            "log endpoint",
            listener,
            limits,
            std::future::pending(),
            move |io, _peer| {
                let me = self.clone();
                let http = http.clone();
                async move {
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
        let request = match wire::decode::<SignedLogRequest>(&body)
            .and_then(|s| s.open(&self.conductor_key, &self.node, now))
        {
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
        let lines = self.supervisor.logs(
            &request.replica,
            if request.after_seq.is_some() {
                usize::MAX
            } else {
                limit
            },
        );
        let log = match lines {
            Some(lines) => {
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
            None => ReplicaLog {
                error: Some(format!(
                    "replica {} is not on node {}",
                    request.replica, self.node
                )),
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
