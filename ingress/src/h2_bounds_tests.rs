//! HTTP/2's bounds, as a stranger would test them: a connection kept open
//! by PINGs alone, a preface sent one byte at a time, streams whose
//! responses are never read, and 10,000 requests on one connection.

use crate::h2_tests::{H2, get, h2_over, offering_h2, tls_identity};
use crate::tests::{backend, endpoint, ingress};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A backend whose responses send their head and then never end.
async fn stalling_backend() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    struct Forever;
    impl hyper::body::Body for Forever {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            std::task::Poll::Pending
        }
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_: Request<Incoming>| async {
                    Ok::<_, std::convert::Infallible>(Response::new(Forever))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, connections)
}

#[tokio::test]
async fn a_connection_kept_open_by_pings_alone_is_closed_after_the_head_timeout() {
    let (dir, id, tls) = tls_identity("h2q");
    let b = backend("b1").await;
    let (_, addr) = ingress(&["/:web"], &[("web", vec![endpoint("w", b.addr)])], |c| {
        c.tls = Some(crate::tls::with_http2(&tls));
        c.limits.clients.header_timeout = Duration::from_secs(1);
        c.limits.clients.idle_timeout = Duration::from_secs(120);
    })
    .await;
    let stream = offering_h2(addr, id.pin()).await;
    // A client that PINGs every 200 ms whether or not it has streams.
    let (mut sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_millis(200))
        .keep_alive_while_idle(true)
        .handshake::<_, Full<Bytes>>(TokioIo::new(stream))
        .await
        .unwrap();
    let started = Instant::now();
    let conn = tokio::spawn(conn);
    let (status, _) = get(&mut sender, "https://localhost/x").await;
    assert_eq!(status, StatusCode::OK);
    // The idle timeout (120 s) never fires for it; the head timeout does.
    let ended = tokio::time::timeout(Duration::from_secs(10), conn).await;
    assert!(
        ended.is_ok(),
        "still open after 10 s of PINGs and no request"
    );
    assert!(started.elapsed() >= Duration::from_millis(900));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_preface_sent_one_byte_at_a_time_is_dropped() {
    let b = backend("b1").await;
    let (_, addr) = ingress(&["/:web"], &[("web", vec![endpoint("w", b.addr)])], |c| {
        c.h2c = true;
        c.limits.clients.header_timeout = Duration::from_secs(1);
    })
    .await;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let started = Instant::now();
    let mut closed = false;
    // One byte every 250 ms would take 6 s for the preface; then it goes
    // on with the bytes of a SETTINGS frame that never completes.
    for i in 0..60 {
        let byte = preface.get(i).copied().unwrap_or(0);
        if stream.write_all(&[byte]).await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(250), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            _ => {}
        }
    }
    assert!(closed, "a trickled preface kept the connection for 15 s");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "closed only after {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn streams_whose_responses_are_never_read_hold_at_most_the_per_address_cap() {
    let (stalling, connections) = stalling_backend().await;
    let (shared, addr) = ingress(&["/:web"], &[("web", vec![endpoint("w", stalling)])], |c| {
        c.h2c = true;
        c.limits.clients.max_per_ip = 4;
    })
    .await;
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let sender: H2 = h2_over(stream).await.unwrap();
    let mut statuses = Vec::new();
    let mut held = Vec::new();
    for i in 0..12 {
        let request = Request::get(format!("http://app.test/{i}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = sender.clone().send_request(request).await.unwrap();
        statuses.push(response.status());
        if response.status() == StatusCode::OK {
            held.push(response); // its body is never read
        }
    }
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let limited = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((ok, limited), (4, 8), "{statuses:?}");
    assert_eq!(
        connections.load(Ordering::Relaxed),
        4,
        "backend sockets held"
    );
    // Dropping the responses resets their streams and frees the room.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let request = Request::get("http://app.test/again")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = sender.clone().send_request(request).await.unwrap();
        if response.status() == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "room never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(shared);
}

#[tokio::test]
async fn ten_thousand_requests_on_one_connection_use_a_bounded_pool() {
    let b = backend("b1").await;
    let (_, addr) = ingress(&["/:web"], &[("web", vec![endpoint("w", b.addr)])], |c| {
        c.h2c = true;
    })
    .await;
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let sender: H2 = h2_over(stream).await.unwrap();
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..32 {
        let mut s = sender.clone();
        workers.spawn(async move {
            for i in 0..10_000 / 32 + 1 {
                if w + 32 * i >= 10_000 {
                    break;
                }
                let (status, text) = get(&mut s, "http://app.test/n").await;
                assert_eq!(status, StatusCode::OK, "{text}");
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        done.unwrap();
    }
    assert_eq!(b.requests.load(Ordering::Relaxed), 10_000);
    let opened = b.connections.load(Ordering::Relaxed);
    assert!(opened <= 32, "{opened} backend connections for 32 streams");
}
