//! `GET /v1/registry?index=I`: the registry, answered at once when its index
//! differs from `I`, otherwise when it changes (long-poll, up to 25 s).
//! While the conductor re-syncs after a start it answers 503: a router keeps
//! the snapshot it has. `GET /v1/lookup/{app}?one=true`: an app's endpoints,
//! or one of them in round-robin order.

use super::{ApiError, body};
use crate::state::Conductor;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use skr8tr_proto::code::Code;
use skr8tr_proto::wire::Endpoint;
use std::sync::Arc;
use std::sync::atomic::Ordering;

#[derive(serde::Deserialize)]
pub struct Watch {
    index: Option<u64>,
}

pub async fn registry(
    State(c): State<Arc<Conductor>>,
    session: super::session::SessionExt,
    Query(w): Query<Watch>,
) -> Result<Response, ApiError> {
    let who = super::session::registry_reader(&c, &session)?.to_string();
    // What a watcher has is what it asks with (an answer sent may not
    // arrive); a one-shot read without an index watches nothing.
    if let Some(index) = w.index {
        crate::leaving::watched(&c, who, index, c.now_ms());
    }
    let mut changes = c.registry_changed.subscribe();
    let deadline = tokio::time::Instant::now() + c.config.long_poll;
    loop {
        changes.borrow_and_update();
        if c.resyncing() {
            return Err(ApiError::new(
                Code::Unavailable,
                "the conductor is re-syncing after a start; keep the last registry snapshot",
            ));
        }
        c.index_synced().await;
        let snapshot = crate::registry::snapshot(&c, c.now_ms()).map_err(ApiError::internal)?;
        if w.index != Some(snapshot.index) || tokio::time::Instant::now() >= deadline {
            return Ok(body(StatusCode::OK, &*snapshot));
        }
        tokio::select! {
            _ = changes.changed() => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
        // Revoked while it waited: no answer.
        super::session::registry_reader(&c, &session)?;
    }
}

/// `GET /v1/routes`: every app's `route`/`host` from its manifest, for
/// routers; read whenever the registry's index moves.
pub async fn routes(
    State(c): State<Arc<Conductor>>,
    session: super::session::SessionExt,
) -> Result<Response, ApiError> {
    super::session::registry_reader(&c, &session)?;
    let routes: Vec<skr8tr_proto::wire::RouteView> = c
        .store
        .snapshot()
        .and_then(|s| s.routes())
        .map_err(ApiError::internal)?
        .into_iter()
        .map(|(app, r)| skr8tr_proto::wire::RouteView {
            app,
            route: r.route,
            host: r.host,
        })
        .collect();
    Ok(body(StatusCode::OK, &routes))
}

#[derive(serde::Deserialize)]
pub struct One {
    one: Option<bool>,
}

pub async fn lookup(
    State(c): State<Arc<Conductor>>,
    session: super::session::SessionExt,
    Path(app): Path<String>,
    Query(q): Query<One>,
) -> Result<Response, ApiError> {
    super::session::registry_reader(&c, &session)?;
    c.index_synced().await;
    let snapshot = crate::registry::snapshot(&c, c.now_ms()).map_err(ApiError::internal)?;
    let mut endpoints: Vec<Endpoint> = snapshot.apps.get(&app).cloned().unwrap_or_default();
    if endpoints.is_empty() {
        let known = c
            .store
            .snapshot()
            .and_then(|s| s.app(&app))
            .map_err(ApiError::internal)?;
        return Err(match known {
            None => ApiError::new(Code::UnknownApp, format!("there is no app `{app}`")),
            Some(_) => ApiError::new(
                Code::Unavailable,
                format!("app `{app}` has no ready replica right now"),
            ),
        });
    }
    if q.one.unwrap_or(false) {
        let i = c.lookup_next.fetch_add(1, Ordering::Relaxed) % endpoints.len();
        endpoints = vec![endpoints.swap_remove(i)];
    }
    Ok(body(StatusCode::OK, &endpoints))
}
