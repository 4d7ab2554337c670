//! The scheduler: a pure function from desired state and observed nodes to
//! placement changes. It reads no clock and draws no randomness, so the same
//! inputs always give the same plan — which is what makes a restarted
//! conductor continue exactly where it stopped.
//!
//! Policy, per replica index `0..replicas` of each app's current generation:
//! keep a placement on a live node; re-place one on a lost node; place a
//! missing one on the node that (1) fits the spec's `ram`/`cpus` in what it
//! offers minus what is already reserved there, (2) does not already hold
//! the spec's static port, then (3) has the fewest replicas of this app
//! (spread), (4) the fewest replicas overall (least loaded), (5) the
//! smallest name (determinism). Placements of other generations and
//! indices beyond `replicas` are removed.

use skr8tr_proto::manifest::{AppSpec, Port};
use skr8tr_store::records::{self, AppRecord, AppStatus, PlacementRecord};
use std::collections::BTreeMap;

/// A node as the scheduler sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeFit {
    pub alive: bool,
    pub cpu_millis: u64,
    pub ram_bytes: u64,
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

#[derive(Default)]
struct Load {
    cpu_millis: u64,
    ram_bytes: u64,
    replicas: u32,
    per_app: BTreeMap<String, u32>,
    ports: Vec<u16>,
}

impl Load {
    fn add(&mut self, spec: &AppSpec, app: &str) {
        self.cpu_millis = self
            .cpu_millis
            .saturating_add(u64::from(spec.cpu_millis.unwrap_or(0)));
        self.ram_bytes = self.ram_bytes.saturating_add(spec.ram.unwrap_or(0));
        self.replicas += 1;
        *self.per_app.entry(app.to_string()).or_default() += 1;
        if let Port::Fixed(p) = spec.port {
            self.ports.push(p);
        }
    }

    fn remove(&mut self, spec: &AppSpec, app: &str) {
        self.cpu_millis = self
            .cpu_millis
            .saturating_sub(u64::from(spec.cpu_millis.unwrap_or(0)));
        self.ram_bytes = self.ram_bytes.saturating_sub(spec.ram.unwrap_or(0));
        self.replicas = self.replicas.saturating_sub(1);
        if let Some(n) = self.per_app.get_mut(app) {
            *n = n.saturating_sub(1);
        }
        if let Port::Fixed(p) = spec.port
            && let Some(i) = self.ports.iter().position(|x| *x == p)
        {
            self.ports.remove(i);
        }
    }
}

/// Whether `node` has room for one more replica of `spec` on top of `load`:
/// alive, CPU and RAM reservations within what it offers, static port free.
fn has_room(node: &NodeFit, load: &Load, spec: &AppSpec) -> bool {
    let cpu = u64::from(spec.cpu_millis.unwrap_or(0));
    let ram = spec.ram.unwrap_or(0);
    let port_free = match spec.port {
        Port::Fixed(p) => !load.ports.contains(&p),
        Port::Auto => true,
    };
    node.alive
        && load.cpu_millis.saturating_add(cpu) <= node.cpu_millis
        && load.ram_bytes.saturating_add(ram) <= node.ram_bytes
        && port_free
}

fn choose(
    d: &ClusterView<'_>,
    load: &BTreeMap<&str, Load>,
    app: &str,
    spec: &AppSpec,
) -> Option<String> {
    d.nodes
        .iter()
        .filter_map(|(name, node)| {
            let l = load.get(name.as_str())?;
            has_room(node, l, spec)
                .then(|| (l.per_app.get(app).copied().unwrap_or(0), l.replicas, name))
        })
        .min()
        .map(|(_, _, name)| name.clone())
}

fn why_unplaced(d: &ClusterView<'_>, load: &BTreeMap<&str, Load>, spec: &AppSpec) -> String {
    let alive: Vec<&String> = d
        .nodes
        .iter()
        .filter(|(_, n)| n.alive)
        .map(|(k, _)| k)
        .collect();
    if alive.is_empty() {
        return "no live node; start one with `skr8tr node`".into();
    }
    if let Port::Fixed(p) = spec.port
        && alive
            .iter()
            .all(|n| load.get(n.as_str()).is_some_and(|l| l.ports.contains(&p)))
    {
        return format!(
            "static port {p} is taken on every live node ({}); add a node or use `port auto`",
            alive.len()
        );
    }
    format!(
        "no live node has room for {} cpus and {} MiB RAM; add a node or lower `cpus`/`ram`",
        f64::from(spec.cpu_millis.unwrap_or(0)) / 1000.0,
        spec.ram.unwrap_or(0) >> 20
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use skr8tr_proto::manifest;

    fn app(text: &str, generation: u64, replicas: u32) -> (AppRecord, AppSpec) {
        let spec = manifest::parse("t", text).unwrap().remove(0);
        (
            AppRecord {
                generation,
                previous_generation: None,
                replicas,
                status: AppStatus::Active,
            },
            spec,
        )
    }

    fn nodes(list: &[(&str, bool)]) -> BTreeMap<String, NodeFit> {
        list.iter()
            .map(|(n, alive)| {
                (
                    n.to_string(),
                    NodeFit {
                        alive: *alive,
                        cpu_millis: 2000,
                        ram_bytes: 4 << 30,
                    },
                )
            })
            .collect()
    }

    fn apply(placements: &mut BTreeMap<String, PlacementRecord>, plan: &Plan) {
        for c in &plan.changes {
            match c {
                Change::Place { replica, record }
                | Change::Update { replica, record }
                | Change::Move {
                    replica, record, ..
                } => {
                    placements.insert(replica.clone(), record.clone());
                }
                Change::Remove { replica, .. } => {
                    placements.remove(replica);
                }
            }
        }
    }

    fn step(
        placements: &mut BTreeMap<String, PlacementRecord>,
        apps: &BTreeMap<String, (AppRecord, AppSpec)>,
        nodes: &BTreeMap<String, NodeFit>,
    ) {
        let p = plan(&ClusterView {
            apps,
            placements,
            nodes,
            rolling: &Default::default(),
        });
        apply(placements, &p);
    }

    fn nodes_of(placements: &BTreeMap<String, PlacementRecord>) -> Vec<&str> {
        placements.values().map(|p| p.node.as_str()).collect()
    }

    #[test]
    fn spreads_replicas_and_is_stable() {
        let apps = BTreeMap::from([("web".to_string(), app("app web\n  exec /x\n", 1, 3))]);
        let nodes = nodes(&[("n1", true), ("n2", true)]);
        let mut placements = BTreeMap::new();
        let p = plan(&ClusterView {
            apps: &apps,
            placements: &placements,
            nodes: &nodes,
            rolling: &Default::default(),
        });
        assert_eq!(p.changes.len(), 3);
        apply(&mut placements, &p);
        assert_eq!(nodes_of(&placements), ["n1", "n2", "n1"]);
        assert_eq!(placements["web/1/0"].port, None);
        // Nothing to do the second time.
        let again = plan(&ClusterView {
            apps: &apps,
            placements: &placements,
            nodes: &nodes,
            rolling: &Default::default(),
        });
        assert_eq!(again, Plan::default());
    }

    #[test]
    fn moves_replicas_off_a_lost_node() {
        let apps = BTreeMap::from([("web".to_string(), app("app web\n  exec /x\n", 1, 2))]);
        let mut placements = BTreeMap::new();
        let two = nodes(&[("n1", true), ("n2", true)]);
        step(&mut placements, &apps, &two);
        let lost = nodes(&[("n1", false), ("n2", true)]);
        let p = plan(&ClusterView {
            apps: &apps,
            placements: &placements,
            nodes: &lost,
            rolling: &Default::default(),
        });
        assert_eq!(
            p.changes,
            vec![Change::Move {
                replica: "web/1/0".into(),
                from: "n1".into(),
                record: PlacementRecord {
                    node: "n2".into(),
                    ..placements["web/1/0"].clone()
                },
            }]
        );
        assert!(
            p.summary()
                .contains("moved web/1/0 from lost node n1 to n2")
        );
    }

    #[test]
    fn static_ports_never_share_a_node() {
        let apps = BTreeMap::from([(
            "api".to_string(),
            app("app api\n  exec /x\n  port 8080\n", 1, 3),
        )]);
        let nodes = nodes(&[("n1", true), ("n2", true)]);
        let p = plan(&ClusterView {
            apps: &apps,
            placements: &BTreeMap::new(),
            nodes: &nodes,
            rolling: &Default::default(),
        });
        assert_eq!(p.changes.len(), 2);
        let reason = &p.unplaced["api"];
        assert!(
            reason.contains("static port 8080 is taken on every live node"),
            "{reason}"
        );
    }

    #[test]
    fn resources_are_respected_and_least_loaded_wins() {
        let apps = BTreeMap::from([
            (
                "big".to_string(),
                app("app big\n  exec /x\n  ram 3gb\n", 1, 2),
            ),
            ("small".to_string(), app("app small\n  exec /x\n", 1, 1)),
        ]);
        let nodes = nodes(&[("n1", true), ("n2", true)]);
        let mut placements = BTreeMap::new();
        step(&mut placements, &apps, &nodes);
        assert_eq!(placements["big/1/0"].node, "n1");
        assert_eq!(placements["big/1/1"].node, "n2");
        let huge = BTreeMap::from([(
            "huge".to_string(),
            app("app huge\n  exec /x\n  ram 8gb\n", 1, 1),
        )]);
        let p = plan(&ClusterView {
            apps: &huge,
            placements: &BTreeMap::new(),
            nodes: &nodes,
            rolling: &Default::default(),
        });
        assert!(p.changes.is_empty());
        assert!(
            p.unplaced["huge"].contains("no live node has room"),
            "{:?}",
            p.unplaced
        );
        let none = plan(&ClusterView {
            apps: &huge,
            placements: &BTreeMap::new(),
            nodes: &BTreeMap::new(),
            rolling: &Default::default(),
        });
        assert!(none.unplaced["huge"].contains("no live node"));
    }

    #[test]
    fn scale_down_and_new_generations_remove_placements() {
        let mut apps = BTreeMap::from([("web".to_string(), app("app web\n  exec /x\n", 1, 3))]);
        let nodes = nodes(&[("n1", true)]);
        let mut placements = BTreeMap::new();
        step(&mut placements, &apps, &nodes);
        apps.get_mut("web").unwrap().0.replicas = 1;
        let p = plan(&ClusterView {
            apps: &apps,
            placements: &placements,
            nodes: &nodes,
            rolling: &Default::default(),
        });
        assert_eq!(p.changes.len(), 2);
        apply(&mut placements, &p);
        assert_eq!(placements.keys().collect::<Vec<_>>(), ["web/1/0"]);
        apps.get_mut("web").unwrap().0.generation = 2;
        step(&mut placements, &apps, &nodes);
        assert_eq!(placements.keys().collect::<Vec<_>>(), ["web/2/0"]);
        apps.clear();
        step(&mut placements, &apps, &nodes);
        assert!(placements.is_empty());
    }
}
