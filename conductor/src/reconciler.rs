//! The reconciler: whenever something changes (a command, a node report, a
//! node falling silent) and at least four times a second, it plans from a
//! snapshot and, when the plan is not empty, commits it as a system change.
//! Inside that commit the plan is computed again from the transaction's
//! view and applied only if it is the same, so the audit entry always says
//! exactly what was done. After a start nothing is scheduled until the
//! re-sync window closes, so a restart never places a replica twice.

use crate::desired;
use crate::scheduler::{self, Change, NodeFit, Plan};
use crate::state::Conductor;
use skr8tr_store::{Outcome, Refusal, Tx};
use std::collections::BTreeMap;
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
    if now.saturating_sub(c.started_ms) >= c.config.resync_timeout.as_millis() as u64 {
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

/// Plans once; commits the plan if there is one. Returns whether it did.
fn step(c: &Conductor, now: u64) -> Result<bool, String> {
    let nodes = fits(c, now);
    let snap = c.store.snapshot().map_err(|e| e.to_string())?;
    let (apps, placements) = desired::load(&snap).map_err(|e| e.to_string())?;
    drop(snap);
    let plan = scheduler::plan(&scheduler::Desired {
        apps: &apps,
        placements: &placements,
        nodes: &nodes,
    });
    *c.pending() = plan.pending.clone();
    if plan.changes.is_empty() {
        return Ok(false);
    }
    let summary = plan.summary();
    let outcome = c
        .store
        .system(summary, now, move |tx| {
            let (apps, placements) = desired::load(tx)?;
            let again = scheduler::plan(&scheduler::Desired {
                apps: &apps,
                placements: &placements,
                nodes: &nodes,
            });
            if again != plan {
                return Err(Refusal::new("stale-plan", "state changed while planning").into());
            }
            apply(tx, &again)?;
            Ok(())
        })
        .map_err(|e| e.to_string())?;
    Ok(matches!(outcome, Outcome::Accepted { .. }))
}

fn apply(tx: &mut Tx<'_>, plan: &Plan) -> Result<(), skr8tr_store::StoreError> {
    for change in &plan.changes {
        match change {
            Change::Place { replica, record }
            | Change::Move {
                replica, record, ..
            } => tx.put_placement(replica, record)?,
            Change::Remove { replica, .. } => {
                tx.remove_placement(replica)?;
            }
        }
    }
    Ok(())
}
