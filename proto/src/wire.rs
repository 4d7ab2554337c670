//! Messages between the conductor, nodes and the CLI. All travel as postcard
//! over HTTP (`application/x-skr8tr`); fields and variants are only ever
//! appended.
//!
//! Node sync, one line: node `POST /v1/nodes/{name}/assignments` with a
//! [`SignedNodeRequest`] (`Poll { version }`, signed with the node's key)
//! → long-poll → [`SignedAssignments`] (signed by the conductor's key, which
//! the node pins) → node converges → node `POST /v1/nodes/{name}/report`
//! ([`NodeMessage::Report`], signed the same way) on every local change and
//! at least every second.

use crate::command::ClusterId;
use crate::keys::{Fingerprint, KeyError, PublicKey, SecretKey};
use crate::manifest::AppSpec;
use serde::{Deserialize, Serialize};

/// Domain separation for the conductor's assignment signatures.
pub const ASSIGNMENTS_CONTEXT: &[u8] = b"skr8tr/assignments/v1";
/// The media type of every postcard body.
pub const CONTENT_TYPE: &str = "application/x-skr8tr";
/// Largest body any endpoint reads (a full envelope, or a big report).
pub const MAX_BODY_BYTES: usize = crate::envelope::MAX_ENVELOPE_BYTES;

/// The full desired set of replicas for one node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignments {
    pub cluster: ClusterId,
    pub node: String,
    /// Changes whenever the set changes; the node long-polls with the last
    /// version it has.
    pub version: u64,
    pub replicas: Vec<Assignment>,
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
    pub payload: Vec<u8>,
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
}

/// The three signed messages (assignments, log requests, node requests)
/// share this: a postcard payload and an ML-DSA-65 signature over it under
/// the message kind's own context, so no signature passes as another kind.
fn seal<T: Serialize>(
    key: &SecretKey,
    context: &[u8],
    value: &T,
) -> Result<(Vec<u8>, Vec<u8>), KeyError> {
    let payload = encode(value);
    let signature = key.sign(&payload, context)?;
    Ok((payload, signature))
}

/// Verifies `signature` over `payload` under `context`, then decodes it.
/// `None` for a bad signature; `Some(Err)` for an unreadable payload.
fn unseal<T: serde::de::DeserializeOwned>(
    key: &PublicKey,
    context: &[u8],
    payload: &[u8],
    signature: &[u8],
) -> Option<Result<T, String>> {
    key.verify(payload, context, signature)
        .then(|| decode(payload))
}

/// A request's `issued_at_ms` is within the clock window around `now_ms`.
fn fresh(issued_at_ms: u64, now_ms: u64) -> bool {
    issued_at_ms.abs_diff(now_ms) <= crate::envelope::MAX_CLOCK_SKEW.as_millis() as u64
}

impl SignedAssignments {
    pub fn sign(key: &SecretKey, assignments: &Assignments) -> Result<SignedAssignments, KeyError> {
        let (payload, signature) = seal(key, ASSIGNMENTS_CONTEXT, assignments)?;
        Ok(SignedAssignments { payload, signature })
    }

    /// Returns the assignments only if the pinned conductor key signed them
    /// and they are addressed to `node`.
    pub fn open(&self, conductor: &PublicKey, node: &str) -> Result<Assignments, AssignmentError> {
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

/// The body of `POST /v1/commands`: a signed envelope, and the secret
/// values its manifest refers to by digest (they stay out of the signed,
/// audited bytes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandRequest {
    pub envelope: Vec<u8>,
    pub secrets: Vec<SecretValue>,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretValue {
    pub app: String,
    pub name: String,
    pub value: String,
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretValue({}/{} = ***)", self.app, self.name)
    }
}

/// The answer to a command, sent only after the store committed it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandReply {
    /// The audit entry recording it.
    pub seq: Option<u64>,
    pub accepted: bool,
    /// Stable short code when refused (`bad-signature`, `replayed`, …).
    pub code: Option<String>,
    /// What happened, or what is wrong and what to do.
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingReply {
    pub cluster: ClusterId,
    pub conductor_key: Fingerprint,
    pub version: String,
    /// True until every known node reported after a conductor start.
    pub resyncing: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppView {
    pub name: String,
    pub kind: String,
    pub generation: u64,
    pub desired: u32,
    pub placed: u32,
    pub running: u32,
    pub ready: u32,
    /// Why replicas are missing, if they are.
    pub pending: Option<String>,
    /// A rolling update in progress: `1 -> 2, step 2/3 (surging)`.
    pub rollout: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeView {
    pub name: String,
    pub address: String,
    pub alive: bool,
    pub replicas: u32,
    pub cpu_millis: u64,
    pub ram_bytes: u64,
    pub cpu_used_millis: u64,
    pub ram_used_bytes: u64,
    pub last_report_ms_ago: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaView {
    pub replica: String,
    pub app: String,
    pub generation: u64,
    pub node: String,
    pub address: String,
    pub port: Option<u16>,
    /// `None` when the node has not reported it (yet).
    pub state: Option<ReplicaState>,
    pub pid: Option<u32>,
    pub restarts: u32,
    /// Left the registry, still finishing in-flight requests.
    pub draining: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReply {
    pub cluster: ClusterId,
    pub resyncing: bool,
    pub nodes_alive: u32,
    pub nodes_lost: u32,
    pub apps: Vec<AppView>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub seq: u64,
    pub time_ms: u64,
    /// Key fingerprint, `conductor`, `genesis` or `unknown`.
    pub actor: String,
    pub summary: String,
    pub accepted: bool,
    pub code: Option<String>,
    pub message: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyView {
    pub fingerprint: Fingerprint,
    pub name: String,
    pub added_by: Option<Fingerprint>,
    pub added_seq: u64,
    pub revoked_seq: Option<u64>,
}

/// The whole audit log, each entry in the store's own encoding, for
/// offline verification (`skr8tr history --verify`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditExport {
    pub cluster: ClusterId,
    pub entries: Vec<Vec<u8>>,
}

/// Where one ready replica is reached.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Endpoint {
    pub replica: String,
    pub address: String,
    pub port: u16,
}

/// The service registry: for each app, its replicas that are ready and not
/// draining. `index` changes whenever the content does (a digest), so a
/// watcher long-polls with the index it has.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrySnapshot {
    pub index: u64,
    pub apps: std::collections::BTreeMap<String, Vec<Endpoint>>,
}

/// An error body from any endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    pub code: String,
    pub message: String,
}

/// Domain separation for the conductor's log requests to nodes.
pub const LOGS_CONTEXT: &[u8] = b"skr8tr/logs/v1";

/// The conductor asks a node for a replica's output. Nodes serve only
/// requests signed by the conductor key they pin, and only fresh ones.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRequest {
    pub node: String,
    pub replica: String,
    /// At most this many lines (the latest).
    pub limit: u32,
    /// Only lines after this sequence number (for following).
    pub after_seq: Option<u64>,
    pub issued_at_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedLogRequest {
    pub payload: Vec<u8>,
    pub signature: Vec<u8>,
}

impl SignedLogRequest {
    pub fn sign(key: &SecretKey, request: &LogRequest) -> Result<SignedLogRequest, KeyError> {
        let (payload, signature) = seal(key, LOGS_CONTEXT, request)?;
        Ok(SignedLogRequest { payload, signature })
    }

    /// The request, if the pinned conductor key signed it for `node` within
    /// the clock window around `now_ms`.
    pub fn open(
        &self,
        conductor: &PublicKey,
        node: &str,
        now_ms: u64,
    ) -> Result<LogRequest, String> {
        let r: LogRequest = unseal(conductor, LOGS_CONTEXT, &self.payload, &self.signature)
            .ok_or("not signed by the pinned conductor key")??;
        if r.node != node {
            return Err(format!("addressed to node `{}`", r.node));
        }
        if !fresh(r.issued_at_ms, now_ms) {
            return Err("stale or future request".into());
        }
        Ok(r)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    pub seq: u64,
    pub at_ms: u64,
    pub stderr: bool,
    pub text: String,
}

/// Lines of one replica (node to conductor, conductor to CLI).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaLog {
    pub replica: String,
    pub node: String,
    pub lines: Vec<LogLine>,
    /// Why no lines could be read, if so.
    pub error: Option<String>,
}

/// Domain separation for node requests signed with the node's key.
pub const NODE_CONTEXT: &[u8] = b"skr8tr/node/v1";

/// What a node asks of the conductor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeMessage {
    /// Long-poll for assignments newer than `version`.
    Poll {
        version: u64,
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
    pub payload: Vec<u8>,
    pub signature: Vec<u8>,
    pub join: Option<Join>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Join {
    pub public_key: Vec<u8>,
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

/// Decodes exactly one `T` from a body: trailing bytes are an error.
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    match postcard::take_from_bytes::<T>(bytes) {
        Ok((v, [])) => Ok(v),
        Ok((_, rest)) => Err(format!("{} unexpected trailing bytes", rest.len())),
        Err(e) => Err(e.to_string()),
    }
}

/// Encodes a body.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Plain data into a Vec cannot fail.
    postcard::to_allocvec(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest;

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
        }
    }

    #[test]
    fn only_the_pinned_conductor_key_opens_assignments() {
        let conductor = SecretKey::from_seed(&[1; 32]);
        let other = SecretKey::from_seed(&[2; 32]);
        let signed = SignedAssignments::sign(&conductor, &assignments("n1")).unwrap();
        assert_eq!(
            signed.open(&conductor.public(), "n1").unwrap(),
            assignments("n1")
        );
        assert!(matches!(
            signed.open(&other.public(), "n1"),
            Err(AssignmentError::BadSignature(_))
        ));
        assert!(matches!(
            signed.open(&conductor.public(), "n2"),
            Err(AssignmentError::WrongNode { .. })
        ));
        let mut tampered = signed.clone();
        tampered.payload[5] ^= 1;
        assert!(matches!(
            tampered.open(&conductor.public(), "n1"),
            Err(AssignmentError::BadSignature(_))
        ));
        // A command signature does not pass as an assignment signature.
        let forged = SignedAssignments {
            signature: conductor
                .sign(&signed.payload, crate::envelope::SIGNING_CONTEXT)
                .unwrap(),
            payload: signed.payload.clone(),
        };
        assert!(forged.open(&conductor.public(), "n1").is_err());
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

#[cfg(test)]
mod log_request_tests {
    use super::*;

    #[test]
    fn nodes_serve_only_fresh_requests_the_pinned_conductor_signed_for_them() {
        let conductor = SecretKey::from_seed(&[1; 32]);
        let now = 1_800_000_000_000;
        let request = |node: &str, at: u64| LogRequest {
            node: node.into(),
            replica: "web/1/0".into(),
            limit: 10,
            after_seq: None,
            issued_at_ms: at,
        };
        let signed = SignedLogRequest::sign(&conductor, &request("n1", now)).unwrap();
        assert_eq!(
            signed.open(&conductor.public(), "n1", now + 1000).unwrap(),
            request("n1", now)
        );
        let other = SecretKey::from_seed(&[2; 32]);
        assert!(signed.open(&other.public(), "n1", now).is_err());
        assert!(signed.open(&conductor.public(), "n2", now).is_err());
        assert!(
            signed
                .open(&conductor.public(), "n1", now + 31_000)
                .is_err()
        );
        let forged = SignedLogRequest::sign(&other, &request("n1", now)).unwrap();
        assert!(forged.open(&conductor.public(), "n1", now).is_err());
        // An assignment signature is not a log-request signature.
        let cross = SignedLogRequest {
            signature: conductor
                .sign(&signed.payload, ASSIGNMENTS_CONTEXT)
                .unwrap(),
            payload: signed.payload.clone(),
        };
        assert!(cross.open(&conductor.public(), "n1", now).is_err());
    }
}
