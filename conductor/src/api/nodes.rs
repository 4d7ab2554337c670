//! The node sync endpoints: assignments (long-poll, conductor-signed) and
//! reports. Both take a request signed with the node's key (see `admit`).

use super::{ApiError, Peer, body};
use crate::assignments;
use crate::state::{Conductor, NodeSeen};
use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use skr8tr_proto::code::Code;
use skr8tr_proto::wire::{self, NodeMessage, ReportAck, SignedAssignments};
use std::sync::Arc;

/// Node names appear in replica placements and URLs: keep them simple.
pub fn check_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            Code::BadRequest,
            format!("`{name}` is not a valid node name (1-63 of a-z, 0-9, `-`, `_`, `.`)"),
        ))
    }
}

/// What node `name` asks, once the request is proven to come from it.
async fn message(
    c: &Arc<Conductor>,
    name: &str,
    bytes: &[u8],
    peer: Option<Extension<Peer>>,
) -> Result<NodeMessage, ApiError> {
    check_name(name)?;
    Ok(super::admit::authenticate(c, name, bytes, Peer::ip(peer))
        .await?
        .message)
}

/// Answers as soon as the node's assignments differ from `version`, or
/// after the long-poll window with the current ones.
pub async fn assignments(
    State(c): State<Arc<Conductor>>,
    Path(name): Path<String>,
    peer: Option<Extension<Peer>>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let NodeMessage::Poll { version, nonce } = message(&c, &name, &bytes, peer).await? else {
        return Err(ApiError::new(Code::BadRequest, "expected a poll"));
    };
    let since = Some(version);
    let mut changes = c.changed.subscribe();
    let deadline = tokio::time::Instant::now() + c.config.long_poll;
    loop {
        changes.borrow_and_update();
        let snap = c.store.snapshot().map_err(ApiError::internal)?;
        let current = assignments::of_node(&snap, c.cluster, &name).map_err(ApiError::internal)?;
        drop(snap);
        if since != Some(current.version) || tokio::time::Instant::now() >= deadline {
            // Each answer is signed with its poll's nonce: a recorded one
            // cannot be replayed to a later poll.
            let answer = wire::Assignments { nonce, ..current };
            let key = c.clone();
            let signed =
                tokio::task::spawn_blocking(move || SignedAssignments::sign(&key.key, &answer))
                    .await
                    .map_err(ApiError::internal)?
                    .map_err(ApiError::internal)?;
            return Ok(body(StatusCode::OK, &signed));
        }
        tokio::select! {
            _ = changes.changed() => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

pub async fn report(
    State(c): State<Arc<Conductor>>,
    Path(name): Path<String>,
    peer: Option<Extension<Peer>>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let NodeMessage::Report(report) = message(&c, &name, &bytes, peer).await? else {
        return Err(ApiError::new(Code::BadRequest, "expected a report"));
    };
    if report.node != name {
        return Err(ApiError::new(
            Code::BadRequest,
            format!("report from `{}` posted for node `{name}`", report.node),
        ));
    }
    let now = c.now_ms();
    let first = {
        let mut nodes = c.nodes();
        let previous = nodes.insert(
            name.clone(),
            NodeSeen {
                report,
                last_ms: now,
            },
        );
        match previous {
            None => true,
            Some(p) => !c.is_alive(&p, now) || p.report.boot_id != nodes[&name].report.boot_id,
        }
    };
    if first {
        tracing::info!(node = %name, "node joined");
    }
    // A new node is schedulable at once; any report may change readiness.
    c.wake.notify_one();
    c.registry_moved();
    let snap = c.store.snapshot().map_err(ApiError::internal)?;
    let current = assignments::of_node(&snap, c.cluster, &name).map_err(ApiError::internal)?;
    Ok(body(
        StatusCode::OK,
        &ReportAck {
            assignments_version: current.version,
        },
    ))
}
