//! Node sync: the assignment set a node long-polls for and the reports it
//! sends. Both travel on a session the node and the conductor opened by
//! proving their ML-DSA keys over the connection's TLS exporter (see
//! `session`), so neither message carries a signature of its own.

use super::ReportDelta;
use crate::command::ClusterId;
use crate::manifest::AppSpec;
use serde::{Deserialize, Serialize};

/// The full desired set of replicas for one node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignments {
    pub cluster: ClusterId,
    pub node: String,
    /// Changes whenever the set changes; the node long-polls with the last
    /// version it has.
    pub version: u64,
    pub replicas: Vec<Assignment>,
    /// The nonce of the poll this set answers.
    pub nonce: [u8; 16],
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// `app/generation/index`: deterministic, so re-issuing is idempotent.
    pub replica: String,
    pub app: String,
    pub generation: u64,
    pub spec: AppSpec,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AssignmentError {
    #[error("assignments cannot be read: {0}")]
    Malformed(String),
    #[error("assignments are for node `{got}`, this node is `{expected}`")]
    WrongNode { expected: String, got: String },
    #[error("assignments answer another request (replayed?)")]
    Replayed,
}

impl Assignments {
    /// The set in `body`, if it is addressed to `node` and answers the
    /// poll that sent `nonce`.
    pub fn open(body: &[u8], node: &str, nonce: &[u8; 16]) -> Result<Assignments, AssignmentError> {
        let a: Assignments = super::decode(body).map_err(AssignmentError::Malformed)?;
        if a.node != node {
            return Err(AssignmentError::WrongNode {
                expected: node.to_string(),
                got: a.node,
            });
        }
        if a.nonce != *nonce {
            return Err(AssignmentError::Replayed);
        }
        Ok(a)
    }
}

/// What a node tells the conductor: who it is, what it has, what runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeReport {
    pub node: String,
    /// The address replicas are reached at (`--advertise`).
    pub address: String,
    /// Random per node-agent start: a new value means the node restarted.
    pub boot_id: u64,
    /// The assignments version the node has converged to.
    pub assignments_version: u64,
    pub resources: Resources,
    pub replicas: Vec<ReplicaReport>,
    /// Port of the node's log endpoint (conductor-signed requests only).
    pub logs_port: Option<u16>,
    /// How `ram` and `cpus` are enforced (`cgroup v1`, `cgroup v2`);
    /// `None`: they are not (`limits: off`).
    pub limits: Option<String>,
    /// `--label KEY=VALUE`, sorted by key: what `constraint` and `spread`
    /// match.
    pub labels: Vec<(String, String)>,
    /// Whether the node has a WebAssembly runtime (`type wasm` apps).
    pub wasm: bool,
    /// The node is shutting down with its replicas (a host shutdown, `skr8tr
    /// node leave`): nothing new goes there, what it runs moves away
    /// surge-first, and it stops its replicas once nothing of it is routed.
    pub leaving: bool,
    /// SHA-256 of the log endpoint's TLS certificate, which the conductor
    /// pins when it asks for lines.
    pub logs_pin: Option<[u8; 32]>,
    /// The node's wall clock when it sent this (Unix ms): the conductor
    /// shows `clock-skew` for a node far from its own.
    pub clock_ms: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// Thousandths of a core the node offers.
    pub cpu_millis: u64,
    /// Bytes of RAM the node offers.
    pub ram_bytes: u64,
    /// CPU in use by the node's replicas, thousandths of a core.
    pub cpu_used_millis: u64,
    /// RAM in use by the node's replicas (resident), bytes.
    pub ram_used_bytes: u64,
}

/// One replica as the node observes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaReport {
    pub replica: String,
    pub app: String,
    pub generation: u64,
    pub state: ReplicaState,
    pub pid: Option<u32>,
    /// The port it listens on (static, or picked by the node).
    pub port: Option<u16>,
    pub restarts: u32,
    /// When the current process started (Unix ms).
    pub started_at_ms: u64,
    pub cpu_millis: u64,
    pub rss_bytes: u64,
    /// Why it is not running (its start failed: `exit 127, cannot start
    /// …`; it exited: `exited with code 1`), or, once it runs again, how
    /// its last run ended ([`LAST_RUN`] first): shown by `ps`, and by
    /// `status` as a crash loop's reason.
    pub error: Option<String>,
}

/// Marks a [`ReplicaReport::error`] that tells how the previous run ended.
pub const LAST_RUN: &str = "last run: ";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplicaState {
    /// Started, not yet ready (health check not passed, or settling).
    Starting,
    /// Serving: health check passing (or alive for `settle`).
    Ready,
    /// Health check failing, not yet restarted.
    Unhealthy,
    /// Waiting to restart after an exit (backoff).
    Backoff,
    /// Being stopped (SIGTERM sent, draining).
    Stopping,
    /// Ended and will not restart (a finished job, `restart never`).
    Exited { code: Option<i32> },
    /// Killed by the kernel for using more than its `ram`; restarts after
    /// its backoff like any exit.
    OomKilled,
    /// Its `build` failed; retried after its backoff.
    BuildFailed,
    /// Its program could not be started (missing, no runtime, no such
    /// user); retried after its backoff.
    StartFailed,
}

impl ReplicaState {
    pub fn label(&self) -> String {
        match self {
            ReplicaState::Starting => "starting".into(),
            ReplicaState::Ready => "ready".into(),
            ReplicaState::Unhealthy => "unhealthy".into(),
            ReplicaState::Backoff => "backoff".into(),
            ReplicaState::Stopping => "stopping".into(),
            ReplicaState::Exited { code: Some(c) } => format!("exited({c})"),
            ReplicaState::Exited { code: None } => "killed".into(),
            ReplicaState::OomKilled => "oom-killed".into(),
            ReplicaState::BuildFailed => "build-failed".into(),
            ReplicaState::StartFailed => "start-failed".into(),
        }
    }
}

/// What a node hears back after a report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportAck {
    /// The current assignments version for this node, so a node that
    /// missed an update re-polls at once.
    pub assignments_version: u64,
    /// For a leaving node: nothing it runs is routed any more, and every
    /// router watching the registry has been sent that registry. It may
    /// stop its replicas now.
    pub left: bool,
    /// The conductor's lost-node timeout, ms: a node out of contact longer
    /// has been replaced, and reports nothing ready until it has the
    /// current assignments.
    pub lost_after_ms: u64,
}

/// What a node asks of the conductor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeMessage {
    /// Long-poll for assignments newer than `version`. The answer echoes
    /// `nonce`, so an old answer replayed to a later poll is refused.
    Poll { version: u64, nonce: [u8; 16] },
    /// A report from a node agent of the release before delta reports
    /// (never followed by a delta).
    Report(NodeReport),
    /// A full report, numbered: the base of the deltas that follow.
    Full { seq: u64, report: NodeReport },
    /// What changed since the report numbered `base` (see `delta`).
    Delta(ReportDelta),
}

/// A node message as a node agent of the release before `leaving` sends
/// it, so a conductor upgraded first keeps taking its reports (the order
/// is conductor first, then nodes). Field order is the encoding: frozen.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
enum NodeMessageBefore {
    Poll { version: u64, nonce: [u8; 16] },
    Report(NodeReportBefore),
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct NodeReportBefore {
    node: String,
    address: String,
    boot_id: u64,
    assignments_version: u64,
    resources: Resources,
    replicas: Vec<ReplicaReport>,
    logs_port: Option<u16>,
    limits: Option<String>,
    labels: Vec<(String, String)>,
    wasm: bool,
    logs_pin: Option<[u8; 32]>,
    clock_ms: u64,
}

impl NodeMessage {
    /// A node's message, from this release or the one before (which
    /// never leaves).
    pub fn decode(bytes: &[u8]) -> Result<NodeMessage, String> {
        let now = super::decode::<NodeMessage>(bytes);
        if now.is_ok() {
            return now;
        }
        match super::decode::<NodeMessageBefore>(bytes) {
            Ok(NodeMessageBefore::Poll { version, nonce }) => {
                Ok(NodeMessage::Poll { version, nonce })
            }
            Ok(NodeMessageBefore::Report(r)) => Ok(NodeMessage::Report(NodeReport {
                node: r.node,
                address: r.address,
                boot_id: r.boot_id,
                assignments_version: r.assignments_version,
                resources: r.resources,
                replicas: r.replicas,
                logs_port: r.logs_port,
                limits: r.limits,
                labels: r.labels,
                wasm: r.wasm,
                leaving: false,
                logs_pin: r.logs_pin,
                clock_ms: r.clock_ms,
            })),
            Err(_) => now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest;
    use crate::wire::{decode, encode};

    #[test]
    fn a_report_from_the_release_before_leaving_is_still_read() {
        let before = NodeMessageBefore::Report(NodeReportBefore {
            node: "n1".into(),
            address: "10.0.0.1".into(),
            boot_id: 7,
            assignments_version: 3,
            resources: Resources::default(),
            replicas: Vec::new(),
            logs_port: Some(9000),
            limits: None,
            labels: vec![("zone".into(), "a".into())],
            wasm: false,
            logs_pin: Some([1; 32]),
            clock_ms: 42,
        });
        let Ok(NodeMessage::Report(r)) = NodeMessage::decode(&encode(&before)) else {
            panic!("not read");
        };
        assert_eq!(
            (r.node.as_str(), r.boot_id, r.clock_ms, r.leaving),
            ("n1", 7, 42, false)
        );
        assert_eq!(r.logs_pin, Some([1; 32]));
        assert!(NodeMessage::decode(b"junk").is_err());
    }

    fn assignments(node: &str) -> Assignments {
        let spec = manifest::parse("t", "app web\n  exec /bin/web\n")
            .unwrap()
            .remove(0);
        Assignments {
            cluster: ClusterId([1; 16]),
            node: node.into(),
            version: 7,
            replicas: vec![Assignment {
                replica: "web/1/0".into(),
                app: "web".into(),
                generation: 1,
                spec,
            }],
            nonce: [9; 16],
        }
    }

    #[test]
    fn a_set_opens_only_for_its_node_and_its_poll() {
        let body = encode(&assignments("n1"));
        assert_eq!(
            Assignments::open(&body, "n1", &[9; 16]).unwrap(),
            assignments("n1")
        );
        assert!(matches!(
            Assignments::open(&body, "n2", &[9; 16]),
            Err(AssignmentError::WrongNode { .. })
        ));
        // An answer to another poll: replayed.
        assert_eq!(
            Assignments::open(&body, "n1", &[8; 16]),
            Err(AssignmentError::Replayed)
        );
        assert!(matches!(
            Assignments::open(&body[..10], "n1", &[9; 16]),
            Err(AssignmentError::Malformed(_))
        ));
    }

    #[test]
    fn decode_rejects_trailing_bytes() {
        let mut bytes = encode(&assignments("n1"));
        assert!(decode::<Assignments>(&bytes).is_ok());
        bytes.push(0);
        assert!(decode::<Assignments>(&bytes).is_err());
        assert!(decode::<Assignments>(&[1, 2, 3]).is_err());
    }
}
