use super::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn limits() -> Limits {
    Limits {
        max_connections: 100,
        max_per_ip: 100,
        header_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(600),
        body_timeout: Duration::from_millis(400),
        max_header_bytes: 1024,
        unlimited_sources: Vec::new(),
    }
}

/// An HTTP server on the bounded listener: `/` answers at once, a
/// body is read whole (within the body timeout) and its size returned.
async fn server(limits: Limits) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let l = limits.clone();
    tokio::spawn(serve(
        "test",
        listener,
        limits,
        std::future::pending(),
        move |io, _peer| {
            let l = l.clone();
            async move {
                let body_timeout = l.body_timeout;
                let service = hyper::service::service_fn(
                    move |req: Request<hyper::body::Incoming>| async move {
                        let body = DeadlineBody::new(req.into_body(), body_timeout);
                        let text = match body.collect().await {
                            Ok(b) => format!("got {}", b.to_bytes().len()),
                            Err(e) => format!("failed: {e}"),
                        };
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(
                            text,
                        ))))
                    },
                );
                let _ = l.http1().serve_connection(TokioIo::new(io), service).await;
            }
        },
    ));
    addr
}

/// Reads until the server closes (or `within` passes): what came.
async fn read_all(s: &mut TcpStream, within: Duration) -> Option<String> {
    let mut out = Vec::new();
    match tokio::time::timeout(within, s.read_to_end(&mut out)).await {
        Ok(_) => Some(String::from_utf8_lossy(&out).into_owned()),
        Err(_) => None,
    }
}

#[tokio::test]
async fn past_the_cap_new_connections_are_closed_at_once() {
    let addr = server(Limits {
        max_connections: 2,
        ..limits()
    })
    .await;
    let _a = TcpStream::connect(addr).await.unwrap();
    let _b = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut c = TcpStream::connect(addr).await.unwrap();
    let closed = read_all(&mut c, Duration::from_secs(5)).await;
    assert_eq!(closed.as_deref(), Some(""), "closed without an answer");
}

#[tokio::test]
async fn a_connection_handed_on_keeps_its_slot_until_its_socket_closes() {
    // As after an `Upgrade`: the handler returns, the socket lives on.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = Limits {
        max_connections: 2,
        ..limits()
    };
    tokio::spawn(serve(
        "test",
        listener,
        limits,
        std::future::pending(),
        |io, _| async move {
            tokio::spawn(async move {
                let _tunnel = io;
                tokio::time::sleep(Duration::from_secs(30)).await;
            });
        },
    ));
    let _a = TcpStream::connect(addr).await.unwrap();
    let _b = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut c = TcpStream::connect(addr).await.unwrap();
    assert_eq!(
        read_all(&mut c, Duration::from_secs(5)).await.as_deref(),
        Some(""),
        "the two tunnels still count"
    );
}

#[tokio::test]
async fn one_address_gets_its_cap_and_others_still_get_in() {
    let addr = server(Limits {
        max_per_ip: 1,
        ..limits()
    })
    .await;
    // (A quarter of the 100 connections would allow 25: 1 is lower.)
    let _first = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut second = TcpStream::connect(addr).await.unwrap();
    assert_eq!(
        read_all(&mut second, Duration::from_secs(5))
            .await
            .as_deref(),
        Some("")
    );
    // Another source address (all of 127.0.0.0/8 is this host).
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut other = socket.connect(addr).await.unwrap();
    other
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = read_all(&mut other, Duration::from_secs(5)).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn a_trickled_head_is_cut_off_at_the_header_timeout() {
    let addr = server(limits()).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let started = std::time::Instant::now();
    s.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    for _ in 0..20 {
        if s.write_all(b"x").await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rest = read_all(&mut s, Duration::from_secs(5)).await;
    assert!(rest.is_some(), "the server closed the connection");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_head_past_the_limit_is_answered_431() {
    let addr = server(limits()).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let big = format!(
        "GET / HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(2000)
    );
    s.write_all(big.as_bytes()).await.unwrap();
    let answer = read_all(&mut s, Duration::from_secs(5)).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    // Just under: served.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let fits = format!(
        "GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-big: {}\r\n\r\n",
        "a".repeat(900)
    );
    s.write_all(fits.as_bytes()).await.unwrap();
    let answer = read_all(&mut s, Duration::from_secs(5)).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn a_trickled_body_fails_at_the_body_timeout() {
    let addr = server(limits()).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    for _ in 0..8 {
        let _ = s.write_all(b"y").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let answer = read_all(&mut s, Duration::from_secs(5)).await.unwrap();
    assert!(
        answer.contains("failed: the request body did not arrive within"),
        "{answer}"
    );
    // A whole body in time is read.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\nconnection: close\r\n\r\nabc")
        .await
        .unwrap();
    let answer = read_all(&mut s, Duration::from_secs(5)).await.unwrap();
    assert!(answer.ends_with("got 3"), "{answer}");
}

#[tokio::test]
async fn an_idle_connection_is_closed() {
    let addr = server(Limits {
        header_timeout: Duration::from_secs(60),
        ..limits()
    })
    .await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let started = std::time::Instant::now();
    let rest = read_all(&mut s, Duration::from_secs(5)).await;
    assert_eq!(rest.as_deref(), Some(""));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

#[test]
fn sources_are_hosts_and_blocks_contain_their_addresses() {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert_eq!(source_of(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
    assert_eq!(source_of(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
    assert_eq!(
        source_of(ip("2001:db8:1:2:bbbb::9")),
        source_of(ip("2001:db8:1:2::7"))
    );
    assert_ne!(
        source_of(ip("2001:db8:1:3::1")),
        source_of(ip("2001:db8:1:2::1"))
    );
    let net = IpNet::parse("192.168.0.0/16").unwrap();
    assert!(net.contains(ip("192.168.4.2")));
    assert!(!net.contains(ip("192.169.0.1")));
    assert!(net.contains(ip("::ffff:192.168.1.1")), "v4-mapped");
    assert!(IpNet::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
    assert!(IpNet::parse("10.0.0.1").unwrap().contains(ip("10.0.0.1")));
    assert!(!IpNet::parse("10.0.0.1").unwrap().contains(ip("10.0.0.2")));
    assert!(IpNet::parse("fd00::/8").unwrap().contains(ip("fd12::1")));
    for bad in ["", "10.0.0.0/33", "x/8", "10.0.0.0/-1", "fd00::/129"] {
        assert!(IpNet::parse(bad).is_err(), "{bad}");
    }
}

#[tokio::test]
async fn an_exempt_source_is_not_held_to_the_per_address_cap() {
    let addr = server(Limits {
        max_per_ip: 1,
        unlimited_sources: vec![IpNet::parse("127.0.0.1").unwrap()],
        ..limits()
    })
    .await;
    let _first = TcpStream::connect(addr).await.unwrap();
    let mut second = TcpStream::connect(addr).await.unwrap();
    second
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = read_all(&mut second, Duration::from_secs(5)).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[test]
fn bodies_in_memory_stay_within_their_budget() {
    let budget = BodyBudget::new(10 * 1024);
    let a = budget.reserve(6 * 1024).unwrap();
    assert!(budget.reserve(5 * 1024).is_none(), "over the budget");
    let b = budget.reserve(4 * 1024).unwrap();
    assert!(budget.reserve(1).is_none());
    assert!(budget.reserve(0).is_some(), "no body needs no room");
    drop(a);
    assert!(budget.reserve(5 * 1024).is_some());
    drop(b);
    assert!(
        budget.reserve(u64::MAX).is_some(),
        "a huge claim takes all, not more"
    );
}

#[test]
fn the_cap_leaves_room_under_the_file_limit() {
    assert_eq!(
        effective_max_connections(4096, Some(1024)),
        1024 - FD_RESERVE
    );
    assert_eq!(effective_max_connections(100, Some(1024)), 100);
    assert_eq!(effective_max_connections(4096, Some(100)), 50);
    assert_eq!(effective_max_connections(4096, None), 4096);
    assert!(file_limit().is_some_and(|n| n > 0));
}
