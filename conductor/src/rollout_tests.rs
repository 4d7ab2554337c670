//! The rollout engine step by step, on a simulated cluster: surges, drains,
//! reverts, deadlines, lost nodes.

use super::*;
use crate::scheduler::{ClusterView as Sched, NodeFit};
use skr8tr_proto::manifest;
use skr8tr_store::records::AppStatus;
use std::collections::{BTreeMap, BTreeSet};

struct Sim {
    apps: BTreeMap<String, (AppRecord, AppSpec)>,
    placements: BTreeMap<String, PlacementRecord>,
    nodes: BTreeMap<String, NodeFit>,
    seen: HashMap<String, Seen>,
    rollout: RolloutRecord,
    specs: BTreeMap<u64, AppSpec>,
    draining: HashMap<String, u64>,
    now: u64,
}

fn spec(text: &str) -> AppSpec {
    manifest::parse("t", text).unwrap().remove(0)
}

fn sim(v1: &str, v2: &str) -> Sim {
    let (s1, s2) = (spec(v1), spec(v2));
    let record = AppRecord {
        generation: 1,
        previous_generation: None,
        replicas: 3,
        status: AppStatus::Active,
    };
    let mut placements = BTreeMap::new();
    let mut seen = HashMap::new();
    for i in 0..3 {
        let id = replica_id("web", 1, i);
        placements.insert(
            id.clone(),
            PlacementRecord {
                app: "web".into(),
                generation: 1,
                index: i,
                node: format!("n{}", i % 2),
                port: match s1.port {
                    skr8tr_proto::manifest::Port::Fixed(p) => Some(p),
                    _ => None,
                },
                desired: DesiredStatus::Run,
            },
        );
        seen.insert(
            id,
            Seen {
                state: ReplicaState::Ready,
                restarts: 0,
            },
        );
    }
    let nodes = (0..2)
        .map(|i| {
            (
                format!("n{i}"),
                NodeFit {
                    alive: true,
                    schedulable: true,
                    silent_ms: 0,
                    cpu_millis: 4000,
                    ram_bytes: 8 << 30,
                    labels: Vec::new(),
                    wasm: false,
                },
            )
        })
        .collect();
    Sim {
        apps: BTreeMap::from([("web".to_string(), (record, s1.clone()))]),
        placements,
        nodes,
        seen,
        rollout: RolloutRecord {
            from_generation: 1,
            to_generation: 2,
            step: 0,
            phase: RolloutPhase::Surging,
            started_at_ms: 0,
            step_deadline_ms: 60_000,
            reason: None,
        },
        specs: BTreeMap::from([(1, s1), (2, s2)]),
        draining: HashMap::new(),
        now: 0,
    }
}

impl Sim {
    /// The engine's step from the simulated state (not applied), with
    /// the operator's `step_timeout_ms`: the one place tests build a
    /// `View`.
    fn step_with(&self, step_timeout_ms: Option<u64>) -> Step {
        let rolling = BTreeSet::from(["web".to_string()]);
        let d = Sched {
            apps: &self.apps,
            placements: &self.placements,
            nodes: &self.nodes,
            rolling: &rolling,
            observed: &Default::default(),
        };
        step(&View {
            app: "web",
            record: &self.apps["web"].0,
            rollout: &self.rollout,
            from_spec: &self.specs[&self.rollout.from_generation],
            to_spec: &self.specs[&self.rollout.to_generation],
            desired: &d,
            seen: &self.seen,
            draining_since: &self.draining,
            step_timeout_ms,
            now: self.now,
        })
    }

    /// One engine step, applied; new replicas get `fate`.
    fn tick(&mut self, fate: Seen) -> Step {
        let s = self.step_with(None);
        for c in &s.changes {
            match c {
                Change::Place { replica, record }
                | Change::Move {
                    replica, record, ..
                } => {
                    self.placements.insert(replica.clone(), record.clone());
                    self.seen.insert(replica.clone(), fate);
                }
                Change::Update { replica, record } => {
                    if record.desired == DesiredStatus::Stop {
                        self.draining.insert(replica.clone(), self.now);
                    }
                    self.placements.insert(replica.clone(), record.clone());
                }
                Change::Remove { replica, .. } => {
                    self.placements.remove(replica);
                    self.seen.remove(replica);
                    self.draining.remove(replica);
                }
            }
        }
        if let Next::Continue(r) = &s.next {
            self.rollout = r.clone();
        }
        self.now += 600;
        s
    }

    fn serving(&self) -> usize {
        self.placements
            .iter()
            .filter(|(id, p)| {
                p.desired == DesiredStatus::Run
                    && self
                        .seen
                        .get(*id)
                        .is_some_and(|s| s.state == ReplicaState::Ready)
            })
            .count()
    }

    fn run_to_end(&mut self, fate: Seen) -> Next {
        for _ in 0..100 {
            let s = self.tick(fate);
            assert!(
                self.serving() >= 3,
                "capacity dropped to {}: {:?}",
                self.serving(),
                s
            );
            if let Next::Done { .. } = s.next {
                return s.next;
            }
        }
        panic!("rollout did not end: {:?}", self.rollout);
    }
}

const READY: Seen = Seen {
    state: ReplicaState::Ready,
    restarts: 0,
};

const STARTING: Seen = Seen {
    state: ReplicaState::Starting,
    restarts: 0,
};

#[test]
fn surges_one_at_a_time_and_never_drops_below_n_ready() {
    let mut s = sim("app web\n  exec /v1\n", "app web\n  exec /v2\n");
    let next = s.run_to_end(READY);
    assert_eq!(
        next,
        Next::Done {
            generation: 2,
            previous: Some(1),
            reverted: false
        }
    );
    let ids: Vec<&String> = s.placements.keys().collect();
    assert_eq!(ids, ["web/2/0", "web/2/1", "web/2/2"]);
}

#[test]
fn the_last_drains_show_as_the_draining_phase_then_it_is_done() {
    let mut s = sim("app web\n  exec /v1\n", "app web\n  exec /v2\n");
    let mut phases = Vec::new();
    for _ in 0..100 {
        let st = s.tick(READY);
        if let Next::Done { .. } = st.next {
            break;
        }
        phases.push((s.rollout.step, s.rollout.phase));
    }
    let first_draining = phases
        .iter()
        .position(|(_, p)| *p == RolloutPhase::Draining)
        .expect("a draining phase before the end");
    assert!(
        phases[..first_draining]
            .iter()
            .all(|(k, p)| *p == RolloutPhase::Surging && *k <= 3),
        "{phases:?}"
    );
    assert!(
        phases[first_draining..]
            .iter()
            .all(|(k, p)| *p == RolloutPhase::Draining && *k == 3),
        "draining only once every step is done: {phases:?}"
    );
    assert_eq!(s.placements.len(), 3);
}

#[test]
fn a_crashing_new_version_reverts_and_old_replicas_keep_serving() {
    let mut s = sim("app web\n  exec /v1\n", "app web\n  exec /v2\n");
    let crash = Seen {
        state: ReplicaState::Backoff,
        restarts: 1,
    };
    let next = s.run_to_end(crash);
    assert_eq!(
        next,
        Next::Done {
            generation: 1,
            previous: None,
            reverted: true
        }
    );
    let ids: Vec<&String> = s.placements.keys().collect();
    assert_eq!(ids, ["web/1/0", "web/1/1", "web/1/2"]);
    assert!(
        s.rollout
            .reason
            .as_deref()
            .unwrap()
            .contains("web/2/0 crashed")
    );
}

#[test]
fn a_new_replica_whose_node_is_lost_is_placed_again_not_waited_for() {
    let mut s = sim("app web\n  exec /v1\n", "app web\n  exec /v2\n");
    let first = s.tick(STARTING);
    let Change::Place { record, .. } = &first.changes[0] else {
        panic!("{first:?}")
    };
    let lost = record.node.clone();
    s.nodes.get_mut(&lost).unwrap().alive = false;
    s.now += 1_000;
    let again = s.step_with(None);
    assert!(
        again
            .note
            .as_deref()
            .unwrap()
            .starts_with(&format!("node {lost} lost; step 1/3: surge web/2/0 on")),
        "{again:?}"
    );
    let Change::Place { replica, record } = &again.changes[0] else {
        panic!("{again:?}")
    };
    assert_eq!(replica, "web/2/0");
    assert_ne!(record.node, lost, "on a live node");
    let Next::Continue(rec) = &again.next else {
        panic!("{again:?}")
    };
    assert_eq!(rec.phase, RolloutPhase::Surging, "not reverting");
    assert!(rec.step_deadline_ms > s.now, "a fresh deadline");
}

#[test]
fn a_replica_never_ready_reverts_at_its_deadline() {
    let mut s = sim(
        "app web\n  exec /v1\n",
        "app web\n  exec /v2\n  settle 1s\n",
    );
    s.tick(STARTING);
    assert_eq!(s.rollout.phase, RolloutPhase::Surging);
    s.now = s.rollout.step_deadline_ms + 1;
    let st = s.tick(STARTING);
    assert_eq!(s.rollout.phase, RolloutPhase::Reverting, "{st:?}");
    assert!(
        s.rollout
            .reason
            .as_deref()
            .unwrap()
            .contains("not ready within 11 s")
    );
    assert!(matches!(
        s.run_to_end(STARTING),
        Next::Done { reverted: true, .. }
    ));
}

#[test]
fn the_operators_step_timeout_overrides_the_specs() {
    let mut s = sim(
        "app web\n  exec /v1\n",
        "app web\n  exec /v2\n  settle 1s\n",
    );
    let placed = s.step_with(Some(2_000));
    let Next::Continue(r) = &placed.next else {
        panic!()
    };
    assert_eq!(
        r.step_deadline_ms,
        s.now + 2_000,
        "2 s, not the spec's 11 s"
    );
    s.tick(STARTING);
    s.now = 2_001;
    s.rollout.step_deadline_ms = 2_000;
    let late = s.step_with(Some(2_000));
    let Next::Continue(r) = &late.next else {
        panic!()
    };
    assert_eq!(r.phase, RolloutPhase::Reverting);
    assert!(r.reason.as_deref().unwrap().contains("within 2 s"), "{r:?}");
}

#[test]
fn a_static_port_everywhere_replaces_instead_of_surging() {
    let mut s = sim(
        "app web\n  exec /v1\n  port 80\n",
        "app web\n  exec /v2\n  port 80\n",
    );
    // Two nodes, three replicas on port 80 would not fit; use 2 replicas.
    s.apps.get_mut("web").unwrap().0.replicas = 2;
    s.placements.remove("web/1/2");
    s.seen.remove("web/1/2");
    let first = s.tick(READY);
    assert!(
        first.note.as_deref().unwrap().contains("no room to surge"),
        "{first:?}"
    );
    for _ in 0..50 {
        if let Next::Done { generation, .. } = s.tick(READY).next {
            assert_eq!(generation, 2);
            assert_eq!(s.placements.len(), 2);
            return;
        }
    }
    panic!("replace-mode rollout did not finish");
}

#[test]
fn a_step_is_the_same_after_a_restart() {
    // The engine holds nothing between calls: computing a step twice from
    // the same state gives the same step (what kill -9 recovery needs).
    let mut s = sim("app web\n  exec /v1\n", "app web\n  exec /v2\n");
    s.tick(READY);
    s.tick(READY);
    assert_eq!(s.step_with(None), s.step_with(None));
}
