//! The reconciler: whenever something changes (a command, a node report, a
//! node falling silent) and at least four times a second, it plans from a
//! snapshot — the scheduler for steady apps, the rollout engine for apps in
//! a rolling update — and commits what is not empty as a system change.
//! Inside that commit the plan is computed again from the transaction's
//! view and applied only if it is the same, so the audit entry always says
//! exactly what was done. After a start nothing is planned until the
//! re-sync window closes, so a restart never places a replica twice.

use crate::desired::{self, Source};
use crate::rollout::{self, Next, Seen};
use crate::scheduler::{self, Change, NodeFit, Plan};
use crate::state::Conductor;
use skr8tr_store::records::AppRecord;
use skr8tr_store::{Outcome, Refusal, StoreError, Tx};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

const TICK: Duration = Duration::from_millis(250);

pub async fn run(c: Arc<Conductor>) {
    loop {
        tokio::select! {
            _ = c.wake.notified() => {}
            _ = tokio::time::sleep(TICK) => {}
        }
        let now = crate::now_ms();
        // Nodes fall silent without a report saying so: let registry
        // watchers recheck liveness every tick.
        c.registry_moved();
        if c.resyncing() {
            if !resync_done(&c, now) {
                continue;
            }
            c.end_resync();
            tracing::info!("re-sync complete: scheduling resumes");
        }
        let c2 = c.clone();
        let result = tokio::task::spawn_blocking(move || step(&c2, now)).await;
        match result {
            Ok(Ok(true)) => c.bump(),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => tracing::error!("reconcile failed: {e}"),
            Err(e) => tracing::error!("reconcile task failed: {e}"),
        }
    }
}

/// Every node that holds placements has reported since this start, or the
/// window is over.
fn resync_done(c: &Conductor, now: u64) -> bool {
    if now.saturating_sub(c.started_ms()) >= c.config.resync_timeout.as_millis() as u64 {
        return true;
    }
    let Ok(snap) = c.store.snapshot() else {
        return false;
    };
    let Ok(placements) = snap.placements() else {
        return false;
    };
    let nodes = c.nodes();
    placements.iter().all(|(_, p)| nodes.contains_key(&p.node))
}

/// The nodes as the scheduler sees them at `now`.
pub fn fits(c: &Conductor, now: u64) -> BTreeMap<String, NodeFit> {
    c.nodes()
        .iter()
        .map(|(name, seen)| {
            (
                name.clone(),
                NodeFit {
                    alive: c.is_alive(seen, now),
                    cpu_millis: seen.report.resources.cpu_millis,
                    ram_bytes: seen.report.resources.ram_bytes,
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

/// Plans once; commits what there is. Returns whether anything was committed.
fn step(c: &Conductor, now: u64) -> Result<bool, String> {
    let nodes = fits(c, now);
    let seen = seen(c, now);
    let step_timeout = c.config.step_timeout.map(|d| d.as_millis() as u64);
    let snap = c.store.snapshot().map_err(|e| e.to_string())?;
    let draining = {
        let stopped: BTreeSet<String> = snap
            .placements()
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|(_, p)| p.desired == skr8tr_store::records::Desired::Stop)
            .map(|(id, _)| id)
            .collect();
        let mut d = c.draining();
        d.retain(|id, _| stopped.contains(id));
        for id in stopped {
            d.entry(id).or_insert(now);
        }
        d.clone()
    };
    let plan = schedule(&snap, &nodes).map_err(|e| e.to_string())?;
    let rolling: Vec<String> = snap
        .rollouts()
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|(app, _)| app)
        .collect();
    let mut advanced = Vec::new();
    for app in &rolling {
        if let Some((s, _)) = rollout_step(&snap, app, &nodes, &seen, &draining, step_timeout, now)
            .map_err(|e| e.to_string())?
        {
            advanced.push((app.clone(), s));
        }
    }
    drop(snap);
    *c.pending() = plan.pending.clone();
    let mut committed = false;
    if !plan.changes.is_empty() {
        let nodes = nodes.clone();
        let outcome = c
            .store
            .system(plan.summary(), now, move |tx| {
                let again = schedule(tx, &nodes)?;
                if again != plan {
                    return Err(Refusal::new("stale-plan", "state changed while planning").into());
                }
                apply(tx, &again.changes)?;
                Ok(())
            })
            .map_err(|e| e.to_string())?;
        committed |= matches!(outcome, Outcome::Accepted { .. });
    }
    for (app, s) in advanced {
        let summary = rollout_summary(&app, &s);
        let (nodes, seen, draining) = (nodes.clone(), seen.clone(), draining.clone());
        let outcome = c
            .store
            .system(summary.clone(), now, move |tx| {
                let Some((again, current)) =
                    rollout_step(tx, &app, &nodes, &seen, &draining, step_timeout, now)?
                else {
                    return Err(
                        Refusal::new("stale-plan", "the rollout changed while planning").into(),
                    );
                };
                if again != s {
                    return Err(Refusal::new("stale-plan", "state changed while planning").into());
                }
                apply(tx, &again.changes)?;
                finish_step(tx, &app, current, again.next)?;
                Ok(())
            })
            .map_err(|e| e.to_string())?;
        if matches!(outcome, Outcome::Accepted { .. }) {
            tracing::info!("{summary}");
            committed = true;
        }
    }
    Ok(committed)
}

fn schedule(src: &impl Source, nodes: &BTreeMap<String, NodeFit>) -> Result<Plan, StoreError> {
    let (apps, placements) = desired::load(src)?;
    let rolling: BTreeSet<String> = src.rollouts()?.into_iter().map(|(a, _)| a).collect();
    Ok(scheduler::plan(&scheduler::Desired {
        apps: &apps,
        placements: &placements,
        nodes,
        rolling: &rolling,
    }))
}

/// The next step of `app`'s rollout, if it has one and the step does
/// anything; with the app record it applies to.
fn rollout_step(
    src: &impl Source,
    app: &str,
    nodes: &BTreeMap<String, NodeFit>,
    seen: &HashMap<(String, String), Seen>,
    draining: &HashMap<String, u64>,
    step_timeout_ms: Option<u64>,
    now: u64,
) -> Result<Option<(rollout::Step, AppRecord)>, StoreError> {
    let Some((_, record)) = src.rollouts()?.into_iter().find(|(a, _)| a == app) else {
        return Ok(None);
    };
    let (apps, placements) = desired::load(src)?;
    let Some((app_record, from_spec)) = apps.get(app) else {
        return Ok(None);
    };
    let Some(to_spec) = src.spec(app, record.to_generation)?.map(|s| s.spec) else {
        return Ok(None);
    };
    let rolling: BTreeSet<String> = src.rollouts()?.into_iter().map(|(a, _)| a).collect();
    let on_node: HashMap<String, Seen> = placements
        .iter()
        .filter_map(|(id, p)| {
            seen.get(&(id.clone(), p.node.clone()))
                .map(|s| (id.clone(), *s))
        })
        .collect();
    let d = scheduler::Desired {
        apps: &apps,
        placements: &placements,
        nodes,
        rolling: &rolling,
    };
    let s = rollout::step(&rollout::View {
        app,
        record: app_record,
        rollout: &record,
        from_spec,
        to_spec: &to_spec,
        desired: &d,
        seen: &on_node,
        draining_since: draining,
        step_timeout_ms,
        now,
    });
    Ok((!s.is_noop(&record)).then(|| (s, app_record.clone())))
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
        .summary()
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
