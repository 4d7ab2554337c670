//! The conductor's Prometheus metrics (`--metrics-listen`): counters the
//! API and the reconciler move as they act, and gauges set from desired
//! and observed state at each scrape.
//!
//! Label values come from closed sets (command kinds, refusal codes, node
//! states, rollout phases), never from what a client sent, so no request
//! can grow the page.

use crate::state::Conductor;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use skr8tr_net::metrics::{Exposition, Registry};
use skr8tr_store::records::RolloutPhase;
use std::sync::{Arc, Weak};
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommandLabels {
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabel {
    phase: &'static str,
}

/// What the conductor counts as it goes.
pub struct Metrics {
    commands: Family<CommandLabels, Counter>,
    refusals: Family<CodeLabel, Counter>,
    commit_seconds: Histogram,
    passes: Counter,
    pass_commits: Counter,
    nodes: Family<StateLabel, Gauge>,
    rollouts: Family<PhaseLabel, Gauge>,
    placements: Gauge,
    apps: Gauge,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            commands: Family::default(),
            refusals: Family::default(),
            // 0.5 ms to ~8 s: an fsync'd commit on a fast disk to a stalled one.
            commit_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 15)),
            passes: Counter::default(),
            pass_commits: Counter::default(),
            nodes: Family::default(),
            rollouts: Family::default(),
            placements: Gauge::default(),
            apps: Gauge::default(),
        }
    }
}

impl Metrics {
    /// A command request answered: its kind (`unverified` when its sender
    /// proved no key), accepted or refused, and the refusal's code.
    pub fn command(&self, kind: Option<&'static str>, code: Option<&str>) {
        let outcome = if code.is_some() {
            "refused"
        } else {
            "accepted"
        };
        let kind = kind.unwrap_or("unverified");
        self.commands
            .get_or_create(&CommandLabels { kind, outcome })
            .inc();
        if let Some(code) = code {
            self.refusals
                .get_or_create(&CodeLabel {
                    code: code.to_string(),
                })
                .inc();
        }
    }

    /// A command's commit (effect and audit entry, fsync'd) took `took`.
    pub fn commit(&self, took: Duration) {
        self.commit_seconds.observe(took.as_secs_f64());
    }

    /// A reconciler pass ran; `committed` when it changed placements.
    pub fn pass(&self, committed: bool) {
        self.passes.inc();
        if committed {
            self.pass_commits.inc();
        }
    }

    /// The registry to serve, its gauges refreshed from `c` at each
    /// scrape (held weakly: the page does not keep a stopped conductor).
    pub fn exposition(c: &Arc<Conductor>) -> Exposition {
        let m = &c.metrics;
        let mut r = Registry::with_prefix("skr8tr_conductor");
        r.register(
            "commands",
            "Command requests answered, by command kind and outcome",
            m.commands.clone(),
        );
        r.register(
            "refusals",
            "Command requests refused, by refusal code",
            m.refusals.clone(),
        );
        r.register(
            "commit_duration_seconds",
            "Time to commit an accepted or refused command with its audit entry",
            m.commit_seconds.clone(),
        );
        r.register(
            "reconciler_passes",
            "Reconciler passes run",
            m.passes.clone(),
        );
        r.register(
            "reconciler_commits",
            "Reconciler passes that committed a placement change",
            m.pass_commits.clone(),
        );
        r.register(
            "nodes",
            "Nodes by state (ready, cordoned, leaving, lost)",
            m.nodes.clone(),
        );
        r.register(
            "rollouts",
            "Rollouts in progress by phase",
            m.rollouts.clone(),
        );
        r.register(
            "placements",
            "Replicas placed on nodes",
            m.placements.clone(),
        );
        r.register("apps", "Apps deployed", m.apps.clone());
        let weak: Weak<Conductor> = Arc::downgrade(c);
        Exposition::new(r).refresh(move || {
            if let Some(c) = weak.upgrade() {
                c.metrics.refresh(&c);
            }
        })
    }

    fn refresh(&self, c: &Conductor) {
        let now = c.now_ms();
        let desired = c.index.desired(&c.store).ok();
        let mut counts = [0i64; 4];
        {
            let nodes = c.nodes();
            for (name, seen) in nodes.iter() {
                let state = if !c.is_alive(seen, now) {
                    3
                } else if seen.report.leaving {
                    2
                } else if desired.as_ref().is_some_and(|d| d.cordoned.contains(name)) {
                    1
                } else {
                    0
                };
                counts[state] += 1;
            }
        }
        for (state, n) in ["ready", "cordoned", "leaving", "lost"]
            .into_iter()
            .zip(counts)
        {
            self.nodes.get_or_create(&StateLabel { state }).set(n);
        }
        let Some(d) = desired else { return };
        let mut phases = [0i64; 3];
        for r in d.rollouts.values() {
            phases[match r.phase {
                RolloutPhase::Surging => 0,
                RolloutPhase::Draining => 1,
                RolloutPhase::Reverting => 2,
            }] += 1;
        }
        for (phase, n) in ["surging", "draining", "reverting"].into_iter().zip(phases) {
            self.rollouts.get_or_create(&PhaseLabel { phase }).set(n);
        }
        self.placements.set(d.placements.len() as i64);
        self.apps.set(d.apps.len() as i64);
    }
}
