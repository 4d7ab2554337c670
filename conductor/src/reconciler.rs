//! The reconciler: whenever something changes (a command, a node report, a
//! node falling silent) and at least four times a second, it plans from a
//! snapshot — the scheduler for steady apps, the rollout engine for apps in
//! a rolling update — and commits what is not empty as a system change.
//! Inside that commit the plan is computed again from the transaction's
//! view and applied only if it is the same, so the audit entry always says
//! exactly what was done. After a start nothing is planned until the
//! re-sync window closes, so a restart never places a replica twice.

use crate::rollout::{self, Next, Seen};
use crate::scheduler::{self, Change, NodeFit, Plan};
use crate::source::{self, Desired};
use crate::state::Conductor;
use skr8tr_proto::code::Code;
use skr8tr_store::records::AppRecord;
use skr8tr_store::{Outcome, Refusal, StoreError, Tx};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

const TICK: Duration = Duration::from_millis(250);
/// A pass at least this often, whatever changed: a safety sweep.
const SWEEP_MS: u64 = 5_000;

pub async fn run(c: Arc<Conductor>) {
    let mut alive_before: BTreeSet<String> = BTreeSet::new();
    let mut swept = 0u64;
    let mut feed_before = c.store.feed().position();
    loop {
        let woken = tokio::select! {
            _ = c.wake.notified() => true,
            _ = tokio::time::sleep(TICK) => false,
        };
        c.index_synced().await;
        let now = c.now_ms();
        // A commit whose maker did not live to tell (a dropped handler, a
        // failed step after its commit) is found here, within a tick.
        let feed = c.store.feed().position();
        let committed = feed != feed_before;
        feed_before = feed;
        // Nodes fall silent without a report saying so.
        if committed || crate::registry::expired(&c, now) {
            c.registry_moved();
        }
        if c.resyncing() {
            if !resync_done(&c, now) {
                continue;
            }
            c.end_resync();
            tracing::info!("re-sync complete: scheduling resumes");
        }
        // A pass when something changed (a commit, a report that moved
        // something, a node lost), while time itself is what a plan waits
        // on, and as a sweep; otherwise the tick costs a set of names.
        let alive: BTreeSet<String> = {
            let nodes = c.nodes();
            nodes
                .iter()
                .filter(|(_, n)| c.is_alive(n, now))
                .map(|(name, _)| name.clone())
                .collect()
        };
        let due = woken
            || committed
            || alive != alive_before
            || waits_on_time(&c, &alive)
            || now.saturating_sub(swept) >= SWEEP_MS;
        alive_before = alive;
        if !due {
            continue;
        }
        swept = now;
        let c2 = c.clone();
        let began = std::time::Instant::now();
        // What it committed is indexed (and the nodes it touched woken) on
        // the same blocking task: O(what it wrote), off the async thread.
        let result = tokio::task::spawn_blocking(move || {
            let stepped = step(&c2, now);
            if let Ok(true) = stepped {
                let planned = began.elapsed();
                c2.bump();
                slow_pass(planned, began.elapsed());
            }
            stepped
        })
        .await;
        match result {
            Ok(Ok(committed)) => c.metrics.pass(committed),
            Ok(Err(e)) => crate::throttle::RECONCILE.warn(&e),
            Err(e) => tracing::error!("reconcile task failed: {e}"),
        }
    }
}

/// A pass that committed and took long enough for an operator to wonder
/// (a large `up`, a slow disk) says where its time went.
fn slow_pass(stepped: Duration, total: Duration) {
    if total >= SLOW_PASS {
        tracing::info!(
            "slow reconciler pass: {} ms to plan and commit, {} ms to index it and wake nodes",
            stepped.as_millis(),
            (total - stepped).as_millis()
        );
    }
}

const SLOW_PASS: Duration = Duration::from_millis(200);

/// Whether a plan may be waiting on time alone: a rollout (step
/// deadlines), a drain (removal after the registry drain), a placement on
/// a node not alive (the lost-node timeout, `stop-after` waits).
fn waits_on_time(c: &Conductor, alive: &BTreeSet<String>) -> bool {
    if !c.draining().is_empty() {
        return true;
    }
    match c.index.desired(&c.store) {
        Ok(d) => {
            !d.rollouts.is_empty() || c.index.placed_nodes().iter().any(|n| !alive.contains(n))
        }
        Err(_) => true,
    }
}

/// Every node that holds placements has reported since this start, or the
/// window is over.
fn resync_done(c: &Conductor, now: u64) -> bool {
    if now.saturating_sub(c.started_ms()) >= c.config.resync_timeout.as_millis() as u64 {
        return true;
    }
    if c.index.sync(&c.store).is_err() {
        return false;
    }
    let placed = c.index.placed_nodes();
    let nodes = c.nodes();
    placed.iter().all(|n| nodes.contains_key(n))
}

/// Every reported node as the scheduler sees it at `now`: alive or lost,
/// and what it offers.
pub fn schedulable_nodes(c: &Conductor, now: u64) -> BTreeMap<String, NodeFit> {
    c.nodes()
        .iter()
        .map(|(name, seen)| {
            (
                name.clone(),
                NodeFit {
                    alive: c.is_alive(seen, now),
                    schedulable: !seen.report.leaving,
                    silent_ms: now.saturating_sub(seen.last_ms),
                    cpu_millis: seen.report.resources.cpu_millis,
                    ram_bytes: seen.report.resources.ram_bytes,
                    labels: seen.report.labels.clone(),
                    wasm: seen.report.wasm,
                },
            )
        })
        .collect()
}

/// What live nodes report of each replica (on the node it is placed on).
pub fn seen(c: &Conductor, now: u64) -> HashMap<(String, String), Seen> {
    let mut out = HashMap::new();
    for (name, node) in c.nodes().iter() {
        if !c.is_alive(node, now) {
            continue;
        }
        for r in &node.report.replicas {
            out.insert(
                (r.replica.clone(), name.clone()),
                Seen {
                    state: r.state,
                    restarts: r.restarts,
                },
            );
        }
    }
    out
}

/// Plans once from the in-memory desired state; commits what there is,
/// each plan checked again inside its commit against the transaction's own
/// view. Returns whether anything was committed.
pub(crate) fn step(c: &Conductor, now: u64) -> Result<bool, String> {
    let nodes = schedulable_nodes(c, now);
    let seen = seen(c, now);
    let step_timeout = c.config.step_timeout.map(|d| d.as_millis() as u64);
    let d = c.index.desired(&c.store).map_err(|e| e.to_string())?;
    let draining = {
        let stopped: BTreeSet<&String> = d
            .placements
            .iter()
            .filter(|(_, p)| p.desired == skr8tr_store::records::DesiredStatus::Stop)
            .map(|(id, _)| id)
            .collect();
        let mut dr = c.draining();
        dr.retain(|id, _| stopped.contains(id));
        for id in stopped {
            dr.entry(id.clone()).or_insert(now);
        }
        dr.clone()
    };
    // A node placements name but no report has reached since this start
    // (cut off, frozen): lost, silent for at least as long as this
    // conductor has run — not forever, which would end a `stop-after`
    // wait at once.
    let mut nodes = nodes;
    for node in c.index.placed_nodes() {
        nodes.entry(node).or_insert_with(|| NodeFit {
            alive: false,
            schedulable: false,
            silent_ms: now.saturating_sub(c.started_ms()),
            cpu_millis: 0,
            ram_bytes: 0,
            labels: Vec::new(),
            wasm: false,
        });
    }
    let began = std::time::Instant::now();
    let plan = schedule(&d, &nodes, &seen, &draining, now);
    let planned = began.elapsed();
    let mut advanced = Vec::new();
    for app in d.rollouts.keys() {
        if let Some((s, _)) = rollout_step(&d, app, &nodes, &seen, &draining, step_timeout, now) {
            advanced.push((app.clone(), s));
        }
    }
    drop(d);
    *c.unplaced() = plan.unplaced.clone();
    let mut committed = false;
    if !plan.changes.is_empty() {
        let (plan_len, nodes_len) = (plan.changes.len(), nodes.len());
        let (nodes, seen, draining) = (nodes.clone(), seen.clone(), draining.clone());
        let outcome = c
            .store
            .system(plan.summary(), plan.apps(), now, move |tx| {
                let again = schedule(&Desired::load(tx)?, &nodes, &seen, &draining, now);
                if again != plan {
                    return Err(
                        Refusal::new(Code::StalePlan, "state changed while planning").into(),
                    );
                }
                apply(tx, &again.changes)?;
                Ok(())
            })
            .map_err(|e| e.to_string())?;
        committed |= accepted(outcome, "schedule");
        if began.elapsed() >= SLOW_PASS {
            tracing::info!(
                "slow schedule: {} changes over {} nodes planned in {} ms, committed in {} ms",
                plan_len,
                nodes_len,
                planned.as_millis(),
                (began.elapsed() - planned).as_millis()
            );
        }
    }
    for (app, s) in advanced {
        let summary = rollout_summary(&app, &s);
        let (nodes, seen, draining) = (nodes.clone(), seen.clone(), draining.clone());
        let outcome = c
            .store
            .system(summary.clone(), vec![app.clone()], now, move |tx| {
                let d = Desired::load(tx)?;
                let Some((again, current)) =
                    rollout_step(&d, &app, &nodes, &seen, &draining, step_timeout, now)
                else {
                    return Err(Refusal::new(
                        Code::StalePlan,
                        "the rollout changed while planning",
                    )
                    .into());
                };
                if again != s {
                    return Err(
                        Refusal::new(Code::StalePlan, "state changed while planning").into(),
                    );
                }
                apply(tx, &again.changes)?;
                finish_step(tx, &app, current, again.next)?;
                Ok(())
            })
            .map_err(|e| e.to_string())?;
        if accepted(outcome, &summary) {
            tracing::info!("{summary}");
            committed = true;
        }
    }
    Ok(committed)
}

/// Whether a planned change was committed. A plan found stale inside its
/// commit (state moved between planning and committing) is dropped and
/// planned again on the next pass: worth a debug line, not an error.
fn accepted(outcome: Outcome<()>, what: &str) -> bool {
    match outcome {
        Outcome::Accepted { .. } => true,
        Outcome::Rejected { refusal, .. } => {
            tracing::debug!(code = %refusal.code, "{what}: not committed: {}", refusal.message);
            false
        }
    }
}

fn schedule(
    d: &Desired,
    nodes: &BTreeMap<String, NodeFit>,
    seen: &HashMap<(String, String), Seen>,
    draining: &HashMap<String, u64>,
    now: u64,
) -> Plan {
    let rolling = d.rolling();
    let nodes = d.with_cordons(nodes);
    let observed = scheduler::Observed {
        seen: on_their_node(&d.placements, seen),
        draining_since: draining.clone(),
        reported: seen.keys().map(|(id, _)| id.clone()).collect(),
        now,
    };
    scheduler::plan(&scheduler::ClusterView {
        apps: &d.apps,
        placements: &d.placements,
        nodes: &nodes,
        rolling: &rolling,
        observed: &observed,
    })
}

/// What each placement's own node reports of it.
fn on_their_node(
    placements: &source::Placements,
    seen: &HashMap<(String, String), Seen>,
) -> HashMap<String, Seen> {
    placements
        .iter()
        .filter_map(|(id, p)| {
            seen.get(&(id.clone(), p.node.clone()))
                .map(|s| (id.clone(), *s))
        })
        .collect()
}

/// The next step of `app`'s rollout, if it has one and the step does
/// anything; with the app record it applies to.
fn rollout_step(
    d: &Desired,
    app: &str,
    nodes: &BTreeMap<String, NodeFit>,
    seen: &HashMap<(String, String), Seen>,
    draining: &HashMap<String, u64>,
    step_timeout_ms: Option<u64>,
    now: u64,
) -> Option<(rollout::Step, AppRecord)> {
    let record = d.rollouts.get(app)?;
    let (app_record, from_spec) = d.apps.get(app)?;
    let to_spec = d.spec(app, record.to_generation)?;
    let rolling = d.rolling();
    let on_node = on_their_node(&d.placements, seen);
    let nodes = d.with_cordons(nodes);
    let observed = scheduler::Observed::default();
    let view = scheduler::ClusterView {
        apps: &d.apps,
        placements: &d.placements,
        nodes: &nodes,
        rolling: &rolling,
        observed: &observed,
    };
    let s = rollout::step(&rollout::View {
        app,
        record: app_record,
        rollout: record,
        from_spec,
        to_spec,
        desired: &view,
        seen: &on_node,
        draining_since: draining,
        step_timeout_ms,
        now,
    });
    (!s.is_noop(record)).then(|| (s, app_record.clone()))
}

fn finish_step(
    tx: &mut Tx<'_>,
    app: &str,
    mut record: AppRecord,
    next: Next,
) -> Result<(), StoreError> {
    match next {
        Next::Continue(r) => tx.put_rollout(app, &r),
        Next::Done {
            generation,
            previous,
            ..
        } => {
            tx.remove_rollout(app)?;
            record.generation = generation;
            record.previous_generation = previous;
            tx.put_app(app, &record)
        }
    }
}

fn rollout_summary(app: &str, s: &rollout::Step) -> String {
    let detail = s.note.clone().unwrap_or_else(|| {
        Plan {
            changes: s.changes.clone(),
            ..Plan::default()
        }
        .describe()
    });
    format!("rollout {app}: {detail}")
}

fn apply(tx: &mut Tx<'_>, changes: &[Change]) -> Result<(), StoreError> {
    for change in changes {
        match change {
            Change::Place { replica, record }
            | Change::Move {
                replica, record, ..
            }
            | Change::Update { replica, record } => tx.put_placement(replica, record)?,
            Change::Remove { replica, .. } => {
                tx.remove_placement(replica)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Harness;
    use skr8tr_proto::command::Command;
    use skr8tr_proto::wire::ReplicaState;

    const WEB: &str = "app web\n  exec /bin/web\n  replicas 3\n";

    #[test]
    fn a_pass_places_on_live_nodes_then_has_nothing_to_do() {
        let h = Harness::new("rec-place");
        h.up(WEB);
        // No node yet: nothing placed, and status learns why.
        assert!(!step(&h.c, h.now()).unwrap());
        assert!(h.c.unplaced()["web"].contains("no live node"));
        h.report("n1", &[]);
        h.report("n2", &[]);
        assert!(step(&h.c, h.now()).unwrap(), "committed a plan");
        let nodes: Vec<String> = h.placements().into_iter().map(|(_, n)| n).collect();
        assert_eq!(nodes, ["n1", "n2", "n1"]);
        assert!(h.c.unplaced().is_empty());
        assert!(
            !step(&h.c, h.now()).unwrap(),
            "a second pass changes nothing"
        );
        let last = h.history().pop().unwrap();
        assert_eq!(
            last,
            "schedule: placed web/1/0 on n1; placed web/1/1 on n2; placed web/1/2 on n1"
        );
    }

    #[test]
    fn replicas_of_a_silent_node_move_once_it_is_lost() {
        let h = Harness::new("rec-lost");
        h.up(WEB);
        h.report("n1", &[]);
        h.report("n2", &[]);
        step(&h.c, h.now()).unwrap();
        // n2 keeps reporting; n1 falls silent past the lost-node timeout.
        h.advance(Duration::from_secs(6));
        h.report("n2", &[]);
        let fits = schedulable_nodes(&h.c, h.now());
        assert!(!fits["n1"].alive && fits["n2"].alive);
        assert!(step(&h.c, h.now()).unwrap());
        assert!(h.placements().iter().all(|(_, n)| n == "n2"));
        assert!(
            h.history()
                .pop()
                .unwrap()
                .contains("from lost node n1 to n2")
        );
    }

    #[test]
    fn the_resync_window_closes_once_every_placed_node_reported_or_at_its_timeout() {
        let h = Harness::new("rec-resync");
        h.up(WEB);
        h.report("n1", &[]);
        step(&h.c, h.now()).unwrap();
        // As after a restart: no node has reported to this conductor yet.
        h.c.nodes().clear();
        h.c.mark_serving(h.now());
        assert!(!resync_done(&h.c, h.now()));
        h.report("n1", &[]);
        assert!(
            resync_done(&h.c, h.now()),
            "every node with placements reported"
        );
        h.c.nodes().clear();
        h.advance(Duration::from_secs(5));
        assert!(resync_done(&h.c, h.now()), "the window's timeout passed");
    }

    #[test]
    fn a_rollout_steps_from_what_nodes_report() {
        let h = Harness::new("rec-rollout");
        h.up("app web\n  exec /bin/v1\n  replicas 1\n  health { check tcp }\n");
        h.report("n1", &[]);
        step(&h.c, h.now()).unwrap();
        h.report("n1", &[("web/1/0", ReplicaState::Ready, Some(20000))]);
        h.ok(Command::Rollout {
            file: "t".into(),
            manifest: "app web\n  exec /bin/v2\n  replicas 1\n  health { check tcp }\n".into(),
        });
        assert!(step(&h.c, h.now()).unwrap());
        assert!(
            h.history()
                .pop()
                .unwrap()
                .starts_with("rollout web: step 1/1: surge web/2/0 on n1"),
            "{:?}",
            h.history()
        );
        // Not ready yet: nothing to do.
        assert!(!step(&h.c, h.now()).unwrap());
        h.report(
            "n1",
            &[
                ("web/1/0", ReplicaState::Ready, Some(20000)),
                ("web/2/0", ReplicaState::Ready, Some(20001)),
            ],
        );
        assert!(step(&h.c, h.now()).unwrap());
        assert_eq!(
            h.history().pop().unwrap(),
            "rollout web: step 1/1: web/2/0 ready; draining web/1/0"
        );
        // The drained replica is removed after its registry drain, then the
        // rollout is done and the app is on generation 2.
        step(&h.c, h.now()).unwrap();
        h.advance(Duration::from_millis(rollout::REGISTRY_DRAIN_MS));
        h.report("n1", &[("web/2/0", ReplicaState::Ready, Some(20001))]);
        for _ in 0..3 {
            step(&h.c, h.now()).unwrap();
        }
        let snap = h.c.store.snapshot().unwrap();
        assert!(snap.rollout("web").unwrap().is_none());
        assert_eq!(snap.app("web").unwrap().unwrap().generation, 2);
        assert_eq!(h.placements(), [("web/2/0".to_string(), "n1".to_string())]);
    }
}
