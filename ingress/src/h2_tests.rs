//! HTTP/2 to clients: by ALPN over TLS, and cleartext with `--h2c` only;
//! backends still get pooled HTTP/1.1 with a `Host` header.

use crate::tests::{backend, endpoint, ingress};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::sync::atomic::Ordering;

pub(crate) type H2 = hyper::client::conn::http2::SendRequest<Full<Bytes>>;

pub(crate) async fn h2_over<S>(io: S) -> Result<H2, hyper::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

/// A TLS connection to the ingress at `addr` whose client offers `h2`
/// then `http/1.1` by ALPN.
pub(crate) async fn offering_h2(
    addr: std::net::SocketAddr,
    pin: skr8tr_net::Pin,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut client = (*skr8tr_net::tls::client_config(pin).unwrap()).clone();
    client.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(client))
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
            stream,
        )
        .await
        .unwrap()
}

pub(crate) async fn get(sender: &mut H2, uri: &str) -> (StatusCode, String) {
    let request = Request::get(uri).body(Full::new(Bytes::new())).unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A fresh TLS identity in a directory of its own (`name`), and the
/// ingress's server configuration for it.
pub(crate) fn tls_identity(
    name: &str,
) -> (
    std::path::PathBuf,
    skr8tr_net::tls::Identity,
    std::sync::Arc<rustls::ServerConfig>,
) {
    let dir = std::env::temp_dir().join(format!("skr8tr-ingress-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let id = skr8tr_net::tls::Identity::create(&dir).unwrap();
    let tls = crate::tls::server_config(
        &dir.join(skr8tr_net::tls::CERT_FILE),
        &dir.join(skr8tr_net::tls::KEY_FILE),
    )
    .unwrap();
    (dir, id, tls)
}

#[tokio::test]
async fn tls_clients_that_offer_h2_get_http2_and_backends_get_http1_with_a_host() {
    let (dir, id, tls) = tls_identity("h2");
    let b = backend("b1").await;
    let (_, addr) = ingress(
        &["/:web"],
        &[("web", vec![endpoint("web/1/0", b.addr)])],
        |c| c.tls = Some(crate::tls::with_http2(&tls)),
    )
    .await;
    let tls_stream = offering_h2(addr, id.pin()).await;
    assert_eq!(tls_stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut sender = h2_over(tls_stream).await.unwrap();
    // Several streams at once on the one connection.
    let mut answers = Vec::new();
    for i in 0..8 {
        let mut s = sender.clone();
        answers.push(tokio::spawn(async move {
            get(&mut s, &format!("https://localhost/p{i}?q=1")).await
        }));
    }
    for (i, a) in answers.into_iter().enumerate() {
        let (status, text) = a.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{text}");
        assert!(
            text.starts_with(&format!("b1 GET /p{i}?q=1 host=localhost ")),
            "{text}"
        );
        assert!(text.contains("proto=https"), "{text}");
    }
    let (status, _) = get(&mut sender, "https://localhost/again").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(b.requests.load(Ordering::Relaxed), 9);
    assert!(
        b.connections.load(Ordering::Relaxed) <= 8,
        "pooled HTTP/1.1 to the backend"
    );
    // With `--http2 false`, a TLS client offering h2 gets HTTP/1.1.
    let (_, plain_tls) = ingress(
        &["/:web"],
        &[("web", vec![endpoint("web/1/0", b.addr)])],
        |c| c.tls = Some(tls),
    )
    .await;
    let tls_stream = offering_h2(plain_tls, id.pin()).await;
    assert_ne!(tls_stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn cleartext_http2_is_served_only_with_h2c_beside_http1() {
    let b = backend("b1").await;
    let apps = [("web", vec![endpoint("web/1/0", b.addr)])];
    let (_, with) = ingress(&["/:web"], &apps, |c| c.h2c = true).await;
    let stream = tokio::net::TcpStream::connect(with).await.unwrap();
    let mut sender = h2_over(stream).await.unwrap();
    let (status, text) = get(&mut sender, "http://api.test/x").await;
    assert_eq!(status, StatusCode::OK);
    assert!(text.starts_with("b1 GET /x host=api.test "), "{text}");
    // A Host that is not the :authority is refused (RFC 9113 8.3.1).
    let request = Request::get("http://api.test/x")
        .header("host", "other.test")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    // HTTP/1.1 still works on the same listener.
    let (status, text) = crate::tests::send(
        with,
        Request::get("/y")
            .header("host", "old.test")
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(text.contains("host=old.test"), "{text}");
    // Without the flag, a prior-knowledge HTTP/2 client gets no answer.
    let (_, without) = ingress(&["/:web"], &apps, |_| {}).await;
    let stream = tokio::net::TcpStream::connect(without).await.unwrap();
    let refused = match h2_over(stream).await {
        Err(_) => true,
        Ok(mut s) => {
            let request = Request::get("http://api.test/x")
                .body(Full::new(Bytes::new()))
                .unwrap();
            s.send_request(request).await.is_err()
        }
    };
    assert!(refused, "HTTP/2 without --h2c must not be served");
}
