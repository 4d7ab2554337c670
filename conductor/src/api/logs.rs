//! `POST /v1/logs`: an operator's signed `logs` command is verified and
//! recorded like any command (reading workload output is audited), then the
//! conductor asks each replica's node with a request signed by its own key —
//! the only kind a node's log endpoint serves. With `follow`, the answer is
//! a stream of frames (u32 big-endian length, then postcard of
//! `Vec<ReplicaLog>`) with new lines every half second until the client
//! goes away.

use super::body;
use crate::state::Conductor;
use axum::body::{Body, Bytes};
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::Response;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use skr8tr_proto::code::Code;
use skr8tr_proto::command::Command;
use skr8tr_proto::wire::{self, LogRequest, ReplicaLog, Run, SignedLogRequest};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Lines returned per replica without `follow`.
const TAIL: u32 = 200;
const FOLLOW_EVERY: Duration = Duration::from_millis(500);
/// A follow stream ends after this long; `skr8tr logs -f` starts a new one.
const FOLLOW_FOR: Duration = Duration::from_secs(3600);
/// A quiet follow stream sends an empty frame this often, so the
/// connection is not idle (see `Limits::api.idle_timeout`).
const HEARTBEAT: Duration = Duration::from_secs(15);

pub async fn logs(
    State(c): State<Arc<Conductor>>,
    peer: Option<Extension<super::Peer>>,
    bytes: Bytes,
) -> Response {
    // Only `logs` is served here: anything else is turned away before it is
    // verified or applied (it belongs on /v1/commands).
    let is_logs = super::commands::claimed(&bytes)
        .is_some_and(|c| matches!(c, Command::Logs { .. } | Command::PreviousLogs { .. }));
    if !is_logs {
        return super::ApiError::new(
            Code::BadRequest,
            "only signed `logs` commands are read here",
        )
        .into_response_body();
    }
    let recorded = super::commands::record(&c, super::Peer::ip(peer), bytes).await;
    let Some(command) = recorded.command else {
        return body(recorded.status, &recorded.reply);
    };
    let (app, replica, follow, run) = match command {
        Command::Logs {
            app,
            replica,
            follow,
        } => (app, replica, follow, Run::Current),
        Command::PreviousLogs { app, replica } => (app, replica, false, Run::Previous),
        _ => {
            return super::ApiError::new(
                Code::BadRequest,
                "only signed `logs` commands are read here",
            )
            .into_response_body();
        }
    };
    let targets = match targets(&c, &app, replica.as_deref()) {
        Ok(t) => t,
        Err(e) => return e.into_response_body(),
    };
    if !follow {
        let asks = targets
            .iter()
            .map(|t| (t.clone(), TAIL, None, run))
            .collect();
        return body(StatusCode::OK, &fetch_all(&c, asks).await);
    }
    let stream = async_stream(c, targets);
    Response::builder()
        .status(StatusCode::OK)
        .header(axum::http::header::CONTENT_TYPE, wire::CONTENT_TYPE)
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

/// Where one replica's lines are read.
#[derive(Clone)]
struct Target {
    replica: String,
    node: String,
    /// Address, port and TLS pin of the node's log endpoint.
    endpoint: Option<(String, u16, [u8; 32])>,
}

fn targets(
    c: &Conductor,
    app: &str,
    replica: Option<&str>,
) -> Result<Vec<Target>, super::ApiError> {
    let snap = c.store.snapshot().map_err(super::ApiError::internal)?;
    let placements = snap.placements_of(app).map_err(super::ApiError::internal)?;
    let nodes = c.nodes();
    let out: Vec<Target> = placements
        .into_iter()
        .filter(|(id, _)| replica.is_none_or(|r| r == id))
        .map(|(id, p)| Target {
            endpoint: nodes.get(&p.node).and_then(|n| {
                let pin = n.report.logs_pin?;
                n.report
                    .logs_port
                    .map(|port| (n.report.address.clone(), port, pin))
            }),
            replica: id,
            node: p.node,
        })
        .collect();
    if out.is_empty() {
        return Err(super::ApiError::new(
            Code::NotFound,
            match replica {
                Some(r) => {
                    format!("app `{app}` has no replica `{r}`; `skr8tr ps {app}` lists them")
                }
                None => format!("app `{app}` has no replicas placed"),
            },
        ));
    }
    Ok(out)
}

/// Asks the replica's node for its lines; failures become the entry's error.
async fn fetch(
    c: &Arc<Conductor>,
    t: &Target,
    limit: u32,
    after_seq: Option<u64>,
    run: Run,
) -> ReplicaLog {
    let failed = |e: String| ReplicaLog {
        replica: t.replica.clone(),
        node: t.node.clone(),
        lines: vec![],
        error: Some(e),
    };
    let Some((address, port, pin)) = &t.endpoint else {
        return failed(format!("node {} has not reported a log endpoint", t.node));
    };
    let request = LogRequest {
        node: t.node.clone(),
        replica: t.replica.clone(),
        limit,
        after_seq,
        issued_at_ms: c.now_ms(),
        nonce: random_nonce(),
    };
    // An ML-DSA signature (about 1.5 ms, one per replica every 500 ms
    // while someone follows) goes to the blocking pool.
    let signer = c.clone();
    let signed = match tokio::task::spawn_blocking(move || {
        SignedLogRequest::sign(&signer.key, &request, run)
    })
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return failed(e.to_string()),
        Err(e) => return failed(e.to_string()),
    };
    match tokio::time::timeout(
        Duration::from_secs(5),
        post(address, *port, *pin, wire::encode(&signed)),
    )
    .await
    {
        Ok(Ok(bytes)) => {
            wire::decode(&bytes).unwrap_or_else(|e| failed(format!("unreadable answer: {e}")))
        }
        // A node of an older release knows no previous runs.
        Ok(Err(e))
            if run == Run::Previous && e.contains("not signed by the pinned conductor key") =>
        {
            failed(format!(
                "node {} cannot show previous runs (upgrade it): {e}",
                t.node
            ))
        }
        Ok(Err(e)) => failed(format!("node {} at {address}:{port}: {e}", t.node)),
        Err(_) => failed(format!("node {} did not answer", t.node)),
    }
}

/// One request on a fresh TLS connection to the node's pinned log
/// endpoint (log reads are rare and small).
async fn post(address: &str, port: u16, pin: [u8; 32], payload: Vec<u8>) -> Result<Bytes, String> {
    let stream = tokio::net::TcpStream::connect((address, port))
        .await
        .map_err(|e| e.to_string())?;
    let config = skr8tr_net::tls::client_config(skr8tr_net::Pin(pin)).map_err(|e| e.to_string())?;
    let name =
        rustls::pki_types::ServerName::try_from(address.to_string()).map_err(|e| e.to_string())?;
    let stream = tokio_rustls::TlsConnector::from(config)
        .connect(name, stream)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let request = hyper::Request::post("/v1/logs")
        .header(hyper::header::HOST, address)
        .body(Full::new(Bytes::from(payload)))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let bytes = Limited::new(response.into_body(), wire::MAX_BODY_BYTES)
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    if !status.is_success() {
        return Err(format!("{status}: {}", String::from_utf8_lossy(&bytes)));
    }
    Ok(bytes)
}

/// One replica's lines to ask for: how many, after which, which run.
type Ask = (Target, u32, Option<u64>, Run);

/// Log requests to nodes in flight at once, for one `logs` call.
const CONCURRENT_FETCHES: usize = 32;

/// Every target's lines, asked of the nodes at the same time (at most
/// [`CONCURRENT_FETCHES`] at once), in the targets' order.
async fn fetch_all(c: &Arc<Conductor>, asks: Vec<Ask>) -> Vec<ReplicaLog> {
    let turns = Arc::new(tokio::sync::Semaphore::new(CONCURRENT_FETCHES));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (target, limit, after, run)) in asks.into_iter().enumerate() {
        let (c, turns) = (c.clone(), turns.clone());
        tasks.spawn(async move {
            let _turn = turns.acquire_owned().await;
            (i, fetch(&c, &target, limit, after, run).await)
        });
    }
    let mut out = Vec::new();
    while let Some(done) = tasks.join_next().await {
        if let Ok(one) = done {
            out.push(one);
        }
    }
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, log)| log).collect()
}

/// Frames of new lines, polled from the nodes.
fn async_stream(
    c: Arc<Conductor>,
    targets: Vec<Target>,
) -> impl futures_core::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    tokio::spawn(async move {
        let mut after: HashMap<String, Option<u64>> =
            targets.iter().map(|t| (t.replica.clone(), None)).collect();
        let deadline = tokio::time::Instant::now() + FOLLOW_FOR;
        let mut last_sent = tokio::time::Instant::now();
        while tokio::time::Instant::now() < deadline {
            let asks = targets
                .iter()
                .map(|t| {
                    let since = after.get(&t.replica).copied().flatten();
                    let limit = if since.is_none() { TAIL } else { u32::MAX };
                    (t.clone(), limit, since, Run::Current)
                })
                .collect();
            // All nodes at once: a round takes one request's time (at most
            // its 5 s timeout), so heartbeats keep their pace.
            let mut batch = Vec::new();
            for log in fetch_all(&c, asks).await {
                let since = after.get(&log.replica).copied().flatten();
                if let Some(last) = log.lines.last() {
                    after.insert(log.replica.clone(), Some(last.seq));
                } else if since.is_none() && log.error.is_none() {
                    after.insert(log.replica.clone(), Some(0));
                }
                if !log.lines.is_empty() || log.error.is_some() {
                    batch.push(log);
                }
            }
            if !batch.is_empty() || last_sent.elapsed() >= HEARTBEAT {
                last_sent = tokio::time::Instant::now();
                let payload = wire::encode(&batch);
                let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
                frame.extend(payload);
                if tx.send(Bytes::from(frame)).await.is_err() {
                    return; // the client went away
                }
            }
            tokio::select! {
                _ = tx.closed() => return, // the client went away
                _ = tokio::time::sleep(FOLLOW_EVERY) => {}
            }
        }
    });
    ReceiverStream(rx)
}

/// An mpsc receiver as a body stream.
pub(super) struct ReceiverStream(pub(super) tokio::sync::mpsc::Receiver<Bytes>);

impl futures_core::Stream for ReceiverStream {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|o| o.map(Ok))
    }
}

/// 16 random bytes; all zeros if the system's generator fails (the node
/// then serves that request once, like any other).
pub(super) fn random_nonce() -> [u8; 16] {
    let mut n = [0u8; 16];
    let _ = getrandom::fill(&mut n);
    n
}
