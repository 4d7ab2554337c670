//! Forwarding one request: route, pick a backend (round robin over the
//! app's ready endpoints, skipping ejected ones), rewrite headers, send on a
//! kept-alive connection (`pool`), retry where it is safe, log the outcome.
//!
//! Round robin rather than least-outstanding: replicas of one app are alike
//! and requests short, so rotating is as fair and needs no shared counters
//! per request. Retries: a connection that could not be made carries no
//! request, so any method goes to the next endpoint (and the endpoint is
//! ejected for a while); a failure after sending retries only idempotent
//! methods.

use crate::headers;
use crate::routes;
use crate::state::Shared;
use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode, Uri};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// A backend's body streamed through, or a short local answer: no boxing
/// per response.
pub type Body = Either<Incoming, Full<Bytes>>;

pub(crate) fn local(status: StatusCode, text: String) -> Response<Body> {
    let mut r = Response::new(Either::Right(Full::new(Bytes::from(text + "\n"))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

pub async fn handle(
    shared: Arc<Shared>,
    client: SocketAddr,
    tls: bool,
    req: Request<Incoming>,
) -> Response<Body> {
    let proto = if tls { "https" } else { "http" };
    if !shared.config.access_log {
        let (response, _, route) = forward(&shared, client, proto, req).await;
        shared
            .metrics
            .request(route.as_ref(), response.status().as_u16());
        return response;
    }
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let (response, backend, route) = forward(&shared, client, proto, req).await;
    shared
        .metrics
        .request(route.as_ref(), response.status().as_u16());
    tracing::info!(
        %method,
        path = %path,
        status = response.status().as_u16(),
        backend = backend.as_deref().unwrap_or("-"),
        ms = format!("{:.2}", started.elapsed().as_secs_f64() * 1000.0),
        "request"
    );
    response
}

/// Why a request is refused before it is routed, if it is.
fn malformed(req: &Request<Incoming>) -> Option<&'static str> {
    if req.version() == hyper::Version::HTTP_11 && !req.headers().contains_key(hyper::header::HOST)
    {
        return Some("an HTTP/1.1 request needs a Host header");
    }
    let mut hosts = req.headers().get_all(hyper::header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Some("the request has two Host headers (RFC 9112 3.2); send one");
    }
    // Routing is by host: a Host the ingress cannot read is refused, not
    // passed on for the app to read another way.
    if let Some(h) = host
        && h.to_str()
            .ok()
            .and_then(|h| h.parse::<hyper::http::uri::Authority>().ok())
            .is_none_or(|a| a.as_str().contains('@'))
    {
        return Some("the Host header is not a host[:port]; send one");
    }
    // An absolute-form target (HTTP/1.1) or `:authority` (HTTP/2) must
    // name the same host as `Host`: the app and the ingress route alike.
    if let (Some(host), Some(authority)) = (host, req.uri().authority())
        && host.as_bytes() != authority.as_str().as_bytes()
    {
        return Some("the Host header and the request's authority differ; send one host");
    }
    if has_dot_segments(req.uri().path()) {
        return Some(
            "the path has `.` or `..` segments, or an encoded slash; send it without them",
        );
    }
    None
}

/// Whether a path could mean another path to the backend than the one it
/// is routed by: a `.` or `..` segment (written out, percent-encoded, or
/// with a `;parameter` as Tomcat reads it), a segment starting with `..`,
/// an encoded slash or backslash (`%2f`, `%5c`), or a backslash.
pub fn has_dot_segments(path: &str) -> bool {
    // The common path, on every request: no dot, escape or backslash.
    if !path.bytes().any(|b| matches!(b, b'.' | b'%' | b'\\')) {
        return false;
    }
    if path.contains('\\') {
        return true;
    }
    let lower = path.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%5c") {
        return true;
    }
    lower.split('/').any(|segment| {
        let decoded = segment.replace("%2e", ".");
        let name = decoded.split(';').next().unwrap_or("");
        name == "." || name.starts_with("..")
    })
}

/// A request body within the size limit and its deadline, in room reserved
/// in the body budget (held by the caller while the body is).
async fn read_body(
    shared: &Shared,
    body: Incoming,
) -> Result<(Bytes, skr8tr_net::server::Reservation), Response<Body>> {
    let limits = &shared.config.limits;
    if hyper::body::Body::is_end_stream(&body) {
        // No body (a GET): nothing to wait for or hold.
        return Ok((Bytes::new(), skr8tr_net::server::Reservation::none()));
    }
    let claim = hyper::body::Body::size_hint(&body)
        .upper()
        .unwrap_or(u64::MAX)
        .min(limits.max_body_bytes as u64);
    let Some(room) = shared.bodies.reserve(claim) else {
        return Err(local(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many request bodies in flight; try again".into(),
        ));
    };
    let body = skr8tr_net::server::DeadlineBody::new(body, limits.clients.body_timeout);
    match Limited::new(body, limits.max_body_bytes).collect().await {
        Ok(b) => Ok((b.to_bytes(), room)),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(local(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body larger than {} bytes", limits.max_body_bytes),
        )),
        Err(e) if e.is::<skr8tr_net::server::BodyTimeout>() => {
            Err(local(StatusCode::REQUEST_TIMEOUT, e.to_string()))
        }
        Err(e) => Err(local(
            StatusCode::BAD_REQUEST,
            format!("the request body could not be read: {e}"),
        )),
    }
}

/// Which backend answered, shared with the registry's table (not copied).
type Answered = Option<Arc<str>>;

/// The label and app of the route that took a request.
type Taken = Option<(Arc<str>, Arc<str>)>;

/// Forwards `req`; says which backend answered and which route took it.
async fn forward(
    shared: &Shared,
    client: SocketAddr,
    proto: &str,
    req: Request<Incoming>,
) -> (Response<Body>, Answered, Taken) {
    if let Some(why) = malformed(&req) {
        return (local(StatusCode::BAD_REQUEST, why.to_string()), None, None);
    }
    let path = req.uri().path();
    let host = routes::request_host(
        req.headers()
            .get(hyper::header::HOST)
            .and_then(|h| h.to_str().ok()),
        req.uri().authority().map(|a| a.as_str()),
    );
    let table = shared.routes();
    let Some(index) = routes::route_index(&table.routes, host.as_deref(), path) else {
        return (
            local(StatusCode::NOT_FOUND, format!("no route for {path}")),
            None,
            None,
        );
    };
    let app = table.routes[index].app.clone();
    let (response, answered) = forward_to(shared, client, proto, req, &app).await;
    (response, answered, table.labels.get(index).cloned())
}

async fn forward_to(
    shared: &Shared,
    client: SocketAddr,
    proto: &str,
    req: Request<Incoming>,
    app: &str,
) -> (Response<Body>, Answered) {
    let endpoints = shared.endpoints(app);
    if endpoints.is_empty() {
        let msg = format!("app `{app}` has no ready replica");
        return (local(StatusCode::SERVICE_UNAVAILABLE, msg), None);
    }
    if req.headers().contains_key(hyper::header::UPGRADE) {
        let backend = endpoints[shared.next_index() % endpoints.len()].clone();
        return upgrade(shared, client, proto, req, backend).await;
    }
    let (mut parts, body) = req.into_parts();
    let (body, _room) = match read_body(shared, body).await {
        Ok(b) => b,
        Err(response) => return (response, None),
    };
    headers::strip_hop_by_hop(&mut parts.headers);
    // HTTP/2 carries the host in `:authority`; the HTTP/1.1 backend needs
    // it as `Host`.
    if !parts.headers.contains_key(hyper::header::HOST)
        && let Some(authority) = parts.uri.authority()
        && let Ok(host) = hyper::header::HeaderValue::from_str(authority.as_str())
    {
        parts.headers.insert(hyper::header::HOST, host);
    }
    headers::add_forwarded(
        &mut parts.headers,
        client.ip(),
        proto,
        &shared.config.trusted_proxies,
    );
    // Origin form (`/path?query`) on a connection to the backend; the
    // client's `Host` header travels unchanged. An HTTP/1.1 request is in
    // that form already; HTTP/2's carries a scheme and authority.
    let mut uri = if parts.uri.scheme().is_none() && parts.uri.authority().is_none() {
        std::mem::take(&mut parts.uri)
    } else {
        Uri::from(
            parts
                .uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| hyper::http::uri::PathAndQuery::from_static("/")),
        )
    };
    let first = shared.next_index();
    let tries = endpoints.len().min(3);
    let mut last_error = String::new();
    for attempt in 0..tries {
        let addr = &endpoints[(first + attempt) % endpoints.len()].addr;
        let mut out = Request::new(Full::new(body.clone()));
        *out.method_mut() = parts.method.clone();
        // The last try takes the URI and headers; earlier ones copy them
        // for a retry.
        if attempt + 1 == tries {
            *out.uri_mut() = std::mem::take(&mut uri);
            *out.headers_mut() = std::mem::take(&mut parts.headers);
        } else {
            *out.uri_mut() = uri.clone();
            *out.headers_mut() = parts.headers.clone();
        }
        if attempt > 0 {
            shared.metrics.retry();
        }
        let within = shared.config.limits.request_timeout;
        let began = Instant::now();
        let sent = tokio::time::timeout(within, shared.pool.send(addr, out)).await;
        match sent {
            Ok(Ok(mut response)) => {
                shared.metrics.upstream(began.elapsed());
                headers::strip_hop_by_hop(response.headers_mut());
                return (response.map(Either::Left), Some(addr.clone()));
            }
            Ok(Err(crate::pool::SendError::Local(e))) => {
                tracing::warn!("cannot reach backends: {e}");
                return (
                    local(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the ingress is out of file descriptors; try again".into(),
                    ),
                    None,
                );
            }
            Ok(Err(crate::pool::SendError::NotSent(e))) => {
                last_error = format!("{addr}: {e}");
                shared.eject(addr);
                continue;
            }
            Ok(Err(crate::pool::SendError::Failed(e))) => {
                last_error = format!("{addr}: {e}");
                if !idempotent(&parts.method) {
                    break;
                }
            }
            Err(_) => {
                let secs = within.as_secs();
                return (
                    local(
                        StatusCode::GATEWAY_TIMEOUT,
                        format!("{addr} did not answer within {secs} s"),
                    ),
                    Some(addr.clone()),
                );
            }
        }
    }
    tracing::warn!("all tried backends failed: {last_error}");
    (
        local(
            StatusCode::BAD_GATEWAY,
            format!("no backend answered ({last_error})"),
        ),
        None,
    )
}

/// `Upgrade` (WebSocket and the like): the request — with its body, if it
/// has one — goes to one backend on a connection of its own, within the
/// request timeout; after its `101`, bytes are copied both ways until
/// either side closes (or the client connection is idle too long).
async fn upgrade(
    shared: &Shared,
    client: SocketAddr,
    proto: &str,
    mut req: Request<Incoming>,
    backend: crate::state::Backend,
) -> (Response<Body>, Answered) {
    use hyper::header::{CONNECTION, HeaderValue, UPGRADE};
    let client_side = hyper::upgrade::on(&mut req);
    let (mut parts, body) = req.into_parts();
    let (body, _room) = match read_body(shared, body).await {
        Ok(b) => b,
        Err(response) => return (response, None),
    };
    let protocol = parts.headers.get(UPGRADE).cloned();
    headers::strip_hop_by_hop(&mut parts.headers);
    if let Some(p) = protocol {
        parts.headers.insert(UPGRADE, p);
        parts
            .headers
            .insert(CONNECTION, HeaderValue::from_static("upgrade"));
    }
    headers::add_forwarded(
        &mut parts.headers,
        client.ip(),
        proto,
        &shared.config.trusted_proxies,
    );
    let addr = backend.addr;
    let failed =
        |status: StatusCode, e: String| (local(status, format!("{addr}: {e}")), Some(addr.clone()));
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let mut out = Request::new(Full::new(body));
    *out.method_mut() = parts.method;
    *out.uri_mut() = path.parse().unwrap_or_else(|_| Uri::from_static("/"));
    *out.headers_mut() = parts.headers;
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(&*addr)
            .await
            .map_err(|e| e.to_string())?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(conn.with_upgrades());
        sender.send_request(out).await.map_err(|e| e.to_string())
    };
    let within = shared.config.limits.request_timeout;
    let mut response = match tokio::time::timeout(within, exchange).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return failed(StatusCode::BAD_GATEWAY, e),
        Err(_) => {
            let e = format!("did not answer within {} s", within.as_secs());
            return failed(StatusCode::GATEWAY_TIMEOUT, e);
        }
    };
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        let backend_side = hyper::upgrade::on(&mut response);
        let open = shared.metrics.connection();
        tokio::spawn(async move {
            let _open = open;
            if let (Ok(a), Ok(b)) = (client_side.await, backend_side.await) {
                let (mut a, mut b) = (
                    hyper_util::rt::TokioIo::new(a),
                    hyper_util::rt::TokioIo::new(b),
                );
                let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
            }
        });
    }
    (response.map(Either::Left), Some(addr))
}
