//! `skr8tr ui`: a read-only status page on a loopback address, as
//! `kubectl proxy` and `nomad ui` are. The CLI reads the conductor with
//! the operator's own key (the browser never holds a credential), renders
//! the page here, and keeps it current over Server-Sent Events: one
//! poller reads the conductor every `every` and, when the rendered
//! fragment changed, every open page gets it. No framework, no CDN: one
//! small script the page loads from here.
//!
//! The listener answers only requests addressed to it by a loopback name
//! (a page elsewhere cannot reach it by DNS rebinding), with a CSP that
//! allows only its own script, and within the usual bounds.

pub mod render;

use crate::api::{self, Ctx};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Frame;
use hyper::{Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use render::State;
use skr8tr_net::Client;
use skr8tr_net::server::{self, Limits};
use skr8tr_proto::wire::{HistoryPage, NodeView, ReplicaView, StatusReply};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How the page is served.
pub struct Options {
    pub listen: SocketAddr,
    /// How often the conductor is read.
    pub every: Duration,
    /// How long one event stream lasts before the browser opens another.
    pub stream_for: Duration,
}

/// History entries shown.
const HISTORY: usize = 10;
/// A quiet event stream sends a comment this often (the connection's idle
/// timeout is 30 s).
const HEARTBEAT: Duration = Duration::from_secs(15);
/// What the browser waits before it reconnects a stream that ended.
const RETRY_MS: u64 = 5000;

const CSP: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; \
                   style-src 'unsafe-inline'; img-src 'self'; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

/// The latest render, shared with every page.
struct Shown {
    cluster: String,
    fragment: String,
}

type Body = BoxBody<Bytes, Infallible>;

/// Serves the page until Ctrl-C.
pub async fn serve(ctx: &Ctx, options: Options) -> anyhow::Result<()> {
    if !options.listen.ip().is_loopback() {
        anyhow::bail!(
            "--listen {}: the status page reads the conductor with your key, so it serves a \
             loopback address only (127.0.0.1:PORT or [::1]:PORT)",
            options.listen
        );
    }
    let client = ctx.client()?;
    let first = read(&client).await?;
    let (tx, rx) = watch::channel(Arc::new(Shown {
        cluster: first.status.cluster.to_string(),
        fragment: render::fragment(&first),
    }));
    tokio::spawn(poll(client, tx, options.every));
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {} (--listen): {e}", options.listen))?;
    let addr = listener.local_addr()?;
    println!("status page: http://{addr}/ (read-only; Ctrl-C stops it)");
    let limits = Limits {
        max_connections: 32,
        max_per_ip: 8,
        header_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(30),
        body_timeout: Duration::from_secs(5),
        max_header_bytes: 16 * 1024,
        unlimited_sources: Vec::new(),
    };
    let http = limits.clone();
    let stream_for = options.stream_for;
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    server::serve(
        "status page",
        listener,
        limits,
        shutdown,
        move |io, _peer| {
            let (rx, http) = (rx.clone(), http.clone());
            async move {
                let service = hyper::service::service_fn(move |req| {
                    let rx = rx.clone();
                    async move { Ok::<_, Infallible>(answer(&req, addr, rx, stream_for)) }
                });
                let _ = http
                    .http1()
                    .serve_connection(TokioIo::new(io), service)
                    .await;
            }
        },
    )
    .await;
    Ok(())
}

/// Reads the conductor every `every`; a changed render goes to every page.
async fn poll(client: Client, tx: watch::Sender<Arc<Shown>>, every: Duration) {
    let mut failing = false;
    loop {
        tokio::time::sleep(every).await;
        match read(&client).await {
            Ok(state) => {
                if failing {
                    eprintln!("the conductor answers again");
                    failing = false;
                }
                let fragment = render::fragment(&state);
                if fragment != tx.borrow().fragment {
                    let cluster = state.status.cluster.to_string();
                    tx.send_replace(Arc::new(Shown { cluster, fragment }));
                }
            }
            Err(e) if !failing => {
                eprintln!("cannot read the conductor (the page shows the last state): {e:#}");
                failing = true;
            }
            Err(_) => {}
        }
    }
}

async fn read(client: &Client) -> anyhow::Result<State> {
    let status: StatusReply = api::get(client, "/v1/status").await?;
    let nodes: Vec<NodeView> = api::get(client, "/v1/nodes").await?;
    let replicas: Vec<ReplicaView> = api::get(client, "/v1/replicas").await?;
    let history: HistoryPage = api::get(client, &format!("/v1/history?limit={HISTORY}")).await?;
    Ok(State {
        status,
        nodes,
        replicas,
        history: history.entries,
    })
}

fn answer<B>(
    req: &Request<B>,
    addr: SocketAddr,
    rx: watch::Receiver<Arc<Shown>>,
    stream_for: Duration,
) -> Response<Body> {
    if !addressed_to_us(req, addr) {
        return plain(
            StatusCode::FORBIDDEN,
            format!("this page answers only to http://{addr}/"),
        );
    }
    if req.method() != hyper::Method::GET {
        let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "read-only: GET only".into());
        r.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET"));
        return r;
    }
    match req.uri().path() {
        "/" => {
            let shown = rx.borrow().clone();
            let html = render::page(&shown.fragment, &shown.cluster);
            with_headers(Response::new(full(html)), "text/html; charset=utf-8")
        }
        "/ui.js" => with_headers(
            Response::new(full(render::SCRIPT.to_string())),
            "text/javascript; charset=utf-8",
        ),
        "/events" => events(rx, stream_for),
        _ => plain(StatusCode::NOT_FOUND, "not found".into()),
    }
}

/// The `Host` names this listener: a loopback name and its port.
fn addressed_to_us<B>(req: &Request<B>, addr: SocketAddr) -> bool {
    let Some(host) = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
    else {
        return false;
    };
    let port = addr.port();
    [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
        format!("{addr}"),
    ]
    .iter()
    .any(|h| h.eq_ignore_ascii_case(host))
}

/// A stream of fragments as they change, for `stream_for`.
fn events(mut rx: watch::Receiver<Arc<Shown>>, stream_for: Duration) -> Response<Body> {
    let (tx, frames) = tokio::sync::mpsc::channel::<Bytes>(4);
    tokio::spawn(async move {
        let end = tokio::time::Instant::now() + stream_for;
        rx.borrow_and_update();
        if tx
            .send(Bytes::from(format!("retry: {RETRY_MS}\n\n")))
            .await
            .is_err()
        {
            return;
        }
        loop {
            let wait = tokio::time::timeout_at(
                end.min(tokio::time::Instant::now() + HEARTBEAT),
                rx.changed(),
            );
            let message = match wait.await {
                Ok(Ok(())) => {
                    let shown = rx.borrow_and_update().clone();
                    let mut m = String::with_capacity(shown.fragment.len() + 64);
                    for line in shown.fragment.split('\n') {
                        m.push_str("data: ");
                        m.push_str(line);
                        m.push('\n');
                    }
                    m.push('\n');
                    m
                }
                Ok(Err(_)) => return,
                Err(_) if tokio::time::Instant::now() >= end => return,
                Err(_) => ": still here\n\n".to_string(),
            };
            if tx.send(Bytes::from(message)).await.is_err() {
                return;
            }
        }
    });
    let mut r = Response::new(BodyExt::boxed(Frames(frames)));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/event-stream"),
    );
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    r
}

/// A channel of chunks as a response body.
struct Frames(tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for Frames {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

fn full(text: String) -> Body {
    BodyExt::boxed(Full::new(Bytes::from(text)))
}

fn plain(status: StatusCode, text: String) -> Response<Body> {
    let mut r = with_headers(
        Response::new(full(text + "\n")),
        "text/plain; charset=utf-8",
    );
    *r.status_mut() = status;
    r
}

fn with_headers(mut r: Response<Body>, content_type: &'static str) -> Response<Body> {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("no-referrer"),
    );
    r
}
