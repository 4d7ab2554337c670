//! The audit log, a page at a time, so a log of any size is read in
//! bounded memory on both sides:
//!
//! - `GET /v1/history?limit=N[&before=SEQ][&app=APP]`: up to N entries (at
//!   most [`MAX_PAGE`], and [`MAX_PAGE_BYTES`] of stored records) before
//!   SEQ — the last ones without it — as people read them; with `app`,
//!   through the per-app index, not a scan.
//! - `GET /v1/history?from=SEQ&limit=N`: the same, read forwards.
//! - `GET /v1/audit?from=SEQ[&limit=N]`: entries from SEQ on in the
//!   store's encoding, for `history --verify`, at most [`MAX_PAGE_BYTES`]
//!   a page.
//!
//! At most [`CONCURRENT_PAGES`] pages are read at once; more wait.

use super::{ApiError, body};
use crate::state::Conductor;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use skr8tr_proto::code::Code;
use skr8tr_proto::wire::{AuditPage, HistoryEntry, HistoryPage};
use skr8tr_store::{AuditOutcome, AuditRecord};
use std::sync::Arc;

/// Most entries in one page.
pub const MAX_PAGE: usize = 500;
/// Most bytes of stored entries in one `/v1/audit` page (at least one
/// entry, which is at most a signed command with a full manifest).
pub const MAX_PAGE_BYTES: usize = 1 << 20;
/// Pages read at the same time; the next waits up to [`TURN_WAIT`], then
/// is answered 503.
pub const CONCURRENT_PAGES: usize = 4;
const TURN_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(serde::Deserialize)]
pub struct HistoryQuery {
    app: Option<String>,
    limit: Option<usize>,
    before: Option<u64>,
    /// Read forwards from this seq instead (not with `app` or `before`).
    from: Option<u64>,
}

pub async fn history(
    State(c): State<Arc<Conductor>>,
    session: super::session::SessionExt,
    Query(q): Query<HistoryQuery>,
) -> Result<Response, ApiError> {
    super::session::operator(&c, &session)?;
    let _turn = turn(&c).await?;
    let limit = q.limit.unwrap_or(50).clamp(1, MAX_PAGE);
    let store = c.store.clone();
    let page = tokio::task::spawn_blocking(move || {
        let snap = store.snapshot()?;
        if let Some(from) = q.from {
            let (records, next) = snap.audit_from(from.max(1), limit, MAX_PAGE_BYTES)?;
            return Ok(HistoryPage {
                entries: records.iter().map(entry).collect(),
                before: None,
                next,
            });
        }
        let (records, more) = match &q.app {
            Some(app) => snap.audit_of_app(app, q.before, limit, MAX_PAGE_BYTES),
            None => snap.audit_before(q.before, limit, MAX_PAGE_BYTES),
        }?;
        let before = records.first().filter(|_| more).map(|r| r.seq);
        Ok::<_, skr8tr_store::StoreError>(HistoryPage {
            entries: records.iter().map(entry).collect(),
            before,
            next: None,
        })
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    Ok(body(StatusCode::OK, &page))
}

/// A turn to read a page: waits a moment for one, then turns the request
/// away rather than queueing it without end.
async fn turn(c: &Conductor) -> Result<tokio::sync::SemaphorePermit<'_>, ApiError> {
    match tokio::time::timeout(TURN_WAIT, c.pages.acquire()).await {
        Ok(Ok(turn)) => Ok(turn),
        _ => Err(ApiError::new(
            Code::Unavailable,
            "the conductor is reading many pages of history at once; try again",
        )),
    }
}

fn entry(r: &AuditRecord) -> HistoryEntry {
    let (code, message) = match &r.outcome {
        AuditOutcome::Accepted => (None, None),
        AuditOutcome::Rejected { code, message } => (Some(code.clone()), Some(message.clone())),
    };
    HistoryEntry {
        seq: r.seq,
        time_ms: r.time_ms,
        actor: r.actor(),
        summary: r.summary(),
        accepted: r.is_accepted(),
        code,
        message,
    }
}

#[derive(serde::Deserialize)]
pub struct AuditQuery {
    from: Option<u64>,
    limit: Option<usize>,
}

/// Audit entries as stored, for `skr8tr history --verify`. The log is
/// already readable through `/v1/history`; this adds the exact bytes.
pub async fn audit(
    State(c): State<Arc<Conductor>>,
    session: super::session::SessionExt,
    Query(q): Query<AuditQuery>,
) -> Result<Response, ApiError> {
    super::session::operator(&c, &session)?;
    let _turn = turn(&c).await?;
    let limit = q.limit.unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE);
    let store = c.store.clone();
    let (entries, next) = tokio::task::spawn_blocking(move || {
        store
            .snapshot()?
            .audit_raw_page(q.from.unwrap_or(1).max(1), limit, MAX_PAGE_BYTES)
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    Ok(body(
        StatusCode::OK,
        &AuditPage {
            cluster: c.cluster,
            entries,
            next,
        },
    ))
}
