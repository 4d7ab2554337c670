//! The HTTP ingress: a reverse proxy whose backends follow the conductor's
//! service registry. Stateless: it keeps only the last good registry
//! snapshot, and keeps serving with it while the conductor is away.
//!
//! Layout:
//! - this file: [`Config`] and [`run`] (accept loop, registry watcher on
//!   `skr8tr_net::Client`).
//! - `routes`: the route table (`--route` flags and manifest routes), by
//!   host then longest prefix.
//! - `proxy`: one request: route, backend choice, retries, `Upgrade`
//!   passthrough, access log.
//! - [`headers`]: hop-by-hop removal, `X-Forwarded-*`, `Forwarded`,
//!   `X-Real-IP`, trusted proxies.
//! - [`limits`]: [`Limits`] — client connection bounds, body size, backend
//!   timeout, with their defaults.
//! - `serve`: one client connection in HTTP/1.1 or HTTP/2 (ALPN `h2`,
//!   or cleartext with `--h2c`).
//! - [`metrics`]: what `/metrics` shows (`--metrics-listen`).
//! - `pool`: keep-alive HTTP/1 connections per backend.
//! - `state`: the shared snapshot, round robin, ejections, the backend pool.
//! - [`tls`]: the rustls server configuration from PEM files.
//!
//! Path: client → `proxy::handle` → route → endpoint (round robin) →
//! pooled keep-alive connection → replica; registry: `watch` long-polls
//! `/v1/registry` and swaps the snapshot.

#![forbid(unsafe_code)]

mod gate;
pub mod headers;
pub mod limits;
pub mod metrics;
mod pool;
mod proxy;
pub mod routes;
mod serve;
mod state;
pub mod tls;

#[cfg(test)]
mod h2_bounds_tests;
#[cfg(test)]
mod h2_tests;
#[cfg(test)]
mod tests;

pub use limits::Limits;
pub use routes::Route;

use serve::{Protocol, serve};
use skr8tr_net::Client;
use skr8tr_net::server;
use skr8tr_proto::wire::{self, RegistrySnapshot};
use state::Shared;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Config {
    /// The conductor: TLS to its pinned identity, sessions opened with
    /// the ingress's admitted key (which may read the registry only).
    pub conductor: Client,
    pub routes: Vec<Route>,
    pub limits: Limits,
    /// Peers whose `X-Forwarded-For` and `Forwarded` are appended to
    /// rather than replaced (`--trust-proxy CIDR`); see `headers`.
    pub trusted_proxies: Vec<headers::Cidr>,
    /// One `tracing` line per request (method, path, status, backend, ms).
    pub access_log: bool,
    /// Terminate TLS with this configuration (see [`tls::server_config`]):
    /// HTTP/2 or HTTP/1.1 by ALPN.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Serve cleartext HTTP/2 (prior knowledge) beside HTTP/1.1 on a
    /// plain listener (`--h2c`).
    pub h2c: bool,
    /// `--metrics-listen ADDR`: serve `GET /metrics` there.
    pub metrics_listen: Option<std::net::SocketAddr>,
}

impl Config {
    pub fn new(conductor: Client, routes: Vec<Route>) -> Config {
        Config {
            conductor,
            routes,
            limits: Limits::default(),
            trusted_proxies: Vec::new(),
            access_log: true,
            tls: None,
            h2c: false,
            metrics_listen: None,
        }
    }
}

/// Serves on `listener` until `shutdown`.
pub async fn run(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    // The registry watcher's client: a snapshot names every endpoint of
    // every app, so it may be larger than a command reply.
    let conductor = config.conductor.clone().with_max_body(REGISTRY_MAX_BYTES);
    let metrics_listen = config.metrics_listen;
    let shared = Arc::new(Shared::new(config));
    if let Some(addr) = metrics_listen {
        let page = skr8tr_net::metrics::Exposition::new(shared.metrics.registry());
        skr8tr_net::metrics::start(addr, page).await?;
    }
    let watcher = tokio::spawn(watch(shared.clone(), conductor));
    accept_loop(shared, listener, shutdown).await;
    watcher.abort();
    Ok(())
}

/// Accepts client connections within the limits and serves each on a
/// task of its own, until `shutdown`.
async fn accept_loop(
    shared: Arc<Shared>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()>,
) {
    let limits = shared.config.limits.clients.clone();
    server::serve("ingress", listener, limits, shutdown, move |io, client| {
        let shared = shared.clone();
        async move {
            match shared.config.tls.clone() {
                None => {
                    let protocol = if shared.config.h2c {
                        Protocol::Either
                    } else {
                        Protocol::Http1
                    };
                    serve(shared, client, io, false, protocol).await
                }
                Some(config) => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(config);
                    let within = shared.config.limits.clients.header_timeout;
                    match tokio::time::timeout(within, acceptor.accept(io)).await {
                        Ok(Ok(tls)) => {
                            let protocol = match tls.get_ref().1.alpn_protocol() {
                                Some(b"h2") => Protocol::Http2,
                                _ => Protocol::Http1,
                            };
                            serve(shared, client, tls, true, protocol).await
                        }
                        Ok(Err(e)) => tracing::debug!("TLS handshake with {client}: {e}"),
                        Err(_) => tracing::debug!("TLS handshake with {client} timed out"),
                    }
                }
            }
        }
    })
    .await;
}

/// Largest registry snapshot read (about 100,000 endpoints).
const REGISTRY_MAX_BYTES: usize = 8 * wire::MAX_BODY_BYTES;
/// Longer than the conductor's long-poll window (25 s).
const REGISTRY_POLL_TIMEOUT: Duration = Duration::from_secs(35);

/// Keeps the registry snapshot current; on any failure keeps the last good
/// one and tries again.
async fn watch(shared: Arc<Shared>, conductor: Client) {
    let mut index = 0u64;
    let mut backoff = Duration::from_millis(100);
    // Set when the registry's index moved and the routes are still to be
    // read: retried until they are.
    let mut routes_stale = false;
    loop {
        if routes_stale {
            if refresh_routes(&shared, &conductor).await {
                routes_stale = false;
            } else {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        }
        match fetch(&conductor, index).await {
            Ok(snapshot) => {
                backoff = Duration::from_millis(100);
                if snapshot.index != index {
                    let apps: Vec<String> = snapshot
                        .apps
                        .iter()
                        .map(|(a, e)| format!("{a}:{}", e.len()))
                        .collect();
                    tracing::info!(index = snapshot.index, "registry: {}", apps.join(" "));
                    index = snapshot.index;
                    shared.set_registry(snapshot);
                    // The index also moves when manifest routes change.
                    routes_stale = true;
                }
                continue;
            }
            Err(e) => tracing::warn!("registry: {e}; keeping the last snapshot"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// Reads the apps' manifest routes; false (the last ones kept, to be
/// tried again) on any failure but a 404 (a conductor of an older release
/// has none to give).
async fn refresh_routes(shared: &Shared, conductor: &Client) -> bool {
    let answer = conductor.get("/v1/routes", Duration::from_secs(10)).await;
    let routes: Vec<wire::RouteView> = match answer {
        Ok((status, body)) if status.is_success() => match wire::decode(&body) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("routes: unreadable answer: {e}");
                return false;
            }
        },
        Ok((status, _)) if status == hyper::StatusCode::NOT_FOUND => return true,
        Ok((status, _)) => {
            tracing::warn!("routes: conductor answered {status}; keeping the last ones");
            return false;
        }
        Err(e) => {
            tracing::warn!("routes: {e}; keeping the last ones");
            return false;
        }
    };
    let manifest: Vec<Route> = routes
        .into_iter()
        .map(|r| Route {
            prefix: r.route.unwrap_or_else(|| "/".into()),
            app: r.app,
            host: r.host,
        })
        .collect();
    let before = shared.routes();
    let table = routes::Table::new(&shared.config.routes, &manifest);
    if table.routes != before.routes {
        let shown: Vec<String> = table
            .routes
            .iter()
            .map(|r| format!("{} -> {}", r.label(), r.app))
            .collect();
        tracing::info!("routes: {}", shown.join(", "));
        shared.set_manifest_routes(&manifest);
    }
    true
}

async fn fetch(conductor: &Client, index: u64) -> Result<RegistrySnapshot, String> {
    let path = format!("/v1/registry?index={index}");
    let (status, body) = conductor
        .get(&path, REGISTRY_POLL_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    if !status.is_success() {
        let reason = wire::decode::<wire::ErrorReply>(&body)
            .map_or_else(|_| status.to_string(), |e| e.message);
        return Err(format!("conductor answered {status}: {reason}"));
    }
    wire::decode::<RegistrySnapshot>(&body)
}
