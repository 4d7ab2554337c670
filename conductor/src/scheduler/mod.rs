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

use skr8tr_proto::manifest::{AppSpec, Port};
use skr8tr_store::records::{self, AppRecord, AppStatus, PlacementRecord};
use std::collections::BTreeMap;

/// A node as the scheduler sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeFit {
    pub alive: bool,
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
}

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
    let mut load: BTreeMap<&str, Load> = d
        .nodes
        .keys()
        .map(|n| (n.as_str(), Load::default()))
        .collect();
    let mut keep: BTreeMap<&str, &PlacementRecord> = BTreeMap::new();
    for (id, p) in d.placements {
        if d.rolling.contains(&p.app) {
            if let (Some(l), Some((_, spec))) = (load.get_mut(p.node.as_str()), d.apps.get(&p.app))
            {
                l.add(spec, &p.app);
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
        keep.insert(id, p);
        if let (Some(l), Some((_, spec))) = (load.get_mut(p.node.as_str()), d.apps.get(&p.app)) {
            l.add(spec, &p.app);
        }
    }
    for (name, (app, spec)) in d.apps {
        if app.status != AppStatus::Active || d.rolling.contains(name) {
            continue;
        }
        for index in 0..app.replicas {
            let id = replica_id(name, app.generation, index);
            let existing = keep.get(id.as_str()).copied();
            if let Some(p) = existing
                && d.nodes.get(&p.node).is_some_and(|n| n.alive)
            {
                continue;
            }
            // An app's volume lives on its node: starting it empty
            // elsewhere would lose the data. It waits for the node.
            if let Some(p) = existing
                && !spec.volumes.is_empty()
            {
                plan.unplaced.insert(
                    name.clone(),
                    format!(
                        "unschedulable: {id} keeps its volume {} on node {}, which is lost; \
                         it waits for {} to come back (or `skr8tr down {name}`)",
                        spec.volumes[0].path, p.node, p.node
                    ),
                );
                continue;
            }
            let Some(node) = choose(d, &load, name, spec) else {
                plan.unplaced
                    .insert(name.clone(), why_unplaced(d, &load, spec));
                continue;
            };
            let record = PlacementRecord {
                app: name.clone(),
                generation: app.generation,
                index,
                node: node.clone(),
                port: match spec.port {
                    Port::Fixed(p) => Some(p),
                    Port::Auto => None,
                },
                desired: records::DesiredStatus::Run,
            };
            if let Some(l) = load.get_mut(node.as_str()) {
                l.add(spec, name);
            }
            plan.changes.push(match existing {
                Some(old) => {
                    if let Some(l) = load.get_mut(old.node.as_str()) {
                        l.remove(spec, name);
                    }
                    Change::Move {
                        replica: id,
                        from: old.node.clone(),
                        record,
                    }
                }
                None => Change::Place {
                    replica: id,
                    record,
                },
            });
        }
    }
    plan
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
    let mut load: BTreeMap<&str, Load> = d
        .nodes
        .keys()
        .map(|n| (n.as_str(), Load::default()))
        .collect();
    for p in d.placements.values() {
        if let (Some(l), Some((_, s))) = (load.get_mut(p.node.as_str()), d.apps.get(&p.app)) {
            // The new generation's static port is what matters for a surge.
            let s = if p.app == app && p.generation == generation {
                spec
            } else {
                s
            };
            l.add(s, &p.app);
        }
    }
    let node = choose(d, &load, app, spec)?;
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

mod fit;
#[cfg(test)]
mod tests;

use fit::{Load, choose, why_unplaced};
