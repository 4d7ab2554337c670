//! Read endpoints: desired state from a store snapshot merged with what
//! nodes reported. Unsigned: they reveal no workload output.

use super::{ApiError, body};
use crate::state::Conductor;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use skr8tr_proto::wire::*;
use skr8tr_store::records::AppStatus;
use std::collections::HashMap;
use std::sync::Arc;

pub async fn ping(State(c): State<Arc<Conductor>>) -> Response {
    body(
        StatusCode::OK,
        &PingReply {
            cluster: c.cluster,
            conductor_key: c.key.public().fingerprint(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            resyncing: c.resyncing(),
            sealing_key: c.sealing.sealing_key().to_vec(),
        },
    )
}

/// Every replica a node reported, by replica id, with the node's address.
fn observed(c: &Conductor, now: u64) -> HashMap<String, (String, String, ReplicaReport)> {
    let mut out = HashMap::new();
    for (name, seen) in c.nodes().iter() {
        if !c.is_alive(seen, now) {
            continue;
        }
        for r in &seen.report.replicas {
            out.insert(
                r.replica.clone(),
                (name.clone(), seen.report.address.clone(), r.clone()),
            );
        }
    }
    out
}

pub async fn status(
    State(c): State<Arc<Conductor>>,
    session: super::session::SessionExt,
) -> Result<Response, ApiError> {
    super::session::operator(&c, &session)?;
    let now = c.now_ms();
    let snap = c.store.snapshot().map_err(ApiError::internal)?;
    let seen = observed(&c, now);
    let unplaced = c.unplaced().clone();
    let mut apps = Vec::new();
    let autoscale = {
        let state = c.autoscale();
        state.views.clone()
    };
    for (name, app) in snap.apps().map_err(ApiError::internal)? {
        let spec = snap
            .spec(&name, app.generation)
            .map_err(ApiError::internal)?;
        let kind = spec
            .as_ref()
            .map_or("?".into(), |s| s.spec.kind.to_string());
        let scale = spec
            .as_ref()
            .and_then(|s| s.spec.scale.as_ref())
            .map(|s| (s.min, s.max));
        let view = autoscale.get(&name).filter(|_| scale.is_some());
        let placements = snap.placements_of(&name).map_err(ApiError::internal)?;
        // Serving replicas: every generation during a rollout, drained ones not.
        let current: Vec<_> = placements
            .iter()
            .filter(|(_, p)| p.desired == skr8tr_store::records::DesiredStatus::Run)
            .collect();
        let reports: Vec<&ReplicaReport> = current
            .iter()
            .filter_map(|(id, p)| {
                seen.get(id)
                    .filter(|(n, _, _)| *n == p.node)
                    .map(|(_, _, r)| r)
            })
            .collect();
        let states: Vec<ReplicaState> = reports.iter().map(|r| r.state).collect();
        apps.push(AppView {
            name: name.clone(),
            kind,
            generation: app.generation,
            desired: if app.status == AppStatus::Active {
                app.replicas
            } else {
                0
            },
            placed: current.len() as u32,
            running: states
                .iter()
                .filter(|s| {
                    !matches!(
                        s,
                        ReplicaState::Exited { .. }
                            | ReplicaState::Backoff
                            | ReplicaState::OomKilled
                            | ReplicaState::BuildFailed
                            | ReplicaState::StartFailed
                    )
                })
                .count() as u32,
            ready: states.iter().filter(|s| **s == ReplicaState::Ready).count() as u32,
            unplaced: unplaced
                .get(&name)
                .cloned()
                .or_else(|| crash_loop(&reports)),
            rollout: snap.rollout(&name).map_err(ApiError::internal)?.map(|r| {
                let phase = format!("{:?}", r.phase).to_lowercase();
                let why = r.reason.map(|w| format!(": {w}")).unwrap_or_default();
                format!(
                    "{} -> {}, step {}/{} ({phase}{why})",
                    r.from_generation,
                    r.to_generation,
                    (r.step + 1).min(app.replicas),
                    app.replicas
                )
            }),
            scale,
            autoscale: scale.map(|_| {
                view.map_or_else(|| "no CPU figures yet".to_string(), |v| v.decision.clone())
            }),
            last_scale: view
                .and_then(|v| v.last_change.clone())
                .map(|(at, what)| (now.saturating_sub(at), what)),
        });
    }
    let nodes = c.nodes();
    let alive = nodes.values().filter(|n| c.is_alive(n, now)).count() as u32;
    Ok(body(
        StatusCode::OK,
        &StatusReply {
            cluster: c.cluster,
            resyncing: c.resyncing(),
            nodes_alive: alive,
            nodes_lost: nodes.len() as u32 - alive,
            apps,
        },
    ))
}

pub async fn nodes(
    State(c): State<Arc<Conductor>>,
    session: super::session::SessionExt,
) -> Result<Response, ApiError> {
    super::session::operator(&c, &session)?;
    let now = c.now_ms();
    let (placements, cordoned) = c
        .store
        .snapshot()
        .and_then(|s| Ok((s.placements()?, s.cordoned()?)))
        .map_err(ApiError::store)?;
    let cordoned: std::collections::BTreeSet<String> =
        cordoned.into_iter().map(|(n, _)| n).collect();
    let views: Vec<NodeView> = c
        .nodes()
        .iter()
        .map(|(name, seen)| {
            let r = &seen.report.resources;
            NodeView {
                name: name.clone(),
                address: seen.report.address.clone(),
                alive: c.is_alive(seen, now),
                replicas: placements.iter().filter(|(_, p)| p.node == *name).count() as u32,
                cpu_millis: r.cpu_millis,
                ram_bytes: r.ram_bytes,
                cpu_used_millis: r.cpu_used_millis,
                ram_used_bytes: r.ram_used_bytes,
                last_report_ms_ago: now.saturating_sub(seen.last_ms),
                limits: seen.report.limits.clone(),
                labels: seen.report.labels.clone(),
                wasm: seen.report.wasm,
                clock_skew_ms: seen.report.clock_ms as i64 - seen.last_ms as i64,
                cordoned: cordoned.contains(name),
                leaving: seen.report.leaving,
            }
        })
        .collect();
    Ok(body(StatusCode::OK, &views))
}

#[derive(serde::Deserialize)]
pub struct AppFilter {
    app: Option<String>,
}

pub async fn replicas(
    State(c): State<Arc<Conductor>>,
    session: super::session::SessionExt,
    Query(f): Query<AppFilter>,
) -> Result<Response, ApiError> {
    super::session::operator(&c, &session)?;
    let now = c.now_ms();
    let snap = c.store.snapshot().map_err(ApiError::internal)?;
    let placements = match &f.app {
        Some(app) => snap.placements_of(app),
        None => snap.placements(),
    }
    .map_err(ApiError::internal)?;
    let seen = observed(&c, now);
    let addresses: HashMap<String, String> = c
        .nodes()
        .iter()
        .map(|(n, s)| (n.clone(), s.report.address.clone()))
        .collect();
    let views: Vec<ReplicaView> = placements
        .into_iter()
        .map(|(id, p)| {
            let report = seen
                .get(&id)
                .filter(|(n, _, _)| *n == p.node)
                .map(|(_, _, r)| r);
            ReplicaView {
                address: addresses.get(&p.node).cloned().unwrap_or_default(),
                port: report.and_then(|r| r.port).or(p.port),
                state: report.map(|r| r.state),
                pid: report.and_then(|r| r.pid),
                restarts: report.map_or(0, |r| r.restarts),
                draining: p.desired == skr8tr_store::records::DesiredStatus::Stop,
                error: report.and_then(|r| r.error.clone()),
                replica: id,
                app: p.app,
                generation: p.generation,
                node: p.node,
            }
        })
        .collect();
    Ok(body(StatusCode::OK, &views))
}

pub async fn keys(
    State(c): State<Arc<Conductor>>,
    session: super::session::SessionExt,
) -> Result<Response, ApiError> {
    super::session::operator(&c, &session)?;
    let snap = c.store.snapshot().map_err(ApiError::internal)?;
    let views: Vec<KeyView> = snap
        .operator_keys()
        .map_err(ApiError::internal)?
        .into_iter()
        .map(|(fingerprint, k)| KeyView {
            fingerprint,
            name: k.name,
            added_by: k.added_by,
            added_seq: k.added_seq,
            revoked_seq: k.revoked_seq,
        })
        .collect();
    Ok(body(StatusCode::OK, &views))
}

/// A replica of the app down after a failed start or an exit, and why
/// (`crash loop: exit 127, cannot start /nonexistent/bin: …`), for
/// `status`'s note.
fn crash_loop(reports: &[&ReplicaReport]) -> Option<String> {
    reports
        .iter()
        .filter(|r| {
            matches!(
                r.state,
                ReplicaState::Backoff
                    | ReplicaState::StartFailed
                    | ReplicaState::BuildFailed
                    | ReplicaState::OomKilled
            )
        })
        .find_map(|r| r.error.as_deref())
        .map(|why| {
            let why = why
                .strip_prefix(skr8tr_proto::wire::LAST_RUN)
                .unwrap_or(why);
            format!("crash loop: {why}")
        })
}
