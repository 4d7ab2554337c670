//! The rollout engine: one pure step of an app's rolling update, from the
//! durable rollout record, the placements and what nodes report, to the
//! next placements and record. No clock, no randomness: a conductor killed
//! at any point recomputes the same step from the same state.
//!
//! One step `k` of `N`, surge mode: place new replica `k` (`to/k`), wait
//! until it is ready, then drain one old replica (desired `Stop`: it leaves
//! the registry but keeps running) and go on to `k + 1` at once. A drained
//! replica is removed once it has drained for `REGISTRY_DRAIN_MS` (the node
//! then sends SIGTERM, waits `drain`, kills); drains overlap the next steps.
//! Capacity never drops below `N` ready replicas. How long each replica has
//! been draining is observed state the conductor keeps in memory: after a
//! restart a drain simply lasts one more period. When no node can take the surge (a static
//! port held on every node), the step drains an old replica first and then
//! places the new one there (replace mode). A new replica that crashes, or is
//! not ready by its deadline, turns the rollout into a revert: old replicas
//! are restored and ready before the new ones are drained and removed.

use crate::scheduler::{self, Change, replica_id};
use skr8tr_proto::manifest::AppSpec;
use skr8tr_proto::wire::ReplicaState;
use skr8tr_store::records::{AppRecord, Desired, PlacementRecord, RolloutPhase, RolloutRecord};
use std::collections::HashMap;

/// How long a drained replica keeps serving in-flight requests after it
/// left the registry, before the node is told to stop it.
pub const REGISTRY_DRAIN_MS: u64 = 1000;

/// How long a new replica may take to become ready.
pub fn ready_timeout_ms(spec: &AppSpec) -> u64 {
    match &spec.health {
        Some(h) => (5 * h.interval.as_millis() as u64).max(10_000),
        None => spec.settle.as_millis() as u64 + 10_000,
    }
}

fn timeout(v: &View<'_>) -> u64 {
    v.step_timeout_ms
        .unwrap_or_else(|| ready_timeout_ms(v.to_spec))
}

/// A replica as its node reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    pub state: ReplicaState,
    pub restarts: u32,
}

pub struct View<'a> {
    pub app: &'a str,
    pub record: &'a AppRecord,
    pub rollout: &'a RolloutRecord,
    pub from_spec: &'a AppSpec,
    pub to_spec: &'a AppSpec,
    /// Everything, for placing a replica where the scheduler would.
    pub desired: &'a scheduler::Desired<'a>,
    /// Replica id → what its (live) node reports.
    pub seen: &'a HashMap<String, Seen>,
    /// Replica id → since when the conductor has seen it draining (`Stop`).
    pub draining_since: &'a HashMap<String, u64>,
    /// The operator's readiness deadline, overriding the spec's default.
    pub step_timeout_ms: Option<u64>,
    pub now: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    Continue(RolloutRecord),
    /// The rollout is over: the app runs `generation` now.
    Done {
        generation: u64,
        previous: Option<u64>,
        reverted: bool,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub changes: Vec<Change>,
    pub next: Next,
    /// What happened, for the audit log and `skr8tr rollout`.
    pub note: Option<String>,
}

impl Step {
    /// Whether there is anything to commit.
    pub fn is_noop(&self, current: &RolloutRecord) -> bool {
        self.changes.is_empty() && self.next == Next::Continue(current.clone())
    }
}

pub fn step(v: &View<'_>) -> Step {
    if v.rollout.phase == RolloutPhase::Reverting {
        return revert(v);
    }
    let n = v.record.replicas;
    let (from, to) = (v.rollout.from_generation, v.rollout.to_generation);
    let mine = |generation: u64, desired: Desired| -> Vec<(&String, &PlacementRecord)> {
        v.desired
            .placements
            .iter()
            .filter(|(_, p)| p.app == v.app && p.generation == generation && p.desired == desired)
            .collect()
    };
    let mut rec = v.rollout.clone();
    // Records written before drains overlapped steps may say `Draining`.
    rec.phase = RolloutPhase::Surging;
    let mut changes = remove_drained(v, from);
    let old_running = mine(from, Desired::Run);
    let draining_left = mine(from, Desired::Stop).len() > changes.len();
    let k = rec.step;
    let keep_old = n.saturating_sub(k + 1) as usize;
    let drain_one = |changes: &mut Vec<Change>| -> Option<String> {
        let (id, p) = old_running.iter().max_by_key(|(_, p)| p.index)?;
        changes.push(Change::Update {
            replica: (*id).clone(),
            record: PlacementRecord {
                desired: Desired::Stop,
                ..(*p).clone()
            },
        });
        Some((*id).clone())
    };
    if k >= n {
        if !old_running.is_empty() {
            // More old replicas than steps (scaled down mid-way): drain them.
            let id = drain_one(&mut changes);
            let note = id.map(|id| format!("draining {id}"));
            return Step {
                changes,
                next: Next::Continue(rec),
                note,
            };
        }
        if draining_left {
            return Step {
                changes,
                next: Next::Continue(rec),
                note: None,
            };
        }
        return done(
            changes,
            to,
            Some(from),
            false,
            format!("all {n} replicas on generation {to}"),
        );
    }
    let new_id = replica_id(v.app, to, k);
    let new_k = v
        .desired
        .placements
        .get(&new_id)
        .filter(|p| p.generation == to);
    let mut note = None;
    match new_k {
        None => {
            if let Some(record) = scheduler::place_one(v.desired, v.app, v.to_spec, to, k) {
                note = Some(format!(
                    "step {}/{n}: surge {new_id} on {}",
                    k + 1,
                    record.node
                ));
                changes.push(Change::Place {
                    replica: new_id,
                    record,
                });
                rec.step_deadline_ms = v.now + timeout(v);
            } else if old_running.len() > keep_old {
                // Replace mode: the old replica's port frees once it is
                // removed after its drain; the new one is placed then.
                let id = drain_one(&mut changes);
                note = id.map(|id| {
                    format!(
                        "step {}/{n}: no room to surge (static port); draining {id} first",
                        k + 1
                    )
                });
                rec.step_deadline_ms = v.now + REGISTRY_DRAIN_MS + timeout(v);
            } else if !draining_left && v.now > rec.step_deadline_ms {
                return start_revert(v, rec, changes, format!("no node can take {new_id}"));
            }
        }
        Some(_) => match v.seen.get(&new_id) {
            Some(s) if s.state == ReplicaState::Ready => {
                let drained = if old_running.len() > keep_old {
                    drain_one(&mut changes)
                } else {
                    None
                };
                rec.step = k + 1;
                rec.step_deadline_ms = v.now + timeout(v);
                note = Some(match drained {
                    Some(id) => format!("step {}/{n}: {new_id} ready; draining {id}", k + 1),
                    None => format!("step {}/{n}: {new_id} ready", k + 1),
                });
            }
            Some(s) if crashed(s) => {
                let why = format!(
                    "{new_id} crashed ({}, {} restarts)",
                    s.state.label(),
                    s.restarts
                );
                return start_revert(v, rec, changes, why);
            }
            _ if v.now > rec.step_deadline_ms => {
                let secs = timeout(v) / 1000;
                return start_revert(
                    v,
                    rec,
                    changes,
                    format!("{new_id} was not ready within {secs} s"),
                );
            }
            _ => {}
        },
    }
    Step {
        changes,
        next: Next::Continue(rec),
        note,
    }
}

/// Removes this app's `generation` replicas that have drained long enough.
fn remove_drained(v: &View<'_>, generation: u64) -> Vec<Change> {
    v.desired
        .placements
        .iter()
        .filter(|(_, p)| p.app == v.app && p.generation == generation && p.desired == Desired::Stop)
        .filter(|(id, _)| {
            v.draining_since
                .get(*id)
                .is_some_and(|since| v.now.saturating_sub(*since) >= REGISTRY_DRAIN_MS)
        })
        .map(|(id, p)| Change::Remove {
            replica: id.clone(),
            node: p.node.clone(),
        })
        .collect()
}

fn crashed(s: &Seen) -> bool {
    s.restarts > 0 || matches!(s.state, ReplicaState::Backoff | ReplicaState::Exited { .. })
}

fn done(
    changes: Vec<Change>,
    generation: u64,
    previous: Option<u64>,
    reverted: bool,
    note: String,
) -> Step {
    Step {
        changes,
        next: Next::Done {
            generation,
            previous,
            reverted,
        },
        note: Some(note),
    }
}

fn start_revert(v: &View<'_>, mut rec: RolloutRecord, changes: Vec<Change>, why: String) -> Step {
    rec.phase = RolloutPhase::Reverting;
    rec.reason = Some(why.clone());
    rec.step_deadline_ms = v.now;
    Step {
        changes,
        next: Next::Continue(rec),
        note: Some(format!(
            "reverting to generation {}: {why}",
            v.rollout.from_generation
        )),
    }
}

/// Restores every old replica; once all are ready, drains and removes the
/// new ones; then the app is back on `from`.
fn revert(v: &View<'_>) -> Step {
    let n = v.record.replicas;
    let (from, to) = (v.rollout.from_generation, v.rollout.to_generation);
    let mut changes = Vec::new();
    let mut rec = v.rollout.clone();
    let mut old_ready = true;
    let mut unplaceable = false;
    for i in 0..n {
        let id = replica_id(v.app, from, i);
        match v.desired.placements.get(&id) {
            Some(p) if p.desired == Desired::Stop => {
                changes.push(Change::Update {
                    replica: id.clone(),
                    record: PlacementRecord {
                        desired: Desired::Run,
                        ..p.clone()
                    },
                });
                old_ready = false;
            }
            Some(_) => {
                old_ready &= v
                    .seen
                    .get(&id)
                    .is_some_and(|s| s.state == ReplicaState::Ready);
            }
            None => {
                old_ready = false;
                match scheduler::place_one(v.desired, v.app, v.from_spec, from, i) {
                    Some(record) => changes.push(Change::Place {
                        replica: id,
                        record,
                    }),
                    None => unplaceable = true,
                }
            }
        }
    }
    let new: Vec<(&String, &PlacementRecord)> = v
        .desired
        .placements
        .iter()
        .filter(|(_, p)| p.app == v.app && p.generation == to)
        .collect();
    // Old replicas take over before new ones go; if an old one cannot be
    // placed while new ones hold its port, the new ones go first.
    if old_ready || unplaceable {
        let running: Vec<_> = new
            .iter()
            .filter(|(_, p)| p.desired == Desired::Run)
            .collect();
        if !running.is_empty() {
            for (id, p) in running {
                changes.push(Change::Update {
                    replica: (*id).clone(),
                    record: PlacementRecord {
                        desired: Desired::Stop,
                        ..(*p).clone()
                    },
                });
            }
            rec.step_deadline_ms = v.now + REGISTRY_DRAIN_MS;
        } else if v.now >= rec.step_deadline_ms {
            for (id, p) in &new {
                changes.push(Change::Remove {
                    replica: (*id).clone(),
                    node: p.node.clone(),
                });
            }
            if old_ready {
                let why = rec.reason.clone().unwrap_or_default();
                return done(
                    changes,
                    from,
                    v.record.previous_generation,
                    true,
                    format!("reverted to generation {from}: {why}"),
                );
            }
        }
    }
    let note = (!changes.is_empty()).then(|| format!("reverting to generation {from}"));
    Step {
        changes,
        next: Next::Continue(rec),
        note,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::{Desired as Sched, NodeFit};
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
                    desired: Desired::Run,
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
                        cpu_millis: 4000,
                        ram_bytes: 8 << 30,
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
        /// One engine step, applied; new replicas get `fate`.
        fn tick(&mut self, fate: Seen) -> Step {
            let rolling = BTreeSet::from(["web".to_string()]);
            let d = Sched {
                apps: &self.apps,
                placements: &self.placements,
                nodes: &self.nodes,
                rolling: &rolling,
            };
            let (record, _) = &self.apps["web"];
            let view = View {
                app: "web",
                record,
                rollout: &self.rollout,
                from_spec: &self.specs[&self.rollout.from_generation],
                to_spec: &self.specs[&self.rollout.to_generation],
                desired: &d,
                seen: &self.seen,
                draining_since: &self.draining,
                step_timeout_ms: None,
                now: self.now,
            };
            let s = step(&view);
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
                        if record.desired == Desired::Stop {
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
                    p.desired == Desired::Run
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
    fn a_replica_never_ready_reverts_at_its_deadline() {
        let mut s = sim(
            "app web\n  exec /v1\n",
            "app web\n  exec /v2\n  settle 1s\n",
        );
        let starting = Seen {
            state: ReplicaState::Starting,
            restarts: 0,
        };
        s.tick(starting);
        assert_eq!(s.rollout.phase, RolloutPhase::Surging);
        s.now = s.rollout.step_deadline_ms + 1;
        let st = s.tick(starting);
        assert_eq!(s.rollout.phase, RolloutPhase::Reverting, "{st:?}");
        assert!(
            s.rollout
                .reason
                .as_deref()
                .unwrap()
                .contains("not ready within 11 s")
        );
        assert!(matches!(
            s.run_to_end(starting),
            Next::Done { reverted: true, .. }
        ));
    }

    #[test]
    fn the_operators_step_timeout_overrides_the_specs() {
        let mut s = sim(
            "app web\n  exec /v1\n",
            "app web\n  exec /v2\n  settle 1s\n",
        );
        let starting = Seen {
            state: ReplicaState::Starting,
            restarts: 0,
        };
        let rolling = BTreeSet::from(["web".to_string()]);
        let view_step = |s: &Sim, timeout: Option<u64>| {
            let d = Sched {
                apps: &s.apps,
                placements: &s.placements,
                nodes: &s.nodes,
                rolling: &rolling,
            };
            step(&View {
                app: "web",
                record: &s.apps["web"].0,
                rollout: &s.rollout,
                from_spec: &s.specs[&1],
                to_spec: &s.specs[&2],
                desired: &d,
                seen: &s.seen,
                draining_since: &s.draining,
                step_timeout_ms: timeout,
                now: s.now,
            })
        };
        let placed = view_step(&s, Some(2_000));
        let Next::Continue(r) = &placed.next else {
            panic!()
        };
        assert_eq!(
            r.step_deadline_ms,
            s.now + 2_000,
            "2 s, not the spec's 11 s"
        );
        s.tick(starting);
        s.now = 2_001;
        s.rollout.step_deadline_ms = 2_000;
        let late = view_step(&s, Some(2_000));
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
        let rolling = BTreeSet::from(["web".to_string()]);
        let d = Sched {
            apps: &s.apps,
            placements: &s.placements,
            nodes: &s.nodes,
            rolling: &rolling,
        };
        let view = View {
            app: "web",
            record: &s.apps["web"].0,
            rollout: &s.rollout,
            from_spec: &s.specs[&1],
            to_spec: &s.specs[&2],
            desired: &d,
            seen: &s.seen,
            draining_since: &s.draining,
            step_timeout_ms: None,
            now: s.now,
        };
        assert_eq!(step(&view), step(&view));
    }
}
