//! The node agent's Prometheus metrics (`--metrics-listen`): restarts,
//! OOM kills and probe latency counted as they happen; replicas by state
//! and each replica's CPU and resident memory read at each scrape (the
//! same sample the agent reports to the conductor).
//!
//! Per-replica series are labelled with the app and the replica id, which
//! the conductor chose; they are dropped with the replica.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use skr8tr_net::metrics::Registry;
use skr8tr_proto::wire::{ReplicaReport, ReplicaState};
use std::sync::atomic::AtomicU64;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReplicaLabels {
    app: String,
    replica: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

pub struct Metrics {
    restarts: Counter,
    oom_kills: Counter,
    probe_seconds: Family<ResultLabel, Histogram>,
    replicas: Family<StateLabel, Gauge>,
    cpu: Family<ReplicaLabels, Gauge<f64, AtomicU64>>,
    rss: Family<ReplicaLabels, Gauge>,
}

/// Every state a replica can be reported in, as a label.
const STATES: [&str; 9] = [
    "starting",
    "ready",
    "unhealthy",
    "backoff",
    "stopping",
    "exited",
    "oom_killed",
    "build_failed",
    "start_failed",
];

fn state_label(s: ReplicaState) -> &'static str {
    match s {
        ReplicaState::Starting => "starting",
        ReplicaState::Ready => "ready",
        ReplicaState::Unhealthy => "unhealthy",
        ReplicaState::Backoff => "backoff",
        ReplicaState::Stopping => "stopping",
        ReplicaState::Exited { .. } => "exited",
        ReplicaState::OomKilled => "oom_killed",
        ReplicaState::BuildFailed => "build_failed",
        ReplicaState::StartFailed => "start_failed",
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            restarts: Counter::default(),
            oom_kills: Counter::default(),
            // 0.25 ms to ~8 s: a local HTTP probe up to the longest timeout.
            probe_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.00025, 2.0, 16))
            }),
            replicas: Family::default(),
            cpu: Family::default(),
            rss: Family::default(),
        }
    }
}

impl Metrics {
    pub fn restart(&self) {
        self.restarts.inc();
    }

    pub fn oom_kill(&self) {
        self.oom_kills.inc();
    }

    pub fn probe(&self, took: Duration, passed: bool) {
        let result = if passed { "pass" } else { "fail" };
        self.probe_seconds
            .get_or_create(&ResultLabel { result })
            .observe(took.as_secs_f64());
    }

    /// The registry, its families shared with `self`.
    pub fn registry(&self) -> Registry {
        let mut r = Registry::with_prefix("skr8tr_node");
        r.register(
            "replica_restarts",
            "Replica processes started again after they exited",
            self.restarts.clone(),
        );
        r.register(
            "replica_oom_kills",
            "Replica processes killed by the kernel for exceeding their ram limit",
            self.oom_kills.clone(),
        );
        r.register(
            "probe_duration_seconds",
            "Health probe time, by result",
            self.probe_seconds.clone(),
        );
        r.register(
            "replicas",
            "Replicas on this node by state",
            self.replicas.clone(),
        );
        r.register(
            "replica_cpu_cores",
            "CPU each replica used over the last sample, in cores",
            self.cpu.clone(),
        );
        r.register(
            "replica_resident_bytes",
            "Resident memory of each replica's process",
            self.rss.clone(),
        );
        r
    }

    /// Sets the gauges from this moment's reports.
    pub fn refresh(&self, reports: &[ReplicaReport]) {
        self.cpu.clear();
        self.rss.clear();
        let mut counts = [0i64; STATES.len()];
        for r in reports {
            let state = state_label(r.state);
            if let Some(i) = STATES.iter().position(|s| *s == state) {
                counts[i] += 1;
            }
            let labels = ReplicaLabels {
                app: r.app.clone(),
                replica: r.replica.clone(),
            };
            self.cpu
                .get_or_create(&labels)
                .set(r.cpu_millis as f64 / 1000.0);
            self.rss
                .get_or_create(&labels)
                .set(i64::try_from(r.rss_bytes).unwrap_or(i64::MAX));
        }
        for (state, n) in STATES.into_iter().zip(counts) {
            self.replicas.get_or_create(&StateLabel { state }).set(n);
        }
    }
}
