//! Health probes: `check GET|HEAD /path STATUS` over HTTP/1.1 (hyper's
//! client on one fresh connection) and `check tcp` (a connection is
//! accepted). Each probe is bounded by the spec's timeout as a whole.

use bytes::Bytes;
use http_body_util::Empty;
use hyper::{Method, Request, header};
use hyper_util::rt::TokioIo;
use skr8tr_proto::manifest::{Check, HttpMethod};
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;

/// Why a probe did not pass; its `Display` is the reason logged.
#[derive(Debug, thiserror::Error)]
pub enum ProbeFailure {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("connect to {addr}: {source}")]
    Connect { addr: SocketAddr, source: io::Error },
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("the check path `{0}` is not a valid request target")]
    BadPath(String),
    #[error("status {got}, expected {expected}")]
    Status { got: u16, expected: u16 },
}

/// Runs `check` against `addr`, all within `timeout`.
pub async fn probe(check: &Check, addr: SocketAddr, timeout: Duration) -> Result<(), ProbeFailure> {
    let run = async {
        match check {
            Check::Tcp => connect(addr).await.map(drop),
            Check::Http {
                method,
                path,
                status,
            } => http(*method, path, *status, addr).await,
        }
    };
    tokio::time::timeout(timeout, run)
        .await
        .unwrap_or(Err(ProbeFailure::Timeout(timeout)))
}

async fn connect(addr: SocketAddr) -> Result<TcpStream, ProbeFailure> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|source| ProbeFailure::Connect { addr, source })?;
    if connected_to_itself(&stream) {
        return Err(ProbeFailure::Connect {
            addr,
            source: io::Error::new(
                io::ErrorKind::ConnectionRefused,
                "nothing listens yet (the probe connected to itself)",
            ),
        });
    }
    Ok(stream)
}

/// A connection to a local port nothing listens on can meet itself: when
/// the kernel picks that same port as the connection's own (TCP
/// simultaneous open), connect succeeds with no server at all. A replica
/// that has not bound its port yet must not look alive because of it.
fn connected_to_itself(stream: &TcpStream) -> bool {
    matches!((stream.local_addr(), stream.peer_addr()), (Ok(l), Ok(p)) if l == p)
}

async fn http(
    method: HttpMethod,
    path: &str,
    expected: u16,
    addr: SocketAddr,
) -> Result<(), ProbeFailure> {
    let request = Request::builder()
        .method(match method {
            HttpMethod::Get => Method::GET,
            HttpMethod::Head => Method::HEAD,
        })
        .uri(path)
        .header(header::HOST, addr.to_string())
        .header(header::USER_AGENT, "skr8tr-health")
        .header(header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|_| ProbeFailure::BadPath(path.to_string()))?;
    let stream = connect(addr).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    // The connection task ends when the response is dropped (or with the
    // timeout around the probe, which drops `sender`).
    let driver = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::trace!("health probe connection: {e}");
        }
    });
    let result = sender.send_request(request).await;
    driver.abort();
    // The body is not read: the status is the answer.
    let got = result?.status();
    if got.as_u16() == expected {
        Ok(())
    } else {
        Err(ProbeFailure::Status {
            got: got.as_u16(),
            expected,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A one-trick HTTP server: answers every request with `status`, after
    /// checking what the probe sent.
    async fn server(status: &'static str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let mut buf = vec![0; 4096];
                    let mut n = 0;
                    while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf[n..]).await {
                            Ok(0) | Err(_) => return,
                            Ok(m) => n += m,
                        }
                    }
                    let head = String::from_utf8_lossy(&buf[..n]).to_string();
                    let ok = head.starts_with("GET /healthz HTTP/1.1\r\n")
                        || head.starts_with("HEAD /healthz HTTP/1.1\r\n");
                    let status = if ok { status } else { "400 Bad Request" };
                    let reply = format!("HTTP/1.1 {status}\r\ncontent-length: 2\r\n\r\nok");
                    let _ = s.write_all(reply.as_bytes()).await;
                });
            }
        });
        addr
    }

    fn get(path: &str, status: u16) -> Check {
        Check::Http {
            method: HttpMethod::Get,
            path: path.into(),
            status,
        }
    }

    const T: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn http_probe_passes_only_on_the_expected_status() {
        let ok = server("200 OK").await;
        probe(&get("/healthz", 200), ok, T).await.unwrap();
        let head = Check::Http {
            method: HttpMethod::Head,
            path: "/healthz".into(),
            status: 200,
        };
        probe(&head, ok, T).await.unwrap();
        let e = probe(&get("/healthz", 204), ok, T).await.unwrap_err();
        assert_eq!(e.to_string(), "status 200, expected 204");
        let e = probe(&get("/other", 200), ok, T).await.unwrap_err();
        assert!(matches!(e, ProbeFailure::Status { got: 400, .. }), "{e}");

        let failing = server("503 Service Unavailable").await;
        let e = probe(&get("/healthz", 200), failing, T).await.unwrap_err();
        assert_eq!(e.to_string(), "status 503, expected 200");
        probe(&get("/healthz", 503), failing, T).await.unwrap();

        let e = probe(&get("no spaces allowed", 200), ok, T)
            .await
            .unwrap_err();
        assert!(matches!(e, ProbeFailure::BadPath(_)), "{e}");
    }

    #[tokio::test]
    async fn probes_fail_when_nothing_listens() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        probe(&Check::Tcp, addr, T).await.unwrap();
        drop(listener);
        let e = probe(&Check::Tcp, addr, T).await.unwrap_err();
        assert!(matches!(e, ProbeFailure::Connect { .. }), "{e}");
        assert!(e.to_string().starts_with(&format!("connect to {addr}: ")));
        let e = probe(&get("/healthz", 200), addr, T).await.unwrap_err();
        assert!(matches!(e, ProbeFailure::Connect { .. }), "{e}");
    }

    #[tokio::test]
    async fn a_connection_that_met_itself_is_no_server() {
        // Make the self-connect happen on purpose: bind a socket to a free
        // port, then connect it to that same port.
        let port = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(addr).unwrap();
        let stream = socket.connect(addr).await.unwrap();
        assert!(connected_to_itself(&stream));
        let real = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let to_real = TcpStream::connect(real.local_addr().unwrap())
            .await
            .unwrap();
        assert!(!connected_to_itself(&to_real));
    }

    #[tokio::test]
    async fn a_server_that_never_answers_times_out() {
        // Accepts connections (the kernel does, from the backlog) but never
        // reads or answers.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let timeout = Duration::from_millis(200);
        let e = probe(&get("/healthz", 200), addr, timeout)
            .await
            .unwrap_err();
        assert!(matches!(e, ProbeFailure::Timeout(t) if t == timeout), "{e}");
        drop(listener);
    }
}
