//! The HTTP/1 client to the conductor: TLS to the pinned identity on every
//! connection, a session proven once per connection (see `session`),
//! postcard bodies, a timeout on every exchange and a size cap on every
//! response body. Connections are kept (a few per client) and reused.
//!
//! [`Client::plain`] is the same client without TLS, for what is not the
//! conductor: the ingress's public side and replicas, in tests and load
//! generators.

use crate::session::{Auth, open_session};
use crate::tls::{self, Pin};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use skr8tr_proto::wire::{CONTENT_TYPE, MAX_BODY_BYTES};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("`{0}` is not a conductor URL; write it like https://127.0.0.1:7771")]
    BadUrl(String),
    #[error(
        "`{0}` is plain HTTP: the conductor speaks TLS only; write https://{1} \
         (and pin its identity with --pin / SKR8TR_PIN)"
    )]
    PlainHttp(String, String),
    #[error(
        "cannot reach the conductor at {url}: {reason}; is `skr8tr conductor` running there? \
         (set --conductor or SKR8TR_CONDUCTOR)"
    )]
    Unreachable { url: String, reason: String },
    #[error("the TLS handshake with {url} failed: {reason}")]
    Handshake { url: String, reason: String },
    #[error("{url} refused the session: {reason}")]
    Session { url: String, reason: String },
    #[error("the conductor at {url} did not answer within {secs} s")]
    Timeout { url: String, secs: u64 },
    #[error("the answer from {url} is unreadable: {reason}")]
    BadBody { url: String, reason: String },
}

/// Largest response body read by default: two of the largest request
/// bodies (a command reply, a report ack or a page of history is far less).
pub const DEFAULT_MAX_BODY: usize = 2 * MAX_BODY_BYTES;
/// Connections kept for reuse, per client.
const MAX_IDLE: usize = 4;
/// A kept connection unused this long is closed rather than reused: well
/// inside the conductor's header timeout (10 s), after which it closes an
/// idle connection, so a request is not written as it does.
const IDLE_FOR: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection kept for reuse, and since when it is idle.
type Kept = (SendRequest<Full<Bytes>>, Instant);

#[derive(Clone)]
pub struct Client {
    base: String,
    /// `host:port`.
    authority: String,
    host: String,
    tls: Option<Arc<rustls::ClientConfig>>,
    auth: Option<Arc<Auth>>,
    idle: Arc<Mutex<Vec<Kept>>>,
    max_body: usize,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("tls", &self.tls.is_some())
            .field("auth", &self.auth.as_ref().map(|a| &a.role))
            .finish()
    }
}

impl Client {
    /// A client of the conductor at `base` (`https://HOST:PORT`, no path)
    /// whose TLS identity is `pin`.
    pub fn new(base: &str, pin: Pin) -> Result<Client, HttpError> {
        let base = base.trim_end_matches('/').to_string();
        if let Some(rest) = base.strip_prefix("http://") {
            return Err(HttpError::PlainHttp(base.clone(), rest.to_string()));
        }
        let authority = authority(&base, "https://")?;
        let tls = tls::client_config(pin).map_err(|e| HttpError::Handshake {
            url: base.clone(),
            reason: e.to_string(),
        })?;
        Ok(Client::build(base, authority, Some(tls)))
    }

    /// A plain-HTTP client (`http://HOST:PORT`), for replicas and the
    /// ingress's public side — never for the conductor, which refuses it.
    pub fn plain(base: &str) -> Result<Client, HttpError> {
        let base = base.trim_end_matches('/').to_string();
        let authority = authority(&base, "http://")?;
        Ok(Client::build(base, authority, None))
    }

    fn build(base: String, authority: String, tls: Option<Arc<rustls::ClientConfig>>) -> Client {
        let host = match authority.rsplit_once(':') {
            Some((h, _)) => h.trim_start_matches('[').trim_end_matches(']').to_string(),
            None => authority.clone(),
        };
        Client {
            base,
            authority,
            host,
            tls,
            auth: None,
            idle: Arc::new(Mutex::new(Vec::new())),
            max_body: DEFAULT_MAX_BODY,
        }
    }

    /// The same client, opening a session with `auth` on every new
    /// connection (every endpoint but `ping` needs one).
    pub fn with_auth(mut self, auth: Auth) -> Client {
        self.auth = Some(Arc::new(auth));
        self.idle = Arc::new(Mutex::new(Vec::new()));
        self
    }

    /// The same client, reading response bodies of up to `bytes` (a
    /// larger one is an error, never a truncated answer).
    pub fn with_max_body(mut self, bytes: usize) -> Client {
        self.max_body = bytes;
        self
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub async fn get(
        &self,
        path: &str,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), HttpError> {
        self.send(Method::GET, path, Bytes::new(), timeout).await
    }

    pub async fn post(
        &self,
        path: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), HttpError> {
        self.send(Method::POST, path, Bytes::from(body), timeout)
            .await
    }

    /// POSTs and returns the response as it starts, for bodies that are
    /// streams (`logs -f`); the caller reads frames as they come. The
    /// connection is not reused.
    pub async fn post_streaming(
        &self,
        path: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<hyper::Response<hyper::body::Incoming>, HttpError> {
        let exchange = async {
            let (mut sender, _) = self.connection().await?;
            let request = self.request(Method::POST, path, Bytes::from(body))?;
            sender
                .send_request(request)
                .await
                .map_err(|e| self.unreachable(&e))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| self.timeout(path, timeout))?
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), HttpError> {
        let exchange = async {
            let mut attempt = 0;
            let response = loop {
                attempt += 1;
                let (mut sender, reused) = self.connection().await?;
                let request = self.request(method.clone(), path, body.clone())?;
                match sender.try_send_request(request).await {
                    Ok(response) => break (response, sender),
                    // A kept connection the server had closed: the request
                    // was never sent, so sending it again is safe.
                    Err(e) if reused && attempt < 3 && e.message().is_some() => continue,
                    Err(e) => return Err(self.unreachable(e.error())),
                }
            };
            let (response, sender) = response;
            let status = response.status();
            let bytes = Limited::new(response.into_body(), self.max_body)
                .collect()
                .await
                .map_err(|e| HttpError::BadBody {
                    url: format!("{}{path}", self.base),
                    reason: e.to_string(),
                })?
                .to_bytes();
            self.keep(sender);
            Ok((status, bytes))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| self.timeout(path, timeout))?
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<Request<Full<Bytes>>, HttpError> {
        Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &self.authority)
            .header(hyper::header::CONTENT_TYPE, CONTENT_TYPE)
            .body(Full::new(body))
            .map_err(|_| HttpError::BadUrl(format!("{}{path}", self.base)))
    }

    /// A kept connection that is still open, or a new one (with its
    /// session opened); `true` if it was kept.
    async fn connection(&self) -> Result<(SendRequest<Full<Bytes>>, bool), HttpError> {
        loop {
            let kept = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let Some((mut sender, since)) = kept else {
                break;
            };
            if since.elapsed() < IDLE_FOR && !sender.is_closed() && sender.ready().await.is_ok() {
                return Ok((sender, true));
            }
        }
        self.connect().await.map(|s| (s, false))
    }

    fn keep(&self, sender: SendRequest<Full<Bytes>>) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push((sender, Instant::now()));
        }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, HttpError> {
        let tcp = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio::net::TcpStream::connect(&self.authority),
        )
        .await
        .map_err(|_| HttpError::Unreachable {
            url: self.base.clone(),
            reason: format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
        })?
        .map_err(|e| self.unreachable(&e))?;
        let _ = tcp.set_nodelay(true);
        let Some(config) = &self.tls else {
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                .await
                .map_err(|e| self.unreachable(&e))?;
            tokio::spawn(conn);
            return Ok(sender);
        };
        let name =
            rustls::pki_types::ServerName::try_from(self.host.clone()).unwrap_or_else(|_| {
                rustls::pki_types::ServerName::from(std::net::IpAddr::from([127, 0, 0, 1]))
            });
        let stream = tokio_rustls::TlsConnector::from(config.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| HttpError::Handshake {
                url: self.base.clone(),
                reason: handshake_failure(&e),
            })?;
        let exporter = tls::exporter(stream.get_ref().1);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| self.unreachable(&e))?;
        tokio::spawn(conn);
        if let Some(auth) = &self.auth {
            let exporter = exporter.ok_or_else(|| HttpError::Handshake {
                url: self.base.clone(),
                reason: "the session has no exporter".into(),
            })?;
            open_session(&mut sender, &self.authority, auth, &exporter)
                .await
                .map_err(|reason| HttpError::Session {
                    url: self.base.clone(),
                    reason,
                })?;
        }
        Ok(sender)
    }

    fn unreachable(&self, e: &(dyn std::error::Error + 'static)) -> HttpError {
        HttpError::Unreachable {
            url: self.base.clone(),
            reason: root_cause(e),
        }
    }

    fn timeout(&self, path: &str, timeout: Duration) -> HttpError {
        HttpError::Timeout {
            url: format!("{}{path}", self.base),
            secs: timeout.as_secs(),
        }
    }
}

/// `host:port` of a base URL with `scheme`.
fn authority(base: &str, scheme: &str) -> Result<String, HttpError> {
    let bad = || HttpError::BadUrl(base.to_string());
    let rest = base.strip_prefix(scheme).ok_or_else(bad)?;
    if rest.is_empty() || rest.contains('/') || base.parse::<hyper::Uri>().is_err() {
        return Err(bad());
    }
    let uri: hyper::Uri = base.parse().map_err(|_| bad())?;
    let host = uri.host().ok_or_else(bad)?;
    let port = uri
        .port_u16()
        .unwrap_or(if scheme == "https://" { 443 } else { 80 });
    Ok(format!("{host}:{port}"))
}

/// Why a handshake failed, in words: a pin mismatch names both
/// fingerprints (rustls shows its inner error with `Debug`).
fn handshake_failure(e: &std::io::Error) -> String {
    if let Some(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other))) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        return other.0.to_string();
    }
    root_cause(e)
}

/// The innermost error message ("Connection refused"), not the wrappers';
/// a TLS error keeps rustls's own words, which name what was wrong.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
