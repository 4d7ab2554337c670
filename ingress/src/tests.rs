//! The proxy, its backend pool and shared state in process, against real
//! local hyper backends on 127.0.0.1 and a real client connection. The
//! registry snapshot is set by hand instead of watched.

use crate::state::Shared;
use crate::{Config, Route};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use skr8tr_proto::wire::{Endpoint, RegistrySnapshot};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;

/// A backend that answers every request with its name, the request's
/// method, path and selected headers, and counts connections and requests.
pub(crate) struct Backend {
    pub(crate) addr: SocketAddr,
    pub(crate) connections: Arc<AtomicUsize>,
    pub(crate) requests: Arc<AtomicUsize>,
}

pub(crate) async fn backend(name: &'static str) -> Backend {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let (c, r) = (connections.clone(), requests.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            c.fetch_add(1, Ordering::Relaxed);
            let r = r.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    r.fetch_add(1, Ordering::Relaxed);
                    async move {
                        let header = |n: &str| {
                            req.headers()
                                .get(n)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("-")
                                .to_string()
                        };
                        let text = format!(
                            "{name} {} {} host={} xff={} real={} proto={} secret={} fwd={}",
                            req.method(),
                            req.uri(),
                            header("host"),
                            header("x-forwarded-for"),
                            header("x-real-ip"),
                            header("x-forwarded-proto"),
                            header("x-secret-hop"),
                            header("forwarded"),
                        );
                        let body = req.into_body().collect().await.map(|b| b.to_bytes());
                        let text = format!("{text} body={}", body.map_or(0, |b| b.len()));
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(
                            text,
                        ))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Backend {
        addr,
        connections,
        requests,
    }
}

/// A port nothing listens on.
fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

pub(crate) fn endpoint(replica: &str, addr: SocketAddr) -> Endpoint {
    Endpoint {
        replica: replica.into(),
        address: addr.ip().to_string(),
        port: addr.port(),
    }
}

/// An ingress serving `routes` on 127.0.0.1 with `apps` as its registry.
pub(crate) async fn ingress(
    routes: &[&str],
    apps: &[(&str, Vec<Endpoint>)],
    tune: impl FnOnce(&mut Config),
) -> (Arc<Shared>, SocketAddr) {
    let routes: Vec<Route> = routes.iter().map(|r| Route::parse(r).unwrap()).collect();
    let mut config = Config::new(
        skr8tr_net::Client::plain("http://127.0.0.1:1").unwrap(),
        routes,
    );
    config.access_log = false;
    tune(&mut config);
    let shared = Arc::new(Shared::new(config));
    shared.set_registry(RegistrySnapshot {
        index: 1,
        apps: apps
            .iter()
            .map(|(a, e)| (a.to_string(), e.clone()))
            .collect::<BTreeMap<_, _>>(),
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(crate::accept_loop(
        shared.clone(),
        listener,
        std::future::pending(),
    ));
    (shared, addr)
}

/// One request on a fresh client connection: status and body text.
pub(crate) async fn send(addr: SocketAddr, request: Request<Full<Bytes>>) -> (StatusCode, String) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let response = sender.send_request(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn get(path: &str) -> Request<Full<Bytes>> {
    Request::get(path)
        .header("host", "example.org")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

#[tokio::test]
async fn requests_follow_the_longest_prefix_with_forwarding_headers() {
    let (api, web) = (backend("api").await, backend("web").await);
    let (_, addr) = ingress(
        &["/:web", "/api:api"],
        &[
            ("web", vec![endpoint("web/1/0", web.addr)]),
            ("api", vec![endpoint("api/1/0", api.addr)]),
        ],
        |_| {},
    )
    .await;
    let (status, body) = send(addr, get("/api/users?x=1")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.starts_with("api GET /api/users?x=1 host=example.org"),
        "{body}"
    );
    assert!(
        body.contains("xff=127.0.0.1 real=127.0.0.1 proto=http"),
        "{body}"
    );
    let (_, body) = send(addr, get("/apiary")).await;
    assert!(
        body.starts_with("web GET /apiary"),
        "segment boundaries: {body}"
    );
    // Hop-by-hop headers, and those `Connection` names, stay here.
    let request = Request::get("/")
        .header("host", "example.org")
        .header("connection", "x-secret-hop")
        .header("x-secret-hop", "1")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (_, body) = send(addr, request).await;
    assert!(body.contains("secret=-"), "{body}");
    // A body is forwarded whole.
    let post = Request::post("/api/upload")
        .header("host", "example.org")
        .body(Full::new(Bytes::from(vec![7u8; 5000])))
        .unwrap();
    let (status, body) = send(addr, post).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.ends_with("body=5000"), "{body}");
}

#[tokio::test]
async fn no_route_is_404_no_ready_replica_503_and_a_big_body_413() {
    let web = backend("web").await;
    let (_, addr) = ingress(
        &["/api:api", "/web:web"],
        &[("web", vec![endpoint("web/1/0", web.addr)])],
        |c| c.limits.max_body_bytes = 1024,
    )
    .await;
    let (status, body) = send(addr, get("/other")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, "no route for /other\n");
    let (status, body) = send(addr, get("/api")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("app `api` has no ready replica"), "{body}");
    let post = Request::post("/web")
        .header("host", "example.org")
        .body(Full::new(Bytes::from(vec![0u8; 2048])))
        .unwrap();
    let (status, body) = send(addr, post).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(body.contains("larger than 1024 bytes"), "{body}");
    assert_eq!(
        web.requests.load(Ordering::Relaxed),
        0,
        "nothing reached it"
    );
}

#[tokio::test]
async fn a_dead_endpoint_is_retried_elsewhere_and_ejected_for_a_while() {
    let live = backend("live").await;
    let dead = closed_port();
    let (shared, addr) = ingress(
        &["/:web"],
        &[(
            "web",
            vec![endpoint("web/1/0", dead), endpoint("web/1/1", live.addr)],
        )],
        |_| {},
    )
    .await;
    // POST too: a connection that was never made carried no request.
    for _ in 0..4 {
        let post = Request::post("/")
            .header("host", "example.org")
            .body(Full::new(Bytes::from_static(b"x")))
            .unwrap();
        let (status, body) = send(addr, post).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body.starts_with("live POST /"), "{body}");
    }
    let endpoints = shared.endpoints("web");
    assert_eq!(endpoints.len(), 1, "the dead one is ejected");
    assert_eq!(&*endpoints[0].addr, live.addr.to_string());
}

#[tokio::test]
async fn every_endpoint_failing_is_a_502_that_says_why() {
    let (_, addr) = ingress(
        &["/:web"],
        &[("web", vec![endpoint("web/1/0", closed_port())])],
        |_| {},
    )
    .await;
    let (status, body) = send(addr, get("/")).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(body.contains("no backend answered"), "{body}");
    assert!(
        body.contains("Connection refused") || body.contains("connect to"),
        "{body}"
    );
}

#[tokio::test]
async fn the_pool_reuses_kept_alive_connections_to_a_backend() {
    let web = backend("web").await;
    let (_, addr) = ingress(
        &["/:web"],
        &[("web", vec![endpoint("web/1/0", web.addr)])],
        |_| {},
    )
    .await;
    for _ in 0..5 {
        let (status, _) = send(addr, get("/")).await;
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(web.requests.load(Ordering::Relaxed), 5);
    assert_eq!(
        web.connections.load(Ordering::Relaxed),
        1,
        "five requests in a row, one backend connection"
    );
}

#[tokio::test]
async fn a_kept_connection_the_backend_closed_is_not_sent_on() {
    use crate::pool::{Pool, SendError};
    // A backend that answers one request per connection, then closes it.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: Arc<str> = listener.local_addr().unwrap().to_string().into();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req: Request<Incoming>| async {
                    Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from("x"))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(false)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    let pool = Pool::default();
    let request = || {
        Request::get("/")
            .header("host", "b")
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    let first = pool.send(&addr, request()).await.ok().unwrap();
    let _ = first.into_body().collect().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The kept connection is closed by now: either it is skipped (a new
    // one is made), or the send is reported as not sent, so a retry is safe.
    match pool.send(&addr, request()).await {
        Ok(r) => assert_eq!(r.status(), StatusCode::OK),
        Err(SendError::NotSent(_)) => {}
        Err(SendError::Failed(e)) => panic!("a closed kept connection was sent on: {e}"),
        Err(SendError::Local(e)) => panic!("out of descriptors: {e}"),
    }
}

#[test]
fn state_rotates_over_endpoints_and_ejections_expire() {
    let shared = Shared::new(Config::new(
        skr8tr_net::Client::plain("http://127.0.0.1:1").unwrap(),
        vec![],
    ));
    let a = "127.0.0.1:1001".parse().unwrap();
    let b = "127.0.0.1:1002".parse().unwrap();
    shared.set_registry(RegistrySnapshot {
        index: 9,
        apps: BTreeMap::from([(
            "web".to_string(),
            vec![endpoint("w0", a), endpoint("w1", b)],
        )]),
    });
    assert!(shared.loaded.load(Ordering::Acquire));
    let (i, j) = (shared.next_index(), shared.next_index());
    assert_eq!(j, i + 1);
    assert_eq!(shared.endpoints("web").len(), 2);
    assert!(shared.endpoints("nope").is_empty());
    shared.eject("127.0.0.1:1001");
    let left = shared.endpoints("web");
    assert_eq!(left.len(), 1);
    assert_eq!(&*left[0].addr, "127.0.0.1:1002");
    // Every endpoint ejected: all are tried rather than none.
    shared.eject("127.0.0.1:1002");
    assert_eq!(shared.endpoints("web").len(), 2);
}

/// A raw request on a fresh connection: the whole answer as text.
async fn raw(addr: SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn a_clients_forwarding_headers_are_replaced_unless_it_is_a_trusted_proxy() {
    let web = backend("web").await;
    let spoofed = |addr| async move {
        raw(
            addr,
            "GET / HTTP/1.1\r\nhost: h\r\nconnection: close\r\nx-real-ip: 6.6.6.6\r\n\
             x-forwarded-for: 6.6.6.6\r\nforwarded: for=6.6.6.6\r\n\r\n",
        )
        .await
    };
    let (_, addr) = ingress(
        &["/:web"],
        &[("web", vec![endpoint("w", web.addr)])],
        |_| {},
    )
    .await;
    let body = spoofed(addr).await;
    assert!(body.contains("xff=127.0.0.1 real=127.0.0.1"), "{body}");
    assert!(body.contains("fwd=for=127.0.0.1;proto=http"), "{body}");
    assert!(!body.contains("6.6.6.6"), "{body}");
    // Behind a trusted proxy (here: loopback), its chain is kept and the
    // real client is the last untrusted address in it.
    let (_, addr) = ingress(&["/:web"], &[("web", vec![endpoint("w", web.addr)])], |c| {
        c.trusted_proxies = vec![crate::headers::Cidr::parse("127.0.0.0/8").unwrap()];
    })
    .await;
    let body = spoofed(addr).await;
    assert!(
        body.contains("xff=6.6.6.6, 127.0.0.1 real=6.6.6.6"),
        "{body}"
    );
    assert!(
        body.contains("fwd=for=6.6.6.6, for=127.0.0.1;proto=http"),
        "{body}"
    );
}

#[tokio::test]
async fn malformed_requests_are_refused_before_routing() {
    let web = backend("web").await;
    let (_, addr) = ingress(&["/:web"], &[("web", vec![endpoint("w", web.addr)])], |c| {
        c.limits.clients.max_header_bytes = 1024;
    })
    .await;
    let no_host = raw(addr, "GET / HTTP/1.1\r\nconnection: close\r\n\r\n").await;
    assert!(no_host.starts_with("HTTP/1.1 400"), "{no_host}");
    assert!(no_host.contains("needs a Host header"), "{no_host}");
    for path in ["/a/../etc/passwd", "/./x", "/a/%2e%2e/b", "/a/%2E/b"] {
        let answer = raw(
            addr,
            &format!("GET {path} HTTP/1.1\r\nhost: h\r\nconnection: close\r\n\r\n"),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{path}: {answer}");
    }
    // One host, readable, the same as the target's: or 400.
    for (head, why) in [
        (
            "GET / HTTP/1.1\r\nhost: a\r\nhost: b\r\n",
            "two Host headers",
        ),
        (
            "GET / HTTP/1.1\r\nhost: b.test:1@a.test\r\n",
            "not a host[:port]",
        ),
        ("GET / HTTP/1.1\r\nhost: a b\r\n", "not a host[:port]"),
        ("GET http://a.test/ HTTP/1.1\r\nhost: b.test\r\n", "differ"),
    ] {
        let answer = raw(addr, &format!("{head}connection: close\r\n\r\n")).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{head}: {answer}");
        assert!(answer.contains(why), "{head}: {answer}");
    }
    // `Connection: host` does not take Host away.
    let answer = raw(
        addr,
        "GET /ok HTTP/1.1\r\nhost: h\r\nconnection: close, host\r\n\r\n",
    )
    .await;
    assert!(answer.contains("host=h "), "{answer}");
    // The head limit is exact: 1024 bytes, request line included.
    let head = |pad: usize| {
        let base = "GET / HTTP/1.1\r\nhost: h\r\nconnection: close\r\nx-pad: \r\n\r\n";
        format!(
            "GET / HTTP/1.1\r\nhost: h\r\nconnection: close\r\nx-pad: {}\r\n\r\n",
            "p".repeat(pad.saturating_sub(base.len()))
        )
    };
    assert_eq!(head(1024).len(), 1024);
    assert!(raw(addr, &head(1024)).await.starts_with("HTTP/1.1 200"));
    assert!(raw(addr, &head(1025)).await.starts_with("HTTP/1.1 431"));
    assert_eq!(
        web.requests.load(Ordering::Relaxed),
        2,
        "only the good ones arrived"
    );
}

#[test]
fn dot_segments_are_found_written_out_or_encoded() {
    use crate::proxy::has_dot_segments;
    for bad in [
        "/..",
        "/a/..",
        "/a/./b",
        "/%2e%2E/x",
        "/x/%2e",
        "/api/..%2fadmin",
        "/api/..;/admin",
        "/api/.;/admin",
        "/api/..\\admin",
        "/api/%5cadmin",
        "/a/%2F",
    ] {
        assert!(has_dot_segments(bad), "{bad}");
    }
    for good in ["/", "/a.b/c", "/.well-known/x", "/v1.2/api", "/file.tar.gz"] {
        assert!(!has_dot_segments(good), "{good}");
    }
}

#[tokio::test]
async fn an_upgrade_request_brings_its_body_along() {
    // A backend that reads the body of an Upgrade request and says how
    // long it was before switching protocols.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend_addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let service = hyper::service::service_fn(|req: Request<Incoming>| async move {
            let n = req.into_body().collect().await.unwrap().to_bytes().len();
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            r.headers_mut()
                .insert("upgrade", hyper::header::HeaderValue::from_static("echo"));
            r.headers_mut().insert(
                "connection",
                hyper::header::HeaderValue::from_static("upgrade"),
            );
            r.headers_mut()
                .insert("x-body", hyper::header::HeaderValue::from(n));
            Ok::<_, std::convert::Infallible>(r)
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades()
            .await;
    });
    let (_, addr) = ingress(
        &["/:web"],
        &[("web", vec![endpoint("w", backend_addr)])],
        |c| {
            c.limits.request_timeout = Duration::from_secs(3);
        },
    )
    .await;
    let answer = raw(
        addr,
        "GET /ws HTTP/1.1\r\nhost: h\r\nupgrade: echo\r\nconnection: upgrade\r\ncontent-length: 5\r\n\r\nhello",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
    assert!(
        answer.to_lowercase().contains("x-body: 5"),
        "the body went along: {answer}"
    );
}

#[tokio::test]
async fn bodies_held_at_once_stay_within_the_budget() {
    use tokio::io::AsyncWriteExt;
    let web = backend("web").await;
    let (_, addr) = ingress(&["/:web"], &[("web", vec![endpoint("w", web.addr)])], |c| {
        c.limits.max_buffered_bytes = 8 * 1024;
    })
    .await;
    // An upload that takes all the room and holds it.
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"POST / HTTP/1.1\r\nhost: h\r\ncontent-length: 8192\r\n\r\nabc")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let second = raw(
        addr,
        "POST / HTTP/1.1\r\nhost: h\r\nconnection: close\r\ncontent-length: 3\r\n\r\nxyz",
    )
    .await;
    assert!(second.starts_with("HTTP/1.1 503"), "{second}");
    assert!(second.contains("too many request bodies"), "{second}");
    // A request without a body needs no room.
    let get = raw(
        addr,
        "GET / HTTP/1.1\r\nhost: h\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(get.starts_with("HTTP/1.1 200"), "{get}");
    drop(slow);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let third = raw(
        addr,
        "POST / HTTP/1.1\r\nhost: h\r\nconnection: close\r\ncontent-length: 3\r\n\r\nxyz",
    )
    .await;
    assert!(third.starts_with("HTTP/1.1 200"), "room again: {third}");
}
