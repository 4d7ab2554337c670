//! Node sync: the conductor-signed assignment set a node long-polls for,
//! the reports it sends, and node requests signed with the node's key.

use super::seal::{fresh, seal, unseal};
use crate::command::ClusterId;
use crate::keys::{Fingerprint, KeyError, PublicKey, SecretKey};
use crate::manifest::AppSpec;
use serde::{Deserialize, Serialize};

/// Domain separation for the conductor's assignment signatures.
pub const ASSIGNMENTS_CONTEXT: &[u8] = b"skr8tr/assignments/v1";

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

/// Assignments as the conductor signed them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedAssignments {
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AssignmentError {
    #[error("assignments are not signed by the pinned conductor key {0}")]
    BadSignature(Fingerprint),
    #[error("assignments cannot be read: {0}")]
    Malformed(String),
    #[error("assignments are for node `{got}`, this node is `{expected}`")]
    WrongNode { expected: String, got: String },
    #[error("assignments answer another request (replayed?)")]
    Replayed,
}

impl SignedAssignments {
    pub fn sign(key: &SecretKey, assignments: &Assignments) -> Result<SignedAssignments, KeyError> {
        let (payload, signature) = seal(key, ASSIGNMENTS_CONTEXT, assignments)?;
        Ok(SignedAssignments { payload, signature })
    }

    /// Returns the assignments only if the pinned conductor key signed them,
    /// they are addressed to `node`, and they answer the poll that sent
    /// `nonce`.
    pub fn open(
        &self,
        conductor: &PublicKey,
        node: &str,
        nonce: &[u8; 16],
    ) -> Result<Assignments, AssignmentError> {
        let a: Assignments = unseal(
            conductor,
            ASSIGNMENTS_CONTEXT,
            &self.payload,
            &self.signature,
        )
        .ok_or(AssignmentError::BadSignature(conductor.fingerprint()))?
        .map_err(AssignmentError::Malformed)?;
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
    /// Why its last start failed, if it did: shown by `ps`.
    pub error: Option<String>,
}

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
}

/// Domain separation for node requests signed with the node's key.
pub const NODE_CONTEXT: &[u8] = b"skr8tr/node/v1";

/// What a node asks of the conductor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeMessage {
    /// Long-poll for assignments newer than `version`. The answer echoes
    /// `nonce` inside the conductor's signature, so an old answer replayed
    /// to a later poll is refused.
    Poll {
        version: u64,
        nonce: [u8; 16],
    },
    Report(NodeReport),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRequest {
    pub node: String,
    pub issued_at_ms: u64,
    pub message: NodeMessage,
}

/// A node request signed with the node's own key. Until the conductor has
/// admitted the node, it also carries the node's public key and the
/// operator-signed join ticket (`Command::AdmitNode` envelope).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedNodeRequest {
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
    pub join: Option<Join>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Join {
    #[serde(with = "serde_bytes")]
    pub public_key: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub ticket: Vec<u8>,
}

impl SignedNodeRequest {
    pub fn sign(
        key: &SecretKey,
        request: &NodeRequest,
        join: Option<Join>,
    ) -> Result<SignedNodeRequest, KeyError> {
        let (payload, signature) = seal(key, NODE_CONTEXT, request)?;
        Ok(SignedNodeRequest {
            payload,
            signature,
            join,
        })
    }

    /// The request, if `node_key` signed it for `node` within the clock
    /// window around `now_ms`.
    pub fn open(
        &self,
        node_key: &PublicKey,
        node: &str,
        now_ms: u64,
    ) -> Result<NodeRequest, String> {
        let r: NodeRequest = unseal(node_key, NODE_CONTEXT, &self.payload, &self.signature)
            .ok_or_else(|| format!("not signed by the key admitted for node `{node}`"))??;
        if r.node != node {
            return Err(format!("signed for node `{}`, sent for `{node}`", r.node));
        }
        if !fresh(r.issued_at_ms, now_ms) {
            return Err("the node's clock is more than 30 s off; fix its time".into());
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest;
    use crate::wire::{decode, encode};

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
    fn only_the_pinned_conductor_key_opens_assignments() {
        let conductor = SecretKey::from_seed(&[1; 32]);
        let other = SecretKey::from_seed(&[2; 32]);
        let signed = SignedAssignments::sign(&conductor, &assignments("n1")).unwrap();
        assert_eq!(
            signed.open(&conductor.public(), "n1", &[9; 16]).unwrap(),
            assignments("n1")
        );
        assert!(matches!(
            signed.open(&other.public(), "n1", &[9; 16]),
            Err(AssignmentError::BadSignature(_))
        ));
        assert!(matches!(
            signed.open(&conductor.public(), "n2", &[9; 16]),
            Err(AssignmentError::WrongNode { .. })
        ));
        // An answer to another poll: replayed.
        assert_eq!(
            signed.open(&conductor.public(), "n1", &[8; 16]),
            Err(AssignmentError::Replayed)
        );
        let mut tampered = signed.clone();
        tampered.payload[5] ^= 1;
        assert!(matches!(
            tampered.open(&conductor.public(), "n1", &[9; 16]),
            Err(AssignmentError::BadSignature(_))
        ));
        // A command signature does not pass as an assignment signature.
        let forged = SignedAssignments {
            signature: conductor
                .sign(&signed.payload, crate::envelope::SIGNING_CONTEXT)
                .unwrap(),
            payload: signed.payload.clone(),
        };
        assert!(forged.open(&conductor.public(), "n1", &[9; 16]).is_err());
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
