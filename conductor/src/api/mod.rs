//! The HTTP API (axum). Bodies are postcard (`application/x-skr8tr`).
//!
//! - `commands.rs`: `POST /v1/commands` — signed operator commands.
//! - `logs.rs`: `POST /v1/logs` — a signed `logs` command; lines fetched
//!   from nodes with conductor-signed requests, optionally streamed.
//! - `nodes.rs`: `POST /v1/nodes/{name}/assignments` (long-poll),
//!   `POST /v1/nodes/{name}/report`.
//! - `session.rs`: `POST /v1/session` — a key proven once per TLS
//!   connection; what each endpoint needs (operator, node, ingress).
//! - `admit.rs`: node and ingress keys admitted by a join ticket presented
//!   inside a session.
//! - `reads.rs`: `GET /v1/ping`, `/v1/status`, `/v1/nodes`,
//!   `/v1/replicas`, `/v1/keys`.
//! - `snapshot.rs`: `POST /v1/snapshot` — a signed `snapshot save`; the
//!   store copied as of one read view, streamed after a signed preamble.
//! - `history.rs`: `GET /v1/history`, `/v1/audit`, a page at a time.
//! - `registry.rs`: `GET /v1/registry` (long-poll watch), `GET /v1/lookup/{app}`.
//! - `error.rs`: `ApiError`, the one place that maps failures to statuses.
//! - `connection.rs`: one connection: TLS, session, peer, body deadline
//!   and budget.

mod admit;
mod commands;
mod connection;
mod error;
mod history;
mod logs;
mod nodes;
mod reads;
mod registry;
pub mod session;
pub(crate) mod snapshot;

use crate::state::Conductor;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use skr8tr_proto::wire::{CONTENT_TYPE, MAX_BODY_BYTES};
use std::sync::Arc;

pub(crate) use commands::record_summary;
pub use connection::connection;
pub use error::ApiError;
pub use history::{CONCURRENT_PAGES, MAX_PAGE, MAX_PAGE_BYTES};

/// The address a request came from, put on each request by the accept
/// loop (absent in in-process tests: then the unspecified address).
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub std::net::SocketAddr);

impl Peer {
    pub fn ip(peer: Option<axum::extract::Extension<Peer>>) -> std::net::IpAddr {
        peer.map_or(
            std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            |axum::extract::Extension(Peer(addr))| addr.ip(),
        )
    }
}

pub fn router(c: Arc<Conductor>) -> Router {
    Router::new()
        .route("/v1/ping", get(reads::ping))
        .route(skr8tr_proto::wire::SESSION_PATH, post(session::open))
        .route("/v1/status", get(reads::status))
        .route("/v1/nodes", get(reads::nodes))
        .route("/v1/replicas", get(reads::replicas))
        .route("/v1/history", get(history::history))
        .route("/v1/keys", get(reads::keys))
        .route("/v1/registry", get(registry::registry))
        .route("/v1/lookup/{app}", get(registry::lookup))
        .route("/v1/routes", get(registry::routes))
        .route("/v1/audit", get(history::audit))
        .route("/v1/commands", post(commands::command))
        .route("/v1/logs", post(logs::logs))
        .route("/v1/snapshot", post(snapshot::snapshot))
        .route("/v1/nodes/{name}/assignments", post(nodes::assignments))
        .route("/v1/nodes/{name}/report", post(nodes::report))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(c)
}

/// A postcard body with our content type.
pub fn body<T: Serialize>(status: StatusCode, value: &T) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        skr8tr_proto::wire::encode(value),
    )
        .into_response()
}

#[cfg(test)]
mod tests;
