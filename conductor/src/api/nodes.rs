//! The node sync endpoints: assignments (long-poll) and reports. Both are
//! served only on the node's own session (see `session`), so neither
//! message carries a signature; the answer to a poll echoes its nonce.

use super::session::SessionExt;
use super::{ApiError, body};
use crate::state::{Conductor, NodeSeen};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use skr8tr_proto::code::Code;
use skr8tr_proto::wire::{self, NodeMessage, ReportAck};
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

/// What node `name` asks, on its own session.
fn message(
    c: &Conductor,
    name: &str,
    bytes: &[u8],
    session: &SessionExt,
) -> Result<NodeMessage, ApiError> {
    check_name(name)?;
    super::session::node(c, session, name)?;
    NodeMessage::decode(bytes)
        .map_err(|e| ApiError::new(Code::BadRequest, format!("not a node message: {e}")))
}

/// Answers as soon as the node's assignments differ from `version`, or
/// after the long-poll window with the current ones.
pub async fn assignments(
    State(c): State<Arc<Conductor>>,
    Path(name): Path<String>,
    session: SessionExt,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let NodeMessage::Poll { version, nonce } = message(&c, &name, &bytes, &session)? else {
        return Err(ApiError::new(Code::BadRequest, "expected a poll"));
    };
    let since = Some(version);
    // Woken only by commits that touch this node's set.
    let mut changes = c.index.watch(&name);
    let deadline = tokio::time::Instant::now() + c.config.long_poll;
    loop {
        changes.borrow_and_update();
        c.index_synced().await;
        let current = c
            .index
            .assignments(&c.store, c.cluster, &name)
            .map_err(ApiError::internal)?;
        if since != Some(current.version) || tokio::time::Instant::now() >= deadline {
            // Each answer echoes its poll's nonce: a recorded one cannot
            // be replayed to a later poll. Secret values are opened for
            // the node here, and only here; the set goes inside TLS.
            let answer = opened(
                &c,
                wire::Assignments {
                    nonce,
                    ..(*current).clone()
                },
            )?;
            return Ok(body(StatusCode::OK, &answer));
        }
        tokio::select! {
            _ = changes.changed() => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
        // Revoked while it waited: no answer.
        super::session::node(&c, &session, &name)?;
    }
}

/// `set` with every sealed secret value opened for the node.
fn opened(c: &Conductor, mut set: wire::Assignments) -> Result<wire::Assignments, ApiError> {
    for a in &mut set.replicas {
        a.spec = crate::commands::opened(&a.spec, &c.sealing).map_err(|e| {
            tracing::error!(replica = %a.replica, "cannot open a secret value: {e}");
            ApiError::internal(format!(
                "a secret value of `{}` cannot be opened: {e}",
                a.replica
            ))
        })?;
    }
    Ok(set)
}

pub async fn report(
    State(c): State<Arc<Conductor>>,
    Path(name): Path<String>,
    session: SessionExt,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let message = message(&c, &name, &bytes, &session)?;
    let now = c.now_ms();
    let (first, moved, leaving) = {
        let mut nodes = c.nodes();
        // A numbered report older than the one held (a request that
        // arrived late, after the node had moved on) must not replace it.
        let stale = |boot_id: u64, seq: u64| {
            nodes.get(&name).is_some_and(|held| {
                held.report.boot_id == boot_id && held.seq.is_some_and(|s| s >= seq)
            })
        };
        let (report, seq) = match message {
            NodeMessage::Report(report) => (report, None),
            NodeMessage::Full { seq, report } if !stale(report.boot_id, seq) => (report, Some(seq)),
            NodeMessage::Full { seq, .. } => {
                return Err(ApiError::new(
                    Code::ReportResend,
                    format!(
                        "report {seq} of node `{name}` is older than the one held: \
                         send a full report"
                    ),
                ));
            }
            NodeMessage::Delta(d) => match nodes.get(&name) {
                Some(held)
                    if held.seq == Some(d.base)
                        && held.report.boot_id == d.boot_id
                        && d.seq > d.base =>
                {
                    (d.apply(&held.report), Some(d.seq))
                }
                // Restarted since, or a report lost on the way: the node
                // sends a full one at once.
                _ => {
                    return Err(ApiError::new(
                        Code::ReportResend,
                        format!(
                            "a delta on report {} of node `{name}`, which this conductor \
                             does not hold: send a full report",
                            d.base
                        ),
                    ));
                }
            },
            NodeMessage::Poll { .. } => {
                return Err(ApiError::new(Code::BadRequest, "expected a report"));
            }
        };
        if report.node != name {
            return Err(ApiError::new(
                Code::BadRequest,
                format!("report from `{}` posted for node `{name}`", report.node),
            ));
        }
        let leaving = report.leaving;
        let previous = nodes.insert(
            name.clone(),
            NodeSeen {
                report,
                last_ms: now,
                seq,
            },
        );
        let new = &nodes[&name].report;
        let (first, moved) = match previous {
            None => (true, Moved::all()),
            Some(p) if !c.is_alive(&p, now) || p.report.boot_id != new.boot_id => {
                (true, Moved::all())
            }
            Some(p) => (false, Moved::between(&p.report, new)),
        };
        (first, moved, leaving)
    };
    if first {
        tracing::info!(node = %name, "node joined");
        let skew = {
            let nodes = c.nodes();
            nodes
                .get(&name)
                .map_or(0, |n| n.report.clock_ms as i64 - n.last_ms as i64)
        };
        if skew.abs() > wire::CLOCK_SKEW_WARN_MS {
            tracing::warn!(
                node = %name,
                "clock-skew: the node's clock is {:+.1} s from the conductor's; run NTP (chrony, systemd-timesyncd) on it",
                skew as f64 / 1000.0
            );
        }
    }
    // A report that changes nothing the scheduler or the routers read
    // (most of them: a heartbeat) costs a lookup and a comparison.
    if moved.scheduling {
        c.wake.notify_one();
    }
    if moved.endpoints {
        c.registry_moved();
    }
    c.index_synced().await;
    let current = c
        .index
        .assignments(&c.store, c.cluster, &name)
        .map_err(ApiError::store)?;
    let left = leaving && crate::leaving::left(&c, &name, now).map_err(ApiError::store)?;
    Ok(body(
        StatusCode::OK,
        &ReportAck {
            assignments_version: current.version,
            left,
            lost_after_ms: c.config.lost_after.as_millis() as u64,
        },
    ))
}

/// What a report changed of what others read.
#[derive(Debug, PartialEq, Eq)]
pub struct Moved {
    /// What the scheduler and the rollout engine read: replicas and their
    /// states and restarts, what the node offers, labels, leaving.
    pub scheduling: bool,
    /// What the registry is made of: ready replicas, their ports, the address.
    pub endpoints: bool,
}

impl Moved {
    fn all() -> Moved {
        Moved {
            scheduling: true,
            endpoints: true,
        }
    }

    pub fn between(old: &wire::NodeReport, new: &wire::NodeReport) -> Moved {
        let same = |a: &wire::ReplicaReport, b: &wire::ReplicaReport| {
            a.replica == b.replica
                && a.generation == b.generation
                && a.state == b.state
                && a.port == b.port
                && a.restarts == b.restarts
        };
        let same_replicas = old.replicas.len() == new.replicas.len()
            && old
                .replicas
                .iter()
                .zip(&new.replicas)
                .all(|(a, b)| same(a, b));
        fn serving(r: &wire::NodeReport) -> impl Iterator<Item = (&String, Option<u16>)> {
            r.replicas
                .iter()
                .filter(|x| x.state == wire::ReplicaState::Ready)
                .map(|x| (&x.replica, x.port))
        }
        let endpoints = old.address != new.address || !serving(old).eq(serving(new));
        let scheduling = !same_replicas
            || endpoints
            || old.resources.cpu_millis != new.resources.cpu_millis
            || old.resources.ram_bytes != new.resources.ram_bytes
            || old.labels != new.labels
            || old.wasm != new.wasm
            || old.leaving != new.leaving;
        Moved {
            scheduling,
            endpoints,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Moved;
    use crate::testing::replica;
    use skr8tr_proto::wire::{NodeReport, ReplicaState, Resources};

    fn report(replicas: Vec<skr8tr_proto::wire::ReplicaReport>) -> NodeReport {
        NodeReport {
            node: "n1".into(),
            address: "10.0.0.1".into(),
            boot_id: 1,
            assignments_version: 1,
            resources: Resources {
                cpu_millis: 2000,
                ram_bytes: 1 << 30,
                ..Resources::default()
            },
            replicas,
            logs_port: None,
            limits: None,
            labels: Vec::new(),
            wasm: false,
            leaving: false,
            logs_pin: None,
            clock_ms: 1,
        }
    }

    #[test]
    fn a_heartbeat_moves_nothing_and_each_change_moves_what_reads_it() {
        let old = report(vec![replica(
            "web/1/0",
            ReplicaState::Starting,
            Some(20000),
        )]);
        let quiet = |m: Moved| !m.scheduling && !m.endpoints;
        // Only usage and clocks differ: nobody is woken.
        let mut beat = old.clone();
        beat.clock_ms = 99;
        beat.resources.cpu_used_millis = 700;
        beat.replicas[0].rss_bytes = 1 << 20;
        beat.replicas[0].cpu_millis = 40;
        assert!(quiet(Moved::between(&old, &beat)));
        // Ready: the scheduler and the routers both read it.
        let ready = report(vec![replica("web/1/0", ReplicaState::Ready, Some(20000))]);
        let m = Moved::between(&old, &ready);
        assert!(m.scheduling && m.endpoints);
        // A restart count moves the scheduler only (the replica is not serving).
        let mut restarted = old.clone();
        restarted.replicas[0].restarts = 1;
        assert_eq!(
            Moved::between(&old, &restarted),
            Moved {
                scheduling: true,
                endpoints: false
            }
        );
        // What the node offers, its labels, leaving: the scheduler.
        let changes: [fn(&mut NodeReport); 4] = [
            |r: &mut NodeReport| r.resources.ram_bytes *= 2,
            |r: &mut NodeReport| r.labels = vec![("zone".into(), "a".into())],
            |r: &mut NodeReport| r.leaving = true,
            |r: &mut NodeReport| r.replicas.clear(),
        ];
        for change in changes {
            let mut new = old.clone();
            change(&mut new);
            assert!(Moved::between(&old, &new).scheduling, "{new:?}");
        }
        // A serving replica's new address or port: the routers.
        let mut moved = ready.clone();
        moved.address = "10.0.0.2".into();
        assert!(Moved::between(&ready, &moved).endpoints);
        let mut port = ready.clone();
        port.replicas[0].port = Some(20001);
        assert!(Moved::between(&ready, &port).endpoints);
    }
}
