//! Reports that carry only what changed. A node sends a full report
//! ([`NodeMessage::Full`](super::NodeMessage::Full)) numbered `seq`, then
//! deltas, each naming the report it applies to (`base`). The conductor
//! applies a delta only to the report it holds with that number; any other
//! (it restarted, a report was lost in flight, the node restarted) is
//! answered `report-resend`, and the node sends a full report at once.
//!
//! A delta carries the node's header that changes (resources, assignments
//! version, leaving, clock) and the replicas whose state changed. Small
//! moves of a replica's CPU and RSS do not count: they happen every second
//! on a busy node, and a delta that carried them would carry every
//! replica. A move by a tenth (and over 50 millicores or 4 MiB) does; the
//! rest is refreshed by the full report every [`FULL_EVERY`] reports.

use super::{NodeReport, ReplicaReport, Resources};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A node sends a full report at least once in this many.
pub const FULL_EVERY: u32 = 10;

/// What changed since the report numbered `base`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportDelta {
    pub node: String,
    pub boot_id: u64,
    /// The number of the report (full or delta) this one applies to.
    pub base: u64,
    /// This report's number: the base of the next delta.
    pub seq: u64,
    pub assignments_version: u64,
    pub resources: Resources,
    /// Replicas new since `base`, or whose report changed beyond usage.
    pub changed: Vec<ReplicaReport>,
    /// Replicas the node no longer has.
    pub removed: Vec<String>,
    pub leaving: bool,
    pub clock_ms: u64,
}

/// Whether a delta may leave out `now`, the node's report of a replica
/// the conductor holds as `held`: nothing but usage moved, and usage by
/// less than [`usage_moved`] counts (written field by field, so a field
/// added to `ReplicaReport` cannot silently stay out of deltas).
fn unchanged(held: &ReplicaReport, now: &ReplicaReport) -> bool {
    let ReplicaReport {
        replica,
        app,
        generation,
        state,
        pid,
        port,
        restarts,
        started_at_ms,
        cpu_millis,
        rss_bytes,
        error,
    } = now;
    held.replica == *replica
        && held.app == *app
        && held.generation == *generation
        && held.state == *state
        && held.pid == *pid
        && held.port == *port
        && held.restarts == *restarts
        && held.started_at_ms == *started_at_ms
        && held.error == *error
        && !usage_moved(held.cpu_millis, *cpu_millis, 50)
        && !usage_moved(held.rss_bytes, *rss_bytes, 4 << 20)
}

/// Whether usage moved enough to be sent at once: by a tenth and by more
/// than `floor`. The autoscaler reads CPU from reports; a spike or a drop
/// reaches it with the next report, steady jitter with the next full one.
fn usage_moved(held: u64, now: u64, floor: u64) -> bool {
    let d = held.abs_diff(now);
    d > floor && d > held / 10
}

impl ReportDelta {
    /// What `now` changed of `base` (the report numbered `base_seq` as the
    /// conductor holds it), numbered `seq`; `None` when a field only full
    /// reports carry changed (address, log endpoint, limits, labels,
    /// wasm): then a full report is due.
    pub fn between(
        base: &NodeReport,
        now: &NodeReport,
        base_seq: u64,
        seq: u64,
    ) -> Option<ReportDelta> {
        let header_same = base.node == now.node
            && base.boot_id == now.boot_id
            && base.address == now.address
            && base.logs_port == now.logs_port
            && base.limits == now.limits
            && base.labels == now.labels
            && base.wasm == now.wasm
            && base.logs_pin == now.logs_pin;
        if !header_same {
            return None;
        }
        let before: BTreeMap<&str, &ReplicaReport> = base
            .replicas
            .iter()
            .map(|r| (r.replica.as_str(), r))
            .collect();
        let mut still = std::collections::BTreeSet::new();
        let mut changed = Vec::new();
        for r in &now.replicas {
            still.insert(r.replica.as_str());
            if !before
                .get(r.replica.as_str())
                .is_some_and(|b| unchanged(b, r))
            {
                changed.push(r.clone());
            }
        }
        let removed = before
            .keys()
            .filter(|id| !still.contains(*id))
            .map(|id| id.to_string())
            .collect();
        Some(ReportDelta {
            node: now.node.clone(),
            boot_id: now.boot_id,
            base: base_seq,
            seq,
            assignments_version: now.assignments_version,
            resources: now.resources.clone(),
            changed,
            removed,
            leaving: now.leaving,
            clock_ms: now.clock_ms,
        })
    }

    /// The report this delta makes of `base`, its replicas in id order
    /// (as a node sends them). Removals of replicas `base` does not have,
    /// and a replica changed twice (the last wins), are a node's own
    /// report to spoil: they are taken as they come.
    pub fn apply(&self, base: &NodeReport) -> NodeReport {
        let mut replicas: BTreeMap<&str, &ReplicaReport> = base
            .replicas
            .iter()
            .map(|r| (r.replica.as_str(), r))
            .collect();
        for id in &self.removed {
            replicas.remove(id.as_str());
        }
        for r in &self.changed {
            replicas.insert(r.replica.as_str(), r);
        }
        NodeReport {
            node: self.node.clone(),
            boot_id: self.boot_id,
            assignments_version: self.assignments_version,
            resources: self.resources.clone(),
            replicas: replicas.into_values().cloned().collect(),
            leaving: self.leaving,
            clock_ms: self.clock_ms,
            ..base.clone_header()
        }
    }
}

impl NodeReport {
    /// The report without its replicas (the rest is small).
    fn clone_header(&self) -> NodeReport {
        NodeReport {
            node: self.node.clone(),
            address: self.address.clone(),
            boot_id: self.boot_id,
            assignments_version: self.assignments_version,
            resources: self.resources.clone(),
            replicas: Vec::new(),
            logs_port: self.logs_port,
            limits: self.limits.clone(),
            labels: self.labels.clone(),
            wasm: self.wasm,
            leaving: self.leaving,
            logs_pin: self.logs_pin,
            clock_ms: self.clock_ms,
        }
    }
}

/// A node's side of the numbering: the report the conductor holds, as the
/// node computed it, and how many deltas since the last full one.
#[derive(Debug, Default)]
pub struct Reporter {
    base: Option<(u64, NodeReport)>,
    since_full: u32,
    last_seq: u64,
    /// The conductor is of the release before delta reports (it could
    /// not read a numbered one): every report goes whole, unnumbered.
    legacy: bool,
}

impl Reporter {
    /// The message for `now`: a delta when there is a base and a full report
    /// is not due, else a full one. [`Reporter::sent`] or
    /// [`Reporter::failed`] must follow with the outcome.
    pub fn message(&mut self, now: NodeReport) -> (super::NodeMessage, Pending) {
        // Every message takes the next number, so no two ever share one,
        // even when a request was abandoned without an outcome.
        let seq = self.last_seq.wrapping_add(1);
        self.last_seq = seq;
        if self.legacy {
            let pending = Pending {
                seq,
                report: now.clone(),
                full: true,
            };
            return (super::NodeMessage::Report(now), pending);
        }
        if let Some((base_seq, base)) = &self.base
            && self.since_full + 1 < FULL_EVERY
            && let Some(d) = ReportDelta::between(base, &now, *base_seq, seq)
        {
            let report = d.apply(base);
            let pending = Pending {
                seq: d.seq,
                report,
                full: false,
            };
            return (super::NodeMessage::Delta(d), pending);
        }
        let message = super::NodeMessage::Full {
            seq,
            report: now.clone(),
        };
        (
            message,
            Pending {
                seq,
                report: now,
                full: true,
            },
        )
    }

    /// The conductor took `pending`: it is the base of the next delta.
    pub fn sent(&mut self, pending: Pending) {
        self.since_full = if pending.full { 0 } else { self.since_full + 1 };
        self.base = Some((pending.seq, pending.report));
    }

    /// The report failed or was refused: whether the conductor applied it
    /// is unknown, so the next one is full.
    pub fn failed(&mut self) {
        self.base = None;
    }

    /// The conductor could not read a numbered report (a conductor of the
    /// release before them, as after a rollback): report whole from now on.
    pub fn downgrade(&mut self) {
        self.legacy = true;
        self.base = None;
    }

    /// Whether reports go whole to a conductor of the previous release.
    pub fn legacy(&self) -> bool {
        self.legacy
    }
}

/// A report sent and not yet acknowledged.
#[derive(Debug)]
pub struct Pending {
    seq: u64,
    report: NodeReport,
    full: bool,
}

#[cfg(test)]
mod tests;
