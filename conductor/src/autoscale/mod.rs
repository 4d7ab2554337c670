//! The autoscaler: apps with a `scale { }` block get more replicas when
//! their CPU stays above `cpu-above` and fewer when it stays below
//! `cpu-below`, never leaving `[min, max]`.
//!
//! - [`decide`] is pure: the scale block, a window of CPU samples, the
//!   current count, the last change and now give the next count (or none)
//!   and the reason, as Kubernetes' HPA does: `ceil(current × usage /
//!   target)`, capped per step.
//! - [`run`] samples every [`SAMPLE_EVERY`]: each app's average CPU over its
//!   ready replicas on live nodes, as a share of its `cpus` (one core when
//!   unset), from the nodes' reports. A change is a system command in the
//!   audit log (`autoscale api 2 -> 4: cpu 93% > 80% for 10s`) and the
//!   app's desired count in the store.
//! - Nothing of it is durable but the desired count: after a restart the
//!   windows fill again from fresh reports, and the cooldown counts from the
//!   start (a restart never triggers a change by itself). A rolling update
//!   pauses its app's autoscaling and empties its window.

use crate::state::Conductor;
use skr8tr_proto::manifest::Scale;
use skr8tr_proto::wire::ReplicaState;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

/// Scale out once CPU has stayed above `cpu-above` this long.
pub const OUT_AFTER: Duration = Duration::from_secs(10);
/// Scale in once CPU has stayed below `cpu-below` this long.
pub const IN_AFTER: Duration = Duration::from_secs(60);
/// No change sooner than this after the last one.
pub const COOLDOWN: Duration = Duration::from_secs(30);
/// How often each app's CPU is sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// One step at most doubles the count (at least +1) or halves it.
pub const MAX_STEP_FACTOR: u32 = 2;

/// The autoscaler's windows, from `skr8tr conductor` flags (tests shorten
/// them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Windows {
    pub out_after: Duration,
    pub in_after: Duration,
    pub cooldown: Duration,
}

impl Default for Windows {
    fn default() -> Windows {
        Windows {
            out_after: OUT_AFTER,
            in_after: IN_AFTER,
            cooldown: COOLDOWN,
        }
    }
}

/// CPU samples of one app: (Unix ms, percent of its CPU share).
pub type Window = VecDeque<(u64, u32)>;

/// What [`decide`] concluded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Change the count to `replicas`; `reason` is what was seen.
    Scale { replicas: u32, reason: String },
    /// No change; why, for `status`.
    Hold(String),
}

/// The next replica count of an app, or why it stays.
pub fn decide(
    scale: &Scale,
    window: &Window,
    current: u32,
    last_change_ms: u64,
    now_ms: u64,
    w: Windows,
) -> Decision {
    let ms = |d: Duration| d.as_millis() as u64;
    let (min, max) = (scale.min, scale.max.max(scale.min));
    if current < min || current > max {
        let replicas = current.clamp(min, max);
        return Decision::Scale {
            replicas,
            reason: format!("{current} is outside its range {min}-{max}"),
        };
    }
    let Some(&(_, latest)) = window.back() else {
        return Decision::Hold("no CPU figures yet".into());
    };
    let since = now_ms.saturating_sub(last_change_ms);
    if since < ms(w.cooldown) {
        return Decision::Hold(format!(
            "cooldown, {}s left (cpu {latest}%)",
            (ms(w.cooldown) - since).div_ceil(1000)
        ));
    }
    // Whether every sample of the last `span` satisfies `cond`, and the
    // window reaches back that far; then their average.
    let held = |span: Duration, cond: &dyn Fn(u32) -> bool| -> Option<u32> {
        let from = now_ms.checked_sub(ms(span))?;
        let oldest = window.front()?.0;
        if oldest > from {
            return None;
        }
        let recent: Vec<u32> = window
            .iter()
            .filter(|(t, _)| *t >= from)
            .map(|(_, v)| *v)
            .collect();
        (!recent.is_empty() && recent.iter().all(|v| cond(*v))).then(|| {
            (recent.iter().map(|v| u64::from(*v)).sum::<u64>() / recent.len() as u64) as u32
        })
    };
    let above = u32::from(scale.cpu_above).max(1);
    let below = u32::from(scale.cpu_below);
    if current < max
        && let Some(avg) = held(w.out_after, &|v| v > above)
    {
        let wanted = (u64::from(current) * u64::from(avg)).div_ceil(u64::from(above)) as u32;
        let cap = (current * MAX_STEP_FACTOR).max(current + 1);
        let replicas = wanted.clamp(current + 1, cap).min(max);
        return Decision::Scale {
            replicas,
            reason: format!(
                "cpu {avg}% > {above}% for {}s",
                w.out_after.as_secs_f64().round()
            ),
        };
    }
    if current > min
        && let Some(avg) = held(w.in_after, &|v| v < below)
    {
        let wanted = (u64::from(current) * u64::from(avg)).div_ceil(u64::from(above)) as u32;
        let floor = current.div_ceil(MAX_STEP_FACTOR);
        let replicas = wanted.clamp(floor, current - 1).max(min);
        return Decision::Scale {
            replicas,
            reason: format!(
                "cpu {avg}% < {below}% for {}s",
                w.in_after.as_secs_f64().round()
            ),
        };
    }
    Decision::Hold(format!("cpu {latest}%, within {below}-{above}%"))
}

/// What `status` shows of an app's autoscaling.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct View {
    /// The current decision: `cpu 45%, within 20-80%`, `paused: rollout`.
    pub decision: String,
    /// The last change this conductor made, with its time (Unix ms).
    pub last_change: Option<(u64, String)>,
}

/// Per-app state kept in memory.
#[derive(Debug, Default)]
pub struct State {
    windows: BTreeMap<String, Window>,
    last_change: BTreeMap<String, u64>,
    pub views: BTreeMap<String, View>,
}

/// Samples and decides every [`SAMPLE_EVERY`], until the process ends.
pub async fn run(c: Arc<Conductor>) {
    loop {
        tokio::time::sleep(SAMPLE_EVERY).await;
        if c.resyncing() {
            continue;
        }
        let c2 = c.clone();
        let passed = tokio::task::spawn_blocking(move || {
            let passed = pass(&c2);
            if let Ok(true) = passed {
                c2.bump();
            }
            passed
        });
        match passed.await {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => {}
            Ok(Err(e)) => crate::throttle::AUTOSCALE.warn(&e),
            Err(e) => tracing::error!("autoscale task failed: {e}"),
        }
    }
}

/// One pass: sample, decide, commit. Returns whether a change committed.
pub(crate) fn pass(c: &Conductor) -> Result<bool, String> {
    let now = c.now_ms();
    let longest = c
        .config
        .autoscale
        .out_after
        .max(c.config.autoscale.in_after);
    let keep_from = now.saturating_sub(longest.as_millis() as u64 + 2000);
    let snap = c.store.snapshot().map_err(|e| e.to_string())?;
    let usage = cpu_by_replica(c, now);
    let mut changes = Vec::new();
    {
        let mut state = c.autoscale();
        let apps = snap.apps().map_err(|e| e.to_string())?;
        state
            .windows
            .retain(|app, _| apps.iter().any(|(a, _)| a == app));
        state
            .views
            .retain(|app, _| apps.iter().any(|(a, _)| a == app));
        for (name, app) in apps {
            let Some(spec) = snap
                .spec(&name, app.generation)
                .map_err(|e| e.to_string())?
            else {
                continue;
            };
            let Some(scale) = spec.spec.scale.clone() else {
                state.windows.remove(&name);
                state.views.remove(&name);
                continue;
            };
            if app.status != skr8tr_store::records::AppStatus::Active {
                continue;
            }
            if snap.rollout(&name).map_err(|e| e.to_string())?.is_some() {
                state.windows.remove(&name);
                state.views.entry(name.clone()).or_default().decision =
                    "paused: a rollout is in progress".into();
                continue;
            }
            let share = f64::from(spec.spec.cpu_millis.unwrap_or(1000).max(1));
            let samples: Vec<u64> = snap
                .placements_of(&name)
                .map_err(|e| e.to_string())?
                .iter()
                .filter(|(_, p)| p.desired == skr8tr_store::records::DesiredStatus::Run)
                .filter_map(|(id, p)| usage.get(&(id.clone(), p.node.clone())).copied())
                .collect();
            let window = state.windows.entry(name.clone()).or_default();
            if !samples.is_empty() {
                let avg = samples.iter().sum::<u64>() as f64 / samples.len() as f64;
                window.push_back((now, (avg * 100.0 / share).round() as u32));
            }
            while window.front().is_some_and(|(t, _)| *t < keep_from) {
                window.pop_front();
            }
            let last = state
                .last_change
                .get(&name)
                .copied()
                .unwrap_or(c.started_ms());
            let window = state.windows.get(&name).cloned().unwrap_or_default();
            let decision = decide(&scale, &window, app.replicas, last, now, c.config.autoscale);
            let view = state.views.entry(name.clone()).or_default();
            match decision {
                Decision::Hold(why) => view.decision = why,
                Decision::Scale { replicas, reason } => {
                    view.decision = format!("scaling to {replicas}: {reason}");
                    changes.push((name, app.replicas, replicas, reason));
                }
            }
        }
    }
    drop(snap);
    let mut committed = false;
    for (app, from, to, reason) in changes {
        let summary = format!("autoscale {app} {from} -> {to}: {reason}");
        let name = app.clone();
        let outcome = c
            .store
            .system(summary.clone(), vec![app.clone()], now, move |tx| {
                let record = tx.app(&name)?;
                if record.as_ref().map(|r| r.replicas) != Some(from) {
                    return Err(skr8tr_store::Refusal::new(
                        skr8tr_proto::code::Code::StalePlan,
                        "the app changed while deciding",
                    )
                    .into());
                }
                crate::commands::scale_to(tx, &name, to)
            })
            .map_err(|e| e.to_string())?;
        if let skr8tr_store::Outcome::Accepted { .. } = outcome {
            tracing::info!("{summary}");
            let mut state = c.autoscale();
            state.last_change.insert(app.clone(), now);
            state.windows.remove(&app);
            let view = state.views.entry(app).or_default();
            view.last_change = Some((now, summary));
            committed = true;
        }
    }
    Ok(committed)
}

/// CPU of each replica on a live node, thousandths of a core, by (replica,
/// node); only replicas that are ready.
fn cpu_by_replica(c: &Conductor, now: u64) -> BTreeMap<(String, String), u64> {
    let mut out = BTreeMap::new();
    for (name, node) in c.nodes().iter() {
        if !c.is_alive(node, now) {
            continue;
        }
        for r in &node.report.replicas {
            if r.state == ReplicaState::Ready {
                out.insert((r.replica.clone(), name.clone()), r.cpu_millis);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
