//! The client against real local servers: plain HTTP, and TLS with the
//! real identity, pin and session code.

use super::*;
use crate::tls::Identity;
use hyper::body::Incoming;

/// A local HTTP server answering `/big` with 64 KiB, `/slow` never, and
/// anything else with the request's method and path. With `tls`, it
/// serves TLS with that identity.
async fn server(tls: Option<Arc<rustls::ServerConfig>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let scheme = if tls.is_some() { "https" } else { "http" };
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let tls = tls.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|req: Request<Incoming>| async move {
                    let body = match req.uri().path() {
                        "/big" => Bytes::from(vec![b'x'; 64 * 1024]),
                        "/slow" => {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                            Bytes::new()
                        }
                        path => Bytes::from(format!("{} {path}", req.method())),
                    };
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(body)))
                });
                let http = hyper::server::conn::http1::Builder::new();
                match tls {
                    None => {
                        let _ = http.serve_connection(TokioIo::new(stream), service).await;
                    }
                    Some(config) => {
                        let io = crate::server::Guarded::new(stream, Duration::from_secs(60));
                        let acceptor = tokio_rustls::TlsAcceptor::from(config);
                        if let Ok(tls) =
                            crate::tls::accept(&acceptor, io, Duration::from_secs(5)).await
                        {
                            let _ = http.serve_connection(TokioIo::new(tls), service).await;
                        }
                    }
                }
            });
        }
    });
    format!("{scheme}://{addr}")
}

fn identity() -> (tempdir::Dir, Identity) {
    let dir = tempdir::Dir::new();
    let id = Identity::create(dir.path()).unwrap();
    (dir, id)
}

mod tempdir {
    /// A directory removed on drop.
    pub struct Dir(std::path::PathBuf);
    impl Dir {
        pub fn new() -> Dir {
            let mut bytes = [0u8; 8];
            getrandom::fill(&mut bytes).unwrap();
            let p = std::env::temp_dir().join(format!("skr8tr-net-{}", u64::from_le_bytes(bytes)));
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
        pub fn path(&self) -> &std::path::Path {
            &self.0
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[test]
fn only_https_base_urls_are_accepted_for_the_conductor() {
    let pin = Pin([0; 32]);
    assert!(Client::new("https://127.0.0.1:7771", pin).is_ok());
    assert_eq!(
        Client::new("https://127.0.0.1:7771/", pin).unwrap().base(),
        "https://127.0.0.1:7771"
    );
    let e = Client::new("http://127.0.0.1:7771", pin)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("plain HTTP") && e.contains("https://127.0.0.1:7771"),
        "{e}"
    );
    for bad in [
        "127.0.0.1:7771",
        "https://",
        "https://h/path",
        "ftp://h",
        "",
    ] {
        let e = Client::new(bad, pin).err().map(|e| e.to_string());
        assert!(
            e.as_deref()
                .is_some_and(|e| e.contains("is not a conductor URL")),
            "{bad}: {e:?}"
        );
    }
    assert!(Client::plain("http://127.0.0.1:8080").is_ok());
}

#[tokio::test]
async fn requests_answer_within_their_timeout_and_bodies_are_capped() {
    let (_dir, id) = identity();
    let base = server(Some(id.server_config().unwrap())).await;
    let client = Client::new(&base, id.pin()).unwrap();
    let (status, body) = client.get("/a", Duration::from_secs(5)).await.unwrap();
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"GET /a"[..]));
    // The connection was kept and is reused.
    let (_, body) = client
        .post("/b", b"x".to_vec(), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(&body[..], b"POST /b");
    assert_eq!(client.idle.lock().unwrap().len(), 1);
    let (_, big) = client.get("/big", Duration::from_secs(5)).await.unwrap();
    assert_eq!(big.len(), 64 * 1024);
    let small = client.clone().with_max_body(1024);
    let e = small.get("/big", Duration::from_secs(5)).await.unwrap_err();
    assert!(matches!(e, HttpError::BadBody { .. }), "{e}");
    let e = client
        .get("/slow", Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(matches!(e, HttpError::Timeout { .. }), "{e}");
    let plain = Client::plain(&server(None).await).unwrap();
    let (_, body) = plain.get("/c", Duration::from_secs(5)).await.unwrap();
    assert_eq!(&body[..], b"GET /c");
}

#[tokio::test]
async fn a_wrong_pin_is_refused_naming_both_fingerprints() {
    let (_dir, id) = identity();
    let base = server(Some(id.server_config().unwrap())).await;
    let wrong = Pin([7; 32]);
    let e = Client::new(&base, wrong)
        .unwrap()
        .get("/a", Duration::from_secs(5))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains(&id.pin().to_string()), "{e}");
    assert!(e.contains(&wrong.to_string()), "{e}");
    assert!(e.contains("pinned"), "{e}");
}

#[tokio::test]
async fn plain_http_to_a_tls_port_gets_a_clear_refusal() {
    let (_dir, id) = identity();
    let base = server(Some(id.server_config().unwrap())).await;
    let plain = Client::plain(&base.replace("https://", "http://")).unwrap();
    let (status, body) = plain.get("/a", Duration::from_secs(5)).await.unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("HTTPS only") && text.contains("--pin"),
        "{text}"
    );
}

#[tokio::test]
async fn the_handshake_negotiates_the_post_quantum_hybrid() {
    let (_dir, id) = identity();
    let base = server(Some(id.server_config().unwrap())).await;
    let addr = base.trim_start_matches("https://").to_string();
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let config = crate::tls::client_config(id.pin()).unwrap();
    let stream = tokio_rustls::TlsConnector::from(config)
        .connect(
            rustls::pki_types::ServerName::from(std::net::IpAddr::from([127, 0, 0, 1])),
            tcp,
        )
        .await
        .unwrap();
    let (_, conn) = stream.get_ref();
    assert_eq!(
        crate::tls::group(conn),
        Some(rustls::NamedGroup::X25519MLKEM768)
    );
    assert_eq!(
        conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    assert!(crate::tls::exporter(conn).is_some());
}

#[tokio::test]
async fn nothing_listening_says_where_and_what_to_check() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let client = Client::new(&format!("https://127.0.0.1:{port}"), Pin([0; 32])).unwrap();
    let e = client
        .get("/v1/ping", Duration::from_secs(5))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!(
            "cannot reach the conductor at https://127.0.0.1:{port}"
        )),
        "{e}"
    );
    assert!(e.contains("SKR8TR_CONDUCTOR"), "{e}");
}

#[test]
fn pins_parse_from_text_a_pin_file_or_a_certificate() {
    let (dir, id) = identity();
    let text = id.pin().to_string();
    assert_eq!(Pin::parse(&text).unwrap(), id.pin());
    let pin_file = dir.path().join(crate::tls::PIN_FILE);
    let cert_file = dir.path().join(crate::tls::CERT_FILE);
    assert_eq!(Pin::from_arg(pin_file.to_str().unwrap()).unwrap(), id.pin());
    assert_eq!(
        Pin::from_arg(cert_file.to_str().unwrap()).unwrap(),
        id.pin()
    );
    assert_eq!(Pin::from_arg(&text).unwrap(), id.pin());
    for bad in ["sha256:12", "md5:00", "sha256:zz"] {
        assert!(Pin::parse(bad).is_err(), "{bad}");
    }
    let e = Pin::from_arg("/nonexistent/tls.pin")
        .unwrap_err()
        .to_string();
    assert!(e.contains("/nonexistent/tls.pin"), "{e}");
    // The key is private.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join(crate::tls::KEY_FILE))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // And it reads back to the same identity.
    assert_eq!(Identity::read(dir.path()).unwrap().pin(), id.pin());
}

/// `tls::accept` on one accepted connection, with a `within` deadline.
async fn accept_one(
    within: Duration,
) -> (
    std::net::SocketAddr,
    tokio::task::JoinHandle<(Duration, bool)>,
) {
    let (dir, id) = identity();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(id.server_config().unwrap());
    let task = tokio::spawn(async move {
        let _dir = dir;
        let (stream, _) = listener.accept().await.unwrap();
        let io = crate::server::Guarded::new(stream, Duration::from_secs(60));
        let t = std::time::Instant::now();
        let ok = crate::tls::accept(&acceptor, io, within).await.is_ok();
        (t.elapsed(), ok)
    });
    (addr, task)
}

#[tokio::test]
async fn a_silent_client_and_a_handshake_trickled_a_byte_a_second_are_cut_at_the_deadline() {
    use tokio::io::AsyncWriteExt;
    let within = Duration::from_millis(400);
    // Connects and sends nothing.
    let (addr, task) = accept_one(within).await;
    let _silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (took, ok) = task.await.unwrap();
    assert!(!ok && took >= within && took < within * 5, "{took:?}");
    // Starts a TLS record (0x16), then one byte a second.
    let (addr, task) = accept_one(within).await;
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    let trickle = tokio::spawn(async move {
        for b in [0x16u8, 0x03, 0x01, 0x00, 0x10] {
            if slow.write_all(&[b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let (took, ok) = task.await.unwrap();
    trickle.abort();
    assert!(!ok && took >= within && took < within * 5, "{took:?}");
}
