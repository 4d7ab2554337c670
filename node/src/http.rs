//! A small HTTP/1 client over hyper-util's pooled client: postcard bodies
//! to and from the conductor, with a timeout and a size cap on every
//! response. The CLI uses it too.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client as Pooled;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use skr8tr_proto::wire::{CONTENT_TYPE, MAX_BODY_BYTES};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("`{0}` is not a conductor URL; write it like http://127.0.0.1:7771")]
    BadUrl(String),
    #[error(
        "cannot reach the conductor at {url}: {reason}; is `skr8tr conductor` running there? \
         (set --conductor or SKR8TR_CONDUCTOR)"
    )]
    Unreachable { url: String, reason: String },
    #[error("the conductor at {url} did not answer within {secs} s")]
    Timeout { url: String, secs: u64 },
    #[error("the answer from {url} is unreadable: {reason}")]
    BadBody { url: String, reason: String },
}

#[derive(Clone)]
pub struct Client {
    inner: Pooled<HttpConnector, Full<Bytes>>,
    base: String,
}

impl Client {
    /// `base` is `http://HOST:PORT` (no path).
    pub fn new(base: &str) -> Result<Client, HttpError> {
        let base = base.trim_end_matches('/').to_string();
        let ok = base
            .strip_prefix("http://")
            .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'));
        if !ok || base.parse::<hyper::Uri>().is_err() {
            return Err(HttpError::BadUrl(base));
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let inner = Pooled::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(4)
            .build(connector);
        Ok(Client { inner, base })
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
    /// streams (`logs -f`); the caller reads frames as they come.
    pub async fn post_streaming(
        &self,
        path: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<hyper::Response<hyper::body::Incoming>, HttpError> {
        let url = format!("{}{path}", self.base);
        let request = Request::builder()
            .method(Method::POST)
            .uri(&url)
            .header(hyper::header::CONTENT_TYPE, CONTENT_TYPE)
            .body(Full::new(Bytes::from(body)))
            .map_err(|_| HttpError::BadUrl(url.clone()))?;
        tokio::time::timeout(timeout, self.inner.request(request))
            .await
            .map_err(|_| HttpError::Timeout {
                url: url.clone(),
                secs: timeout.as_secs(),
            })?
            .map_err(|e| HttpError::Unreachable {
                url: self.base.clone(),
                reason: root_cause(&e),
            })
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), HttpError> {
        let url = format!("{}{path}", self.base);
        let request = Request::builder()
            .method(method)
            .uri(&url)
            .header(hyper::header::CONTENT_TYPE, CONTENT_TYPE)
            .body(Full::new(body))
            .map_err(|_| HttpError::BadUrl(url.clone()))?;
        let exchange = async {
            let response =
                self.inner
                    .request(request)
                    .await
                    .map_err(|e| HttpError::Unreachable {
                        url: self.base.clone(),
                        reason: root_cause(&e),
                    })?;
            let status = response.status();
            let bytes = Limited::new(response.into_body(), 2 * MAX_BODY_BYTES)
                .collect()
                .await
                .map_err(|e| HttpError::BadBody {
                    url: url.clone(),
                    reason: e.to_string(),
                })?
                .to_bytes();
            Ok((status, bytes))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| HttpError::Timeout {
                url: url.clone(),
                secs: timeout.as_secs(),
            })?
    }
}

/// The innermost error message ("Connection refused"), not hyper's wrapper.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
