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

/// The latest render, shared with every page: the fragment, and the same
/// as one Server-Sent Event (framed once, shared by every stream).
struct Shown {
    cluster: String,
    fragment: String,
    event: Bytes,
}

impl Shown {
    fn new(cluster: String, fragment: String) -> Shown {
        let mut m = String::with_capacity(fragment.len() + 64);
        for line in fragment.split('\n') {
            m.push_str("data: ");
            m.push_str(line);
            m.push('\n');
        }
        m.push('\n');
        Shown {
            cluster,
            fragment,
            event: Bytes::from(m),
        }
    }
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
    let (tx, rx) = watch::channel(Arc::new(Shown::new(
        first.status.cluster.to_string(),
        render::fragment(&first, None),
    )));
    tokio::spawn(poll(client, tx, options.every));
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {} (--listen): {e}", options.listen))?;
    let addr = listener.local_addr()?;
    // The page's path holds a random token: the conductor's state is read
    // with your key, and another local user who reaches the port without
    // the address printed here gets nothing.
    let mut token = [0u8; 16];
    getrandom::fill(&mut token)
        .map_err(|e| anyhow::anyhow!("cannot make the page's token: {e}"))?;
    let base: Arc<str> = format!("/{}/", skr8tr_proto::hex::encode(&token)).into();
    println!("status page: http://{addr}{base} (read-only; Ctrl-C stops it)");
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
            let (rx, http, base) = (rx.clone(), http.clone(), base.clone());
            async move {
                let service = hyper::service::service_fn(move |req| {
                    let (rx, base) = (rx.clone(), base.clone());
                    async move { Ok::<_, Infallible>(answer(&req, addr, &base, rx, stream_for)) }
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
    let mut last: Option<State> = None;
    loop {
        tokio::time::sleep(every).await;
        let fragment = match read(&client).await {
            Ok(state) => {
                if failing {
                    eprintln!("the conductor answers again");
                    failing = false;
                }
                let f = render::fragment(&state, None);
                last = Some(state);
                f
            }
            Err(e) => {
                if !failing {
                    eprintln!("cannot read the conductor (the page says so): {e:#}");
                    failing = true;
                }
                let why = format!("{e:#}");
                match &last {
                    Some(state) => render::fragment(state, Some(&why)),
                    None => continue,
                }
            }
        };
        if fragment != tx.borrow().fragment {
            let cluster = tx.borrow().cluster.clone();
            tx.send_replace(Arc::new(Shown::new(cluster, fragment)));
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
    base: &str,
    rx: watch::Receiver<Arc<Shown>>,
    stream_for: Duration,
) -> Response<Body> {
    if !addressed_to_us(req, addr) {
        return plain(
            StatusCode::FORBIDDEN,
            format!("this page answers only to http://{addr}/"),
        );
    }
    // Another site's page (a `fetch`, a `<script src>`) is turned away.
    let site = req
        .headers()
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok());
    if site.is_some_and(|s| s != "same-origin" && s != "none") {
        return plain(StatusCode::FORBIDDEN, "same-origin only".into());
    }
    if req.method() != hyper::Method::GET {
        let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "read-only: GET only".into());
        r.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET"));
        return r;
    }
    let Some(path) = req.uri().path().strip_prefix(base) else {
        return plain(
            StatusCode::NOT_FOUND,
            "open the address `skr8tr ui` printed (it holds a token)".into(),
        );
    };
    match path {
        "" => {
            let shown = rx.borrow().clone();
            let html = render::page(&shown.fragment, &shown.cluster);
            with_headers(Response::new(full(html)), "text/html; charset=utf-8")
        }
        "ui.js" => with_headers(
            Response::new(full(render::SCRIPT.to_string())),
            "text/javascript; charset=utf-8",
        ),
        "events" => events(rx, stream_for),
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
    let mut names = vec![
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
        format!("{addr}"),
    ];
    // A browser leaves out the default port.
    if port == 80 {
        names.extend(["127.0.0.1".into(), "localhost".into(), "[::1]".into()]);
    }
    names.iter().any(|h| h.eq_ignore_ascii_case(host))
}

/// A stream of fragments, the current one first (a change made before
/// it connected is not missed), then each as it changes, for
/// `stream_for`; it ends as soon as the client goes away.
fn events(mut rx: watch::Receiver<Arc<Shown>>, stream_for: Duration) -> Response<Body> {
    let (tx, frames) = tokio::sync::mpsc::channel::<Bytes>(4);
    tokio::spawn(async move {
        let end = tokio::time::Instant::now() + stream_for;
        let first = rx.borrow_and_update().event.clone();
        let retry = Bytes::from(format!("retry: {RETRY_MS}\n\n"));
        if tx.send(retry).await.is_err() || tx.send(first).await.is_err() {
            return;
        }
        loop {
            let until = end.min(tokio::time::Instant::now() + HEARTBEAT);
            let message = tokio::select! {
                _ = tx.closed() => return,
                changed = tokio::time::timeout_at(until, rx.changed()) => match changed {
                    Ok(Ok(())) => rx.borrow_and_update().event.clone(),
                    Ok(Err(_)) => return,
                    Err(_) if tokio::time::Instant::now() >= end => return,
                    Err(_) => Bytes::from_static(b": still here\n\n"),
                },
            };
            if tx.send(message).await.is_err() {
                return;
            }
        }
    });
    with_headers(
        Response::new(BodyExt::boxed(Frames(frames))),
        "text/event-stream",
    )
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
    h.insert(
        "cross-origin-resource-policy",
        header::HeaderValue::from_static("same-origin"),
    );
    r
}
