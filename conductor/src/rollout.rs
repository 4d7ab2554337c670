//! The rollout engine: one pure step of an app's rolling update, from the
//! durable rollout record, the placements and what nodes report, to the
//! next placements and record. No clock, no randomness: a conductor killed
//! at any point recomputes the same step from the same state.
//!
//! One step `k` of `N`, surge mode: place new replica `k` (`to/k`) —
//! [`surge`] — wait until it is ready, then drain one old replica (desired
//! `Stop`: it leaves the registry but keeps running) and go on to `k + 1`
//! at once — [`replace`]. After the last step, [`finish`] waits for the
//! last drains (phase `Draining`) and moves the app to the new generation. A drained
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
use skr8tr_store::records::{
    AppRecord, DesiredStatus, PlacementRecord, RolloutPhase, RolloutRecord,
};
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
    pub desired: &'a scheduler::ClusterView<'a>,
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

/// One step of `v.app`'s rollout: reverting, or [`finish`] once every
/// replica was replaced, or [`surge`] the next new replica, or [`replace`]
/// an old one by it once it is ready.
pub fn step(v: &View<'_>) -> Step {
    if v.rollout.phase == RolloutPhase::Reverting {
        return revert(v);
    }
    let s = Surge::new(v);
    let k = s.rec.step;
    if k >= s.n {
        return finish(s);
    }
    let new_id = replica_id(v.app, s.to, k);
    let placed = v
        .desired
        .placements
        .get(&new_id)
        .filter(|p| p.generation == s.to);
    match placed {
        // Its node was lost: it will never be ready there. Place it again
        // where the scheduler would now, with a fresh deadline, instead of
        // sitting the step's out and reverting.
        Some(p) if !v.desired.nodes.get(&p.node).is_some_and(|n| n.alive) => {
            let lost = p.node.clone();
            // An app that must never run twice waits until its node has
            // stopped it by itself (`disconnect { stop-after }`).
            let silent = v
                .desired
                .nodes
                .get(&p.node)
                .map_or(u64::MAX, |n| n.silent_ms);
            if scheduler::stop_after_wait_ms(v.to_spec).is_some_and(|wait| silent < wait) {
                return s.next(RolloutPhase::Surging, None);
            }
            let mut step = surge(s, new_id);
            if let Some(note) = &mut step.note {
                *note = format!("node {lost} lost; {note}");
            }
            step
        }
        Some(_) => replace(s, new_id),
        None => surge(s, new_id),
    }
}

/// What every step of the forward direction works from.
struct Surge<'v, 'a> {
    v: &'v View<'a>,
    n: u32,
    from: u64,
    to: u64,
    /// The record as this step leaves it.
    rec: RolloutRecord,
    /// Removals of drained old replicas, then whatever the step adds.
    changes: Vec<Change>,
    /// Old replicas still desired `Run`.
    old_running: Vec<(&'v String, &'v PlacementRecord)>,
    /// Old replicas draining that are not removed by this step.
    draining_left: bool,
    /// How many old replicas must keep running once step `k` is done.
    keep_old: usize,
}

impl<'v, 'a> Surge<'v, 'a> {
    fn new(v: &'v View<'a>) -> Surge<'v, 'a> {
        let from = v.rollout.from_generation;
        let mine = |desired: DesiredStatus| -> Vec<(&'v String, &'v PlacementRecord)> {
            v.desired
                .placements
                .iter()
                .filter(|(_, p)| p.app == v.app && p.generation == from && p.desired == desired)
                .collect()
        };
        let changes = remove_drained(v, from);
        let draining_left = mine(DesiredStatus::Stop).len() > changes.len();
        let n = v.record.replicas;
        Surge {
            v,
            n,
            from,
            to: v.rollout.to_generation,
            rec: v.rollout.clone(),
            old_running: mine(DesiredStatus::Run),
            draining_left,
            keep_old: n.saturating_sub(v.rollout.step + 1) as usize,
            changes,
        }
    }

    /// Drains the old replica with the highest index; its id.
    fn drain_one(&mut self) -> Option<String> {
        let (id, p) = self.old_running.iter().max_by_key(|(_, p)| p.index)?;
        self.changes.push(Change::Update {
            replica: (*id).clone(),
            record: PlacementRecord {
                desired: DesiredStatus::Stop,
                ..(*p).clone()
            },
        });
        Some((*id).clone())
    }

    fn more_old_than_needed(&self) -> bool {
        self.old_running.len() > self.keep_old
    }

    fn next(mut self, phase: RolloutPhase, note: Option<String>) -> Step {
        self.rec.phase = phase;
        Step {
            changes: self.changes,
            next: Next::Continue(self.rec),
            note,
        }
    }
}

/// Step `k` has no new replica yet: place `to/k` where the scheduler would;
/// where no node can take it (a static port held everywhere), drain an old
/// replica first so its port frees (replace mode); revert if neither is
/// possible by the deadline.
fn surge(mut s: Surge<'_, '_>, new_id: String) -> Step {
    let (v, k, n) = (s.v, s.rec.step, s.n);
    if let Some(record) = scheduler::place_one(v.desired, v.app, v.to_spec, s.to, k) {
        let note = format!("step {}/{n}: surge {new_id} on {}", k + 1, record.node);
        s.changes.push(Change::Place {
            replica: new_id,
            record,
        });
        s.rec.step_deadline_ms = v.now + timeout(v);
        return s.next(RolloutPhase::Surging, Some(note));
    }
    if s.more_old_than_needed() {
        // Replace mode: the old replica's port frees once it is removed
        // after its drain; the new one is placed then.
        let note = s.drain_one().map(|id| {
            format!(
                "step {}/{n}: no room to surge (static port); draining {id} first",
                k + 1
            )
        });
        s.rec.step_deadline_ms = v.now + REGISTRY_DRAIN_MS + timeout(v);
        return s.next(RolloutPhase::Surging, note);
    }
    if !s.draining_left && v.now > s.rec.step_deadline_ms {
        return start_revert(v, s.rec, s.changes, format!("no node can take {new_id}"));
    }
    s.next(RolloutPhase::Surging, None)
}

/// Step `k`'s new replica is placed: once it is ready, drain one old
/// replica (if more run than the steps left need) and go on to `k + 1`;
/// if it crashed or missed its deadline, revert.
fn replace(mut s: Surge<'_, '_>, new_id: String) -> Step {
    let (v, k, n) = (s.v, s.rec.step, s.n);
    match v.seen.get(&new_id) {
        Some(seen) if seen.state == ReplicaState::Ready => {
            let drained = if s.more_old_than_needed() {
                s.drain_one()
            } else {
                None
            };
            s.rec.step = k + 1;
            s.rec.step_deadline_ms = v.now + timeout(v);
            let note = match drained {
                Some(id) => format!("step {}/{n}: {new_id} ready; draining {id}", k + 1),
                None => format!("step {}/{n}: {new_id} ready", k + 1),
            };
            s.next(RolloutPhase::Surging, Some(note))
        }
        Some(seen) if crashed(seen) => {
            let why = format!(
                "{new_id} crashed ({}, {} restarts)",
                seen.state.label(),
                seen.restarts
            );
            start_revert(v, s.rec, s.changes, why)
        }
        _ if v.now > s.rec.step_deadline_ms => {
            let secs = timeout(v) / 1000;
            let why = format!("{new_id} was not ready within {secs} s");
            start_revert(v, s.rec, s.changes, why)
        }
        _ => s.next(RolloutPhase::Surging, None),
    }
}

/// Every step is done: drain old replicas still running (the app was
/// scaled down mid-way), wait for the drains to end (phase `Draining`),
/// then the app runs the new generation.
fn finish(mut s: Surge<'_, '_>) -> Step {
    if !s.old_running.is_empty() {
        let note = s.drain_one().map(|id| format!("draining {id}"));
        return s.next(RolloutPhase::Draining, note);
    }
    if s.draining_left {
        let note = (s.v.rollout.phase != RolloutPhase::Draining).then(|| {
            format!(
                "all {} new replicas ready; the last old ones are draining",
                s.n
            )
        });
        return s.next(RolloutPhase::Draining, note);
    }
    let note = format!("all {} replicas on generation {}", s.n, s.to);
    done(s.changes, s.to, Some(s.from), false, note)
}

/// Removes this app's `generation` replicas that have drained long enough.
fn remove_drained(v: &View<'_>, generation: u64) -> Vec<Change> {
    v.desired
        .placements
        .iter()
        .filter(|(_, p)| {
            p.app == v.app && p.generation == generation && p.desired == DesiredStatus::Stop
        })
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
    s.restarts > 0
        || matches!(
            s.state,
            ReplicaState::Backoff
                | ReplicaState::Exited { .. }
                | ReplicaState::OomKilled
                | ReplicaState::BuildFailed
                | ReplicaState::StartFailed
        )
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
            Some(p) if p.desired == DesiredStatus::Stop => {
                changes.push(Change::Update {
                    replica: id.clone(),
                    record: PlacementRecord {
                        desired: DesiredStatus::Run,
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
            .filter(|(_, p)| p.desired == DesiredStatus::Run)
            .collect();
        if !running.is_empty() {
            for (id, p) in running {
                changes.push(Change::Update {
                    replica: (*id).clone(),
                    record: PlacementRecord {
                        desired: DesiredStatus::Stop,
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
#[path = "rollout_tests.rs"]
mod tests;
