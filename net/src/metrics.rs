//! `GET /metrics`: the one scrape endpoint every daemon serves on its
//! `--metrics-listen` address, apart from its API (plain HTTP, read-only,
//! counts and names only — no secret, no key, no log line).
//!
//! The metrics are `prometheus-client` types in a [`Registry`], encoded
//! by that crate. Prometheus asks for OpenMetrics and gets it as the crate
//! writes it. A client that does not (`curl`, `promtool check metrics`,
//! scrapers that read only the classic text format) gets the classic
//! format: OpenMetrics names a counter family `x` and its sample
//! `x_total`, where the classic format names both `x_total`, so the HELP
//! and TYPE lines of counter families are renamed and `# EOF` dropped —
//! samples are the crate's, unchanged.
//!
//! Gauges of "how many are in each state" are set from the daemon's own
//! state at each scrape ([`Exposition::refresh`]), not kept up to date on
//! every change.

use crate::server::{self, Limits};
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
pub use prometheus_client::registry::Registry;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const CLASSIC: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A registry, and what to update in it before each scrape.
pub struct Exposition {
    pub registry: Registry,
    refresh: Box<dyn Fn() + Send + Sync>,
    /// The last page in each format and when it was made: scrapes within
    /// [`FRESH_FOR`] of it get it again, so a client asking as fast as it
    /// can costs one page per format per interval, not one per request.
    last: std::sync::Mutex<[Option<(std::time::Instant, Bytes)>; 2]>,
}

/// How long a page is served again before it is made anew.
pub const FRESH_FOR: Duration = Duration::from_millis(500);

impl Exposition {
    pub fn new(registry: Registry) -> Exposition {
        Exposition {
            registry,
            refresh: Box::new(|| {}),
            last: std::sync::Mutex::new([None, None]),
        }
    }

    /// The last page, if it is fresh and no page is being made (this runs
    /// on the async thread, which must not wait for a render).
    pub fn fresh(&self, openmetrics: bool) -> Option<Bytes> {
        let last = self.last.try_lock().ok()?;
        last[usize::from(openmetrics)]
            .as_ref()
            .filter(|(at, _)| at.elapsed() < FRESH_FOR)
            .map(|(_, page)| page.clone())
    }

    /// The page, made at most once per [`FRESH_FOR`] per format (one
    /// scrape makes it while the others wait for it).
    pub fn page(&self, openmetrics: bool) -> Bytes {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let slot = &mut last[usize::from(openmetrics)];
        if let Some((at, page)) = slot.as_ref()
            && at.elapsed() < FRESH_FOR
        {
            return page.clone();
        }
        let page = Bytes::from(self.render(openmetrics));
        *slot = Some((std::time::Instant::now(), page.clone()));
        page
    }

    /// `refresh` runs before every scrape (on the blocking pool: it may
    /// read the store).
    pub fn refresh(mut self, refresh: impl Fn() + Send + Sync + 'static) -> Exposition {
        self.refresh = Box::new(refresh);
        self
    }

    /// The registry's text, in OpenMetrics or the classic format.
    pub fn render(&self, openmetrics: bool) -> String {
        (self.refresh)();
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            // Writing to a String cannot fail; an encoder error means a
            // metric refused to encode, and a partial page is still useful.
            tracing::warn!("a metric could not be encoded");
        }
        if openmetrics { text } else { classic(&text) }
    }
}

/// OpenMetrics text as the classic (0.0.4) format: counter families'
/// HELP and TYPE lines take their samples' `_total` name; `# EOF` goes.
pub fn classic(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help: Option<&str> = None;
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if line.starts_with("# HELP ") {
            if let Some(h) = help.replace(line) {
                out.push_str(h);
                out.push('\n');
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ")
            && let Some(name) = rest.strip_suffix(" counter")
        {
            if let Some(h) = help.take() {
                let text = h
                    .strip_prefix("# HELP ")
                    .and_then(|t| t.strip_prefix(name))
                    .unwrap_or("");
                out.push_str(&format!("# HELP {name}_total{text}\n"));
            }
            out.push_str(&format!("# TYPE {name}_total counter\n"));
            continue;
        }
        if let Some(h) = help.take() {
            out.push_str(h);
            out.push('\n');
        }
        out.push_str(line);
        out.push('\n');
    }
    if let Some(h) = help {
        out.push_str(h);
        out.push('\n');
    }
    out
}

/// The scrape socket's bounds: a few scrapers, quick heads, nothing to
/// upload.
pub fn limits() -> Limits {
    Limits {
        max_connections: 16,
        max_per_ip: 4,
        header_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(30),
        body_timeout: Duration::from_secs(5),
        max_header_bytes: 8 * 1024,
        unlimited_sources: Vec::new(),
    }
}

/// Binds `addr` for [`serve`], saying what to fix when it cannot.
pub async fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    if !addr.ip().is_loopback() {
        tracing::warn!(
            "--metrics-listen {addr}: anyone who reaches this address can read the metrics \
             (app, node and route names, counts); bind a loopback or private address \
             and let only Prometheus reach it"
        );
    }
    TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen for metrics on {addr} (--metrics-listen): {e}"),
        )
    })
}

/// Binds `addr` and serves `exposition` there on a task of its own, for
/// the life of the runtime; says where in the log.
pub async fn start(addr: std::net::SocketAddr, exposition: Exposition) -> std::io::Result<()> {
    let listener = bind(addr).await?;
    tracing::info!("metrics on http://{}/metrics", listener.local_addr()?);
    tokio::spawn(serve(
        listener,
        Arc::new(exposition),
        std::future::pending(),
    ));
    Ok(())
}

/// Serves `GET /metrics` from `exposition` on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    exposition: Arc<Exposition>,
    shutdown: impl Future<Output = ()>,
) {
    let limits = limits();
    let http = limits.clone();
    server::serve("metrics", listener, limits, shutdown, move |io, _peer| {
        let exposition = exposition.clone();
        let http = http.clone();
        async move {
            let service = hyper::service::service_fn(move |req| {
                let exposition = exposition.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(exposition, &req).await) }
            });
            let _ = http
                .http1()
                .serve_connection(TokioIo::new(io), service)
                .await;
        }
    })
    .await;
}

async fn answer<B>(exposition: Arc<Exposition>, req: &Request<B>) -> Response<Full<Bytes>> {
    if req.uri().path() != "/metrics" {
        return plain(StatusCode::NOT_FOUND, "only /metrics is served here\n");
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "GET /metrics\n");
        r.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let openmetrics = req
        .headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let head = req.method() == Method::HEAD;
    // A fresh page is answered here; only making one goes to the blocking
    // pool (a refresh may read the store or /proc).
    let text = match exposition.fresh(openmetrics) {
        Some(page) => Ok(page),
        None => tokio::task::spawn_blocking(move || exposition.page(openmetrics)).await,
    };
    let Ok(text) = text else {
        return plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the metrics could not be gathered\n",
        );
    };
    let body = if head { Bytes::new() } else { text };
    Response::builder()
        .header(
            header::CONTENT_TYPE,
            if openmetrics { OPENMETRICS } else { CLASSIC },
        )
        .body(Full::new(body))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::gauge::Gauge;

    #[test]
    fn counters_take_their_samples_name_in_the_classic_format() {
        let mut r = Registry::default();
        let c = Family::<Vec<(String, String)>, Counter>::default();
        r.register("skr8tr_things", "Things done", c.clone());
        let g = Gauge::<i64>::default();
        r.register("skr8tr_open", "Open now", g.clone());
        c.get_or_create(&vec![("kind".into(), "up".into())]).inc();
        g.set(3);
        let text = Exposition::new(r).render(false);
        assert_eq!(
            text,
            "# HELP skr8tr_things_total Things done.\n\
             # TYPE skr8tr_things_total counter\n\
             skr8tr_things_total{kind=\"up\"} 1\n\
             # HELP skr8tr_open Open now.\n\
             # TYPE skr8tr_open gauge\n\
             skr8tr_open 3\n"
        );
    }

    #[test]
    fn openmetrics_is_the_crates_own_text() {
        let mut r = Registry::default();
        let c = Counter::<u64>::default();
        r.register("skr8tr_things", "Things done", c.clone());
        c.inc();
        let text = Exposition::new(r).render(true);
        assert!(text.contains("# TYPE skr8tr_things counter\nskr8tr_things_total 1\n"));
        assert!(text.ends_with("# EOF\n"));
    }
}
