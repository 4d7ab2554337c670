//! Moves that wait on what nodes report: off a cordoned node surge-first
//! (a successor placed, the original drained once it is ready, removed
//! after the registry drain), drain-first for an app that must never run
//! twice, and a lost node's `stop-after` app replaced only after its node
//! must have stopped it.

use super::*;
use skr8tr_proto::manifest;

fn apps(text: &str, replicas: u32) -> BTreeMap<String, (AppRecord, AppSpec)> {
    let spec = manifest::parse("t", text).unwrap().remove(0);
    let record = AppRecord {
        generation: 1,
        previous_generation: None,
        replicas,
        status: AppStatus::Active,
    };
    BTreeMap::from([(spec.name.clone(), (record, spec))])
}

fn node(alive: bool, schedulable: bool, silent_ms: u64) -> NodeFit {
    NodeFit {
        alive,
        schedulable,
        silent_ms,
        cpu_millis: 2000,
        ram_bytes: 4 << 30,
        labels: Vec::new(),
        wasm: false,
    }
}

/// A little cluster: placements applied as the reconciler would commit
/// them, reports and drain times set by the test.
struct Sim {
    apps: BTreeMap<String, (AppRecord, AppSpec)>,
    nodes: BTreeMap<String, NodeFit>,
    placements: BTreeMap<String, PlacementRecord>,
    observed: Observed,
}

impl Sim {
    fn new(text: &str, replicas: u32, nodes: &[&str]) -> Sim {
        let mut s = Sim {
            apps: apps(text, replicas),
            nodes: nodes
                .iter()
                .map(|n| (n.to_string(), node(true, true, 0)))
                .collect(),
            placements: BTreeMap::new(),
            observed: Observed {
                now: 1_000_000,
                ..Observed::default()
            },
        };
        s.step();
        s
    }

    fn plan(&self) -> Plan {
        plan(&ClusterView {
            apps: &self.apps,
            placements: &self.placements,
            nodes: &self.nodes,
            rolling: &Default::default(),
            observed: &self.observed,
        })
    }

    fn step(&mut self) -> Plan {
        let p = self.plan();
        for c in &p.changes {
            match c {
                Change::Place { replica, record }
                | Change::Update { replica, record }
                | Change::Move {
                    replica, record, ..
                } => {
                    if record.desired == DesiredStatus::Stop {
                        self.observed
                            .draining_since
                            .insert(replica.clone(), self.observed.now);
                    }
                    self.placements.insert(replica.clone(), record.clone());
                }
                Change::Remove { replica, .. } => {
                    self.placements.remove(replica);
                }
            }
        }
        p
    }

    fn ready(&mut self, id: &str) {
        self.observed.reported.insert(id.into());
        self.observed.seen.insert(
            id.into(),
            Seen {
                state: ReplicaState::Ready,
                restarts: 0,
            },
        );
    }

    fn later(&mut self, ms: u64) {
        self.observed.now += ms;
    }

    fn where_(&self) -> Vec<(String, String, DesiredStatus)> {
        self.placements
            .iter()
            .map(|(id, p)| (id.clone(), p.node.clone(), p.desired))
            .collect()
    }
}

fn run(id: &str, node: &str) -> (String, String, DesiredStatus) {
    (id.into(), node.into(), DesiredStatus::Run)
}

fn stop(id: &str, node: &str) -> (String, String, DesiredStatus) {
    (id.into(), node.into(), DesiredStatus::Stop)
}

#[test]
fn a_cordoned_nodes_replica_moves_surge_first_and_the_result_is_stable() {
    let mut s = Sim::new("app web\n  exec /x\n", 1, &["n1", "n2"]);
    assert_eq!(s.where_(), [run("web/1/0", "n1")]);
    s.ready("web/1/0");
    s.nodes.get_mut("n1").unwrap().schedulable = false;

    // A successor on n2, the original still running and routed.
    let p = s.step();
    assert_eq!(p.summary(), "schedule: placed web/1/0.1 on n2");
    assert_eq!(s.where_(), [run("web/1/0", "n1"), run("web/1/0.1", "n2")]);
    // Not ready yet: nothing more.
    assert_eq!(s.plan(), Plan::default());
    s.ready("web/1/0.1");
    assert_eq!(s.step().summary(), "schedule: draining web/1/0");
    assert_eq!(s.where_(), [stop("web/1/0", "n1"), run("web/1/0.1", "n2")]);
    // Removed once it has drained out of the registry.
    assert_eq!(s.plan(), Plan::default());
    s.later(REGISTRY_DRAIN_MS);
    assert_eq!(s.step().summary(), "schedule: removed web/1/0 from n1");
    assert_eq!(s.where_(), [run("web/1/0.1", "n2")]);
    assert_eq!(s.plan(), Plan::default(), "stable on the new node");

    // Drained again, the next successor number.
    s.nodes.get_mut("n1").unwrap().schedulable = true;
    s.nodes.get_mut("n2").unwrap().schedulable = false;
    assert_eq!(s.step().summary(), "schedule: placed web/1/0.2 on n1");
    // A successor's node lost before it is ready: moved, same id.
    s.nodes.get_mut("n1").unwrap().alive = false;
    s.nodes.insert("n3".into(), node(true, true, 0));
    assert_eq!(
        s.step().summary(),
        "schedule: moved web/1/0.2 from lost node n1 to n3"
    );
}

#[test]
fn scale_down_and_up_after_a_drain_keep_one_placement_per_index() {
    let mut s = Sim::new("app web\n  exec /x\n", 2, &["n1", "n2"]);
    s.ready("web/1/0");
    s.ready("web/1/1");
    s.nodes.get_mut("n1").unwrap().schedulable = false;
    s.step();
    s.ready("web/1/0.1");
    s.step();
    s.later(REGISTRY_DRAIN_MS);
    s.step();
    assert_eq!(s.where_(), [run("web/1/0.1", "n2"), run("web/1/1", "n2")]);
    s.apps.get_mut("web").unwrap().0.replicas = 1;
    s.step();
    assert_eq!(s.where_(), [run("web/1/0.1", "n2")]);
    s.apps.get_mut("web").unwrap().0.replicas = 2;
    s.step();
    assert_eq!(s.where_(), [run("web/1/0.1", "n2"), run("web/1/1", "n2")]);
}

#[test]
fn an_app_that_must_never_run_twice_drains_first_off_a_cordoned_node() {
    let text = "app worker\n  exec /x\n  disconnect { stop-after 20s }\n";
    let mut s = Sim::new(text, 1, &["n1", "n2"]);
    s.ready("worker/1/0");
    s.nodes.get_mut("n1").unwrap().schedulable = false;
    assert_eq!(s.step().summary(), "schedule: draining worker/1/0");
    assert_eq!(s.plan(), Plan::default(), "no successor while it drains");
    s.later(REGISTRY_DRAIN_MS);
    assert_eq!(s.step().summary(), "schedule: removed worker/1/0 from n1");
    // Its node still reports it (stopping, within its `drain`): no copy yet.
    assert_eq!(s.plan(), Plan::default());
    s.observed.reported.remove("worker/1/0");
    assert_eq!(s.step().summary(), "schedule: placed worker/1/0 on n2");
}

#[test]
fn a_lost_nodes_stop_after_app_is_replaced_only_once_its_node_must_have_stopped_it() {
    let text = "app worker\n  exec /x\n  drain 2s\n  disconnect { stop-after 20s }\n";
    let mut s = Sim::new(text, 1, &["n1", "n2"]);
    let n1 = s.nodes.get_mut("n1").unwrap();
    n1.alive = false;
    n1.silent_ms = 10_000;
    let p = s.step();
    assert!(p.changes.is_empty());
    let why = &p.unplaced["worker"];
    assert!(
        why.contains("stops worker/1/0 by itself") && why.contains("in 16 s"),
        "{why}"
    );
    // stop-after 20 s + drain 2 s + the margin.
    s.nodes.get_mut("n1").unwrap().silent_ms = 20_000 + 2_000 + STOP_AFTER_MARGIN_MS - 1;
    assert!(s.step().changes.is_empty());
    s.nodes.get_mut("n1").unwrap().silent_ms = 20_000 + 2_000 + STOP_AFTER_MARGIN_MS;
    assert_eq!(
        s.step().summary(),
        "schedule: moved worker/1/0 from lost node n1 to n2"
    );
    // Without stop-after: moved as soon as the node is lost.
    let mut s = Sim::new("app web\n  exec /x\n", 1, &["n1", "n2"]);
    s.nodes.get_mut("n1").unwrap().alive = false;
    assert_eq!(
        s.step().summary(),
        "schedule: moved web/1/0 from lost node n1 to n2"
    );
}

#[test]
fn with_every_node_cordoned_replicas_stay_and_the_reason_says_so() {
    let mut s = Sim::new("app web\n  exec /x\n", 1, &["n1"]);
    s.ready("web/1/0");
    s.nodes.get_mut("n1").unwrap().schedulable = false;
    let p = s.step();
    assert!(p.changes.is_empty());
    assert!(p.unplaced["web"].contains("every live node is cordoned"));
    assert_eq!(s.where_(), [run("web/1/0", "n1")], "it keeps running");
}

#[test]
fn a_stop_after_app_drains_one_replica_at_a_time_and_a_job_is_left_to_finish() {
    let text = "app worker\n  exec /x\n  disconnect { stop-after 20s }\n";
    let mut s = Sim::new(text, 2, &["n1"]);
    s.nodes.insert("n2".into(), node(true, true, 0));
    s.ready("worker/1/0");
    s.ready("worker/1/1");
    s.nodes.get_mut("n1").unwrap().schedulable = false;
    let p = s.step();
    assert_eq!(p.changes.len(), 1, "one at a time: {}", p.summary());
    let mut j = Sim::new("app batch\n  type job\n  exec /x\n", 1, &["n1", "n2"]);
    j.nodes.get_mut("n1").unwrap().schedulable = false;
    assert_eq!(j.plan(), Plan::default(), "no second run of a job");
}

#[test]
fn a_draining_stop_after_copy_on_a_silent_node_is_kept_until_its_node_must_have_stopped_it() {
    let text = "app worker\n  exec /x\n  drain 2s\n  disconnect { stop-after 20s }\n";
    let mut s = Sim::new(text, 1, &["n1", "n2"]);
    s.ready("worker/1/0");
    s.nodes.get_mut("n1").unwrap().schedulable = false;
    assert_eq!(s.step().summary(), "schedule: draining worker/1/0");
    // Cut off before its node stopped it: lost, and not yet silent enough.
    s.observed.reported.clear();
    let n1 = s.nodes.get_mut("n1").unwrap();
    n1.alive = false;
    n1.silent_ms = 6_000;
    assert_eq!(s.plan(), Plan::default(), "the copy may still run on n1");
    s.nodes.get_mut("n1").unwrap().silent_ms = 20_000 + 2_000 + STOP_AFTER_MARGIN_MS;
    assert_eq!(s.step().summary(), "schedule: removed worker/1/0 from n1");
    assert_eq!(s.step().summary(), "schedule: placed worker/1/0 on n2");
}
