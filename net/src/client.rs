//! A small HTTP/1 client over hyper-util's pooled client: postcard bodies
//! to and from the conductor, with a timeout on every exchange and a size
//! cap on every response body.

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

/// Largest response body read by default: two of the largest request
/// bodies (a command reply, a report ack or a page of history is far less).
pub const DEFAULT_MAX_BODY: usize = 2 * MAX_BODY_BYTES;

#[derive(Clone)]
pub struct Client {
    inner: Pooled<HttpConnector, Full<Bytes>>,
    base: String,
    max_body: usize,
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
        Ok(Client {
            inner,
            base,
            max_body: DEFAULT_MAX_BODY,
        })
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
            let bytes = Limited::new(response.into_body(), self.max_body)
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

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::body::Incoming;
    use hyper_util::rt::TokioIo;

    /// A local HTTP server answering `/big` with `n` bytes, `/slow` never,
    /// and anything else with the request's method and path.
    async fn server() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
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
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        format!("http://{addr}")
    }

    #[test]
    fn only_plain_base_urls_are_accepted() {
        assert!(Client::new("http://127.0.0.1:7771").is_ok());
        assert_eq!(
            Client::new("http://127.0.0.1:7771/").unwrap().base(),
            "http://127.0.0.1:7771"
        );
        for bad in ["127.0.0.1:7771", "http://", "http://h/path", "ftp://h", ""] {
            let e = Client::new(bad).err().map(|e| e.to_string());
            assert!(
                e.as_deref()
                    .is_some_and(|e| e.contains("is not a conductor URL")),
                "{bad}: {e:?}"
            );
        }
    }

    #[tokio::test]
    async fn requests_answer_within_their_timeout_and_bodies_are_capped() {
        let base = server().await;
        let client = Client::new(&base).unwrap();
        let (status, body) = client.get("/a", Duration::from_secs(5)).await.unwrap();
        assert_eq!((status, &body[..]), (StatusCode::OK, &b"GET /a"[..]));
        let (_, body) = client
            .post("/b", b"x".to_vec(), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(&body[..], b"POST /b");
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
    }

    #[tokio::test]
    async fn nothing_listening_says_where_and_what_to_check() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let client = Client::new(&format!("http://127.0.0.1:{port}")).unwrap();
        let e = client
            .get("/v1/ping", Duration::from_secs(5))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!(
                "cannot reach the conductor at http://127.0.0.1:{port}"
            )),
            "{e}"
        );
        assert!(e.contains("SKR8TR_CONDUCTOR"), "{e}");
    }
}
