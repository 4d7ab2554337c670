//! The scheduler: a pure function from desired state and observed nodes to
//! placement changes. It reads no clock and draws no randomness, so the same
//! inputs always give the same plan — which is what makes a restarted
//! conductor continue exactly where it stopped.
//!
//! Policy, per replica index `0..replicas` of each app's current generation:
//! keep a placement on a live node; re-place one on a lost node (except for
//! an app with a volume: it waits for its node, unschedulable with the
//! reason); place a missing one on the node that (1) has every label of the
//! app's `constraint`s (and a wasm runtime for `type wasm`), (2) fits the
//! spec's `ram`/`cpus` in what it offers minus what is already reserved
//! there, (3) does not already hold the spec's static port, (4) for an app
//! with a volume and placements, already holds one of them, then (5) has
//! the fewest of its replicas among nodes with the same value of its
//! `spread` label, (6) the fewest replicas of this app, (7) the fewest
//! replicas overall (least loaded), (8) the smallest name (determinism).
//! Placements of other generations and indices beyond `replicas` are
//! removed. `fit` holds the per-node checks.

use crate::rollout::{REGISTRY_DRAIN_MS, Seen};
use skr8tr_proto::manifest::{AppSpec, Port};
use skr8tr_proto::wire::ReplicaState;
use skr8tr_store::records::{self, AppRecord, AppStatus, DesiredStatus, PlacementRecord};
use std::collections::{BTreeMap, HashMap};

/// A node as the scheduler sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeFit {
    pub alive: bool,
    /// False once cordoned (`skr8tr node drain`): nothing new is placed
    /// there, and what runs there moves away, surge-first.
    pub schedulable: bool,
    /// How long since its last report, ms (for `disconnect { stop-after }`).
    pub silent_ms: u64,
    pub cpu_millis: u64,
    pub ram_bytes: u64,
    /// `--label KEY=VALUE`, for `constraint` and `spread`.
    pub labels: Vec<(String, String)>,
    /// Whether it can run `type wasm` apps.
    pub wasm: bool,
}

/// What the scheduler reads: desired state (apps with their current
/// spec, placements) and the nodes as observed.
pub struct ClusterView<'a> {
    pub apps: &'a BTreeMap<String, (AppRecord, AppSpec)>,
    pub placements: &'a BTreeMap<String, PlacementRecord>,
    pub nodes: &'a BTreeMap<String, NodeFit>,
    /// Apps in a rolling update: the rollout engine owns their placements,
    /// so the scheduler neither adds nor removes any (it still counts
    /// their load).
    pub rolling: &'a std::collections::BTreeSet<String>,
    /// What nodes report, for the moves that wait on it.
    pub observed: &'a Observed,
}

/// What the nodes report and how long drains have lasted: the moves off a
/// cordoned node wait for the successor to be ready, and a drained
/// replica is removed after [`REGISTRY_DRAIN_MS`].
#[derive(Debug, Default)]
pub struct Observed {
    /// Replica id → what its (live) placement node reports.
    pub seen: HashMap<String, Seen>,
    /// Replica id → since when it has been desired `Stop`.
    pub draining_since: HashMap<String, u64>,
    /// Every replica id a live node reports running, placed there or not
    /// (one removed but still stopping, say).
    pub reported: std::collections::HashSet<String>,
    pub now: u64,
}

impl Observed {
    fn ready(&self, id: &str) -> bool {
        self.seen
            .get(id)
            .is_some_and(|s| s.state == ReplicaState::Ready)
    }

    fn drained(&self, id: &str) -> bool {
        self.draining_since
            .get(id)
            .is_some_and(|since| self.now.saturating_sub(*since) >= REGISTRY_DRAIN_MS)
    }
}

/// How much longer than `stop-after` the conductor waits before it
/// replaces a replica of a node out of contact: the node may have heard
/// from it up to a heartbeat after its last report, and stopping takes up
/// to the app's `drain`.
pub fn stop_after_wait_ms(spec: &AppSpec) -> Option<u64> {
    let d = spec.disconnect.as_ref()?;
    Some((d.stop_after + spec.drain).as_millis() as u64 + STOP_AFTER_MARGIN_MS)
}

/// See [`stop_after_wait_ms`].
pub const STOP_AFTER_MARGIN_MS: u64 = 4_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Place {
        replica: String,
        record: PlacementRecord,
    },
    /// Re-placed away from a lost node.
    Move {
        replica: String,
        from: String,
        record: PlacementRecord,
    },
    Remove {
        replica: String,
        node: String,
    },
    /// Same placement, new desired state (drain: `Stop`; restore: `Run`).
    Update {
        replica: String,
        record: PlacementRecord,
    },
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub changes: Vec<Change>,
    /// Apps with replicas that fit nowhere, and why.
    pub unplaced: BTreeMap<String, String>,
}

impl Change {
    /// The app the changed replica belongs to.
    pub fn app(&self) -> &str {
        match self {
            Change::Place { record, .. }
            | Change::Move { record, .. }
            | Change::Update { record, .. } => &record.app,
            Change::Remove { replica, .. } => replica.split('/').next().unwrap_or(replica),
        }
    }
}

impl Plan {
    /// The apps it changes, each once (its audit entry is indexed under them).
    pub fn apps(&self) -> Vec<String> {
        let apps: std::collections::BTreeSet<&str> = self.changes.iter().map(Change::app).collect();
        apps.into_iter().map(str::to_string).collect()
    }

    /// One line for the audit log: `schedule: placed web/1/0 on n1; …`.
    pub fn summary(&self) -> String {
        format!("schedule: {}", self.describe())
    }

    /// The changes, one clause each: `placed web/1/0 on n1; removed …`.
    pub fn describe(&self) -> String {
        let parts: Vec<String> = self
            .changes
            .iter()
            .map(|c| match c {
                Change::Place { replica, record } => format!("placed {replica} on {}", record.node),
                Change::Move {
                    replica,
                    from,
                    record,
                } => {
                    format!("moved {replica} from lost node {from} to {}", record.node)
                }
                Change::Remove { replica, node } => format!("removed {replica} from {node}"),
                Change::Update { replica, record } => match record.desired {
                    records::DesiredStatus::Stop => format!("draining {replica}"),
                    records::DesiredStatus::Run => format!("restored {replica}"),
                },
            })
            .collect();
        parts.join("; ")
    }
}

/// Replica id: `app/generation/index`.
pub fn replica_id(app: &str, generation: u64, index: u32) -> String {
    format!("{app}/{generation}/{index}")
}

pub fn plan(d: &ClusterView<'_>) -> Plan {
    let mut plan = Plan::default();
    // Reservations as they will be once the plan is applied.
    let mut load = Loads::new(d.nodes);
    // The wanted placements of each (app, index): the original, and its
    // successors while one moves off a cordoned node.
    let mut by_index: BTreeMap<(&str, u32), Vec<(&String, &PlacementRecord)>> = BTreeMap::new();
    for (id, p) in d.placements {
        if d.rolling.contains(&p.app) {
            if let Some((_, spec)) = d.apps.get(&p.app) {
                load.add(&p.node, spec, &p.app);
            }
            continue;
        }
        let wanted = d.apps.get(&p.app).is_some_and(|(app, _)| {
            app.status == AppStatus::Active
                && p.generation == app.generation
                && p.index < app.replicas
        });
        if !wanted {
            plan.changes.push(Change::Remove {
                replica: id.clone(),
                node: p.node.clone(),
            });
            continue;
        }
        by_index
            .entry((p.app.as_str(), p.index))
            .or_default()
            .push((id, p));
        if let Some((_, spec)) = d.apps.get(&p.app) {
            load.add(&p.node, spec, &p.app);
        }
    }
    for (name, (app, spec)) in d.apps {
        if app.status != AppStatus::Active || d.rolling.contains(name) {
            continue;
        }
        // One move off a cordoned node at a time per app, as a rollout
        // surges one replica at a time: a successor not yet ready, or an
        // original still draining, holds the next one back.
        let this_app = (name.as_str(), 0)..(name.as_str(), app.replicas);
        let mut surging = by_index.range(this_app).any(|((_, i), group)| {
            let run: Vec<_> = group
                .iter()
                .filter(|(_, p)| p.desired == DesiredStatus::Run)
                .collect();
            let draining = group.iter().any(|(_, p)| p.desired == DesiredStatus::Stop);
            draining
                || run.len() > 1
                    && run
                        .iter()
                        .max_by_key(|(id, _)| {
                            successor_number(&replica_id(name, app.generation, *i), id)
                        })
                        .is_some_and(|(id, _)| !d.observed.ready(id))
        });
        for index in 0..app.replicas {
            let base = replica_id(name, app.generation, index);
            let mut group = by_index.remove(&(name.as_str(), index)).unwrap_or_default();
            group.sort_by_key(|(id, _)| successor_number(&base, id));
            let slot = Slot {
                name,
                app,
                spec,
                index,
                base,
                group,
            };
            slot.plan(d, &mut load, &mut plan, &mut surging);
        }
    }
    plan
}

/// One replica index of an app, with the placements it has.
struct Slot<'a> {
    name: &'a String,
    app: &'a AppRecord,
    spec: &'a AppSpec,
    index: u32,
    base: String,
    /// Oldest first: `web/1/0`, then its successors `web/1/0.1`, ….
    group: Vec<(&'a String, &'a PlacementRecord)>,
}

impl<'a> Slot<'a> {
    fn plan(
        self,
        d: &'a ClusterView<'a>,
        load: &mut Loads<'a>,
        plan: &mut Plan,
        surging: &mut bool,
    ) {
        let live = |node: &str| d.nodes.get(node).is_some_and(|n| n.alive);
        // Drained long enough, or on a node that is gone: removed.
        // A `stop-after` app's copy on a silent node may still run there
        // until its node stops it by itself: it stays counted until then.
        let gone = |node: &str| {
            !live(node)
                && stop_after_wait_ms(self.spec)
                    .is_none_or(|wait| d.nodes.get(node).is_none_or(|n| n.silent_ms >= wait))
        };
        for (id, p) in &self.group {
            if p.desired == DesiredStatus::Stop && (d.observed.drained(id) || gone(&p.node)) {
                plan.changes.push(Change::Remove {
                    replica: (*id).clone(),
                    node: p.node.clone(),
                });
            }
        }
        let running: Vec<(&String, &PlacementRecord)> = self
            .group
            .iter()
            .filter(|(_, p)| p.desired == DesiredStatus::Run)
            .copied()
            .collect();
        let Some(&(id, primary)) = running.last() else {
            // Nothing runs (or only drains): a new placement; for an app
            // that must never run twice, only once no node reports a copy.
            if self.spec.disconnect.is_some() && self.still_running(d) {
                return;
            }
            if let Some(node) = self.choose_or_say(d, load, plan) {
                let replica = self.next_id();
                plan.changes.push(Change::Place {
                    replica,
                    record: self.record(node),
                });
            }
            return;
        };
        let node = d.nodes.get(&primary.node);
        if !node.is_some_and(|n| n.alive) {
            self.lost(d, load, plan, id, primary);
            return;
        }
        if !node.is_some_and(|n| n.schedulable) {
            if !*surging {
                *surging = self.off_cordoned(d, load, plan, id, primary);
            }
            return;
        }
        // The newest runs where it may: once it is ready, the older ones
        // (left on a cordoned node) drain.
        if running.len() > 1 && d.observed.ready(id) {
            for (old, p) in &running[..running.len() - 1] {
                plan.changes.push(Change::Update {
                    replica: (*old).clone(),
                    record: PlacementRecord {
                        desired: DesiredStatus::Stop,
                        ..(*p).clone()
                    },
                });
            }
        }
    }

    /// The primary's node is lost: move it (same id), unless its volume
    /// lives there or it must first be stopped by its node.
    fn lost(
        &self,
        d: &'a ClusterView<'a>,
        load: &mut Loads<'a>,
        plan: &mut Plan,
        id: &String,
        p: &PlacementRecord,
    ) {
        let (name, spec) = (self.name, self.spec);
        // An app's volume lives on its node: starting it empty elsewhere
        // would lose the data. It waits for the node.
        if !spec.volumes.is_empty() {
            plan.unplaced.insert(
                name.clone(),
                format!(
                    "unschedulable: {id} keeps its volume {} on node {}, which is lost; \
                     it waits for {} to come back (or `skr8tr down {name}`)",
                    spec.volumes[0].path, p.node, p.node
                ),
            );
            return;
        }
        // `disconnect { stop-after }`: its node stops it by itself; a
        // replacement starts only once that must have happened.
        if let Some(wait) = stop_after_wait_ms(spec) {
            let silent = d.nodes.get(&p.node).map_or(u64::MAX, |n| n.silent_ms);
            if silent < wait {
                plan.unplaced.insert(
                    name.clone(),
                    format!(
                        "waiting: node {} is lost and stops {id} by itself (disconnect \
                         stop-after); a replacement starts in {} s",
                        p.node,
                        (wait - silent).div_ceil(1000)
                    ),
                );
                return;
            }
        }
        let Some(node) = self.choose_or_say(d, load, plan) else {
            return;
        };
        load.remove(&p.node, spec, name);
        plan.changes.push(Change::Move {
            replica: id.clone(),
            from: p.node.clone(),
            record: self.record(node),
        });
    }

    /// The primary runs on a cordoned node: a successor is placed where
    /// the scheduler would, and the primary drains once it is ready (see
    /// `plan`). An app that must never run twice (`stop-after`) drains
    /// first instead; one with a volume stays. Whether a successor was
    /// placed.
    fn off_cordoned(
        &self,
        d: &'a ClusterView<'a>,
        load: &mut Loads<'a>,
        plan: &mut Plan,
        id: &String,
        p: &PlacementRecord,
    ) -> bool {
        let name = self.name;
        if !self.spec.volumes.is_empty() {
            plan.unplaced.insert(
                name.clone(),
                format!(
                    "{id} stays on cordoned node {}: its volume {} lives there \
                     (`skr8tr node uncordon {}`, or `skr8tr down {name}`)",
                    p.node, self.spec.volumes[0].path, p.node
                ),
            );
            return false;
        }
        // A job runs to its end where it is: a successor would run it again.
        if self.spec.kind == skr8tr_proto::manifest::AppKind::Job {
            return false;
        }
        if self.spec.disconnect.is_some() {
            plan.changes.push(Change::Update {
                replica: id.clone(),
                record: PlacementRecord {
                    desired: DesiredStatus::Stop,
                    ..p.clone()
                },
            });
            // One at a time, as for the others.
            return true;
        }
        let Some(node) = self.choose_or_say(d, load, plan) else {
            return false;
        };
        plan.changes.push(Change::Place {
            replica: self.next_id(),
            record: self.record(node),
        });
        true
    }

    /// Whether a live node still reports a copy of this index (draining,
    /// or removed and stopping).
    fn still_running(&self, d: &ClusterView<'_>) -> bool {
        let successor = format!("{}.", self.base);
        self.group
            .iter()
            .any(|(_, p)| p.desired == DesiredStatus::Stop)
            || d.observed
                .reported
                .iter()
                .any(|r| *r == self.base || r.starts_with(&successor))
    }

    /// A node for one more replica (its load counted), or why none fits.
    fn choose_or_say(
        &self,
        d: &ClusterView<'_>,
        load: &mut Loads<'a>,
        plan: &mut Plan,
    ) -> Option<String> {
        let Some(node) = load.choose(d, self.name, self.spec) else {
            plan.unplaced
                .insert(self.name.clone(), why_unplaced(d, load, self.spec));
            return None;
        };
        load.add(&node, self.spec, self.name);
        Some(node)
    }

    /// The id of a new placement of this index: the base id when it has
    /// none, else the next successor number.
    fn next_id(&self) -> String {
        match self
            .group
            .iter()
            .map(|(id, _)| successor_number(&self.base, id))
            .max()
        {
            None => self.base.clone(),
            Some(n) => format!("{}.{}", self.base, n + 1),
        }
    }

    fn record(&self, node: String) -> PlacementRecord {
        PlacementRecord {
            app: self.name.clone(),
            generation: self.app.generation,
            index: self.index,
            node,
            port: match self.spec.port {
                Port::Fixed(p) => Some(p),
                Port::Auto => None,
            },
            desired: DesiredStatus::Run,
        }
    }
}

/// 0 for `web/1/0`, `n` for its successor `web/1/0.n`.
fn successor_number(base: &str, id: &str) -> u32 {
    id.strip_prefix(base)
        .and_then(|rest| rest.strip_prefix('.'))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// A placement for one replica of `app` (the rollout engine's surge), on
/// the node the scheduler would pick, counting every placement's load.
pub fn place_one(
    d: &ClusterView<'_>,
    app: &str,
    spec: &AppSpec,
    generation: u64,
    index: u32,
) -> Option<PlacementRecord> {
    let mut load = Loads::new(d.nodes);
    for p in d.placements.values() {
        if let Some((_, s)) = d.apps.get(&p.app) {
            // The new generation's static port is what matters for a surge.
            let s = if p.app == app && p.generation == generation {
                spec
            } else {
                s
            };
            load.add(&p.node, s, &p.app);
        }
    }
    let node = load.choose(d, app, spec)?;
    Some(PlacementRecord {
        app: app.to_string(),
        generation,
        index,
        node,
        port: match spec.port {
            Port::Fixed(p) => Some(p),
            Port::Auto => None,
        },
        desired: records::DesiredStatus::Run,
    })
}

#[cfg(test)]
mod drain_tests;
mod fit;
#[cfg(test)]
mod tests;

use fit::{Loads, why_unplaced};
