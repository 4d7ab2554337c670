//! What the conductor's API answers: command replies, status, nodes,
//! replicas, history, keys, the audit export and the registry.

use super::ReplicaState;
use crate::command::ClusterId;
use crate::keys::Fingerprint;
use serde::{Deserialize, Serialize};

/// The body of `POST /v1/commands`: a signed envelope, and the secret
/// values its manifest refers to by digest (they stay out of the signed,
/// audited bytes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandRequest {
    #[serde(with = "serde_bytes")]
    pub envelope: Vec<u8>,
    pub secrets: Vec<SecretValue>,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretValue {
    pub app: String,
    pub name: String,
    pub value: String,
}

impl From<crate::manifest::secrets::Extracted> for SecretValue {
    fn from(e: crate::manifest::secrets::Extracted) -> SecretValue {
        SecretValue {
            app: e.app,
            name: e.name,
            value: e.value,
        }
    }
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
    /// The conductor's ML-KEM-768 encapsulation key: the CLI seals each
    /// secret value to it (see `sealed`). Authentic because the answer
    /// came over TLS to the pinned identity.
    #[serde(with = "serde_bytes")]
    pub sealing_key: Vec<u8>,
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
    pub unplaced: Option<String>,
    /// A rolling update in progress: `1 -> 2, step 2/3 (surging)`.
    pub rollout: Option<String>,
    /// `scale { min max }`, when the app autoscales.
    pub scale: Option<(u32, u32)>,
    /// The autoscaler's current decision: `cpu 45%, within 20-80%`.
    pub autoscale: Option<String>,
    /// The autoscaler's last change and how long ago (ms).
    pub last_scale: Option<(u64, String)>,
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
    /// `None`: `ram` and `cpus` are not enforced there (`limits: off`).
    pub limits: Option<String>,
    pub labels: Vec<(String, String)>,
    pub wasm: bool,
    /// The node's clock minus the conductor's when its last report
    /// arrived, ms (transit time included).
    pub clock_skew_ms: i64,
    /// Cordoned by `skr8tr node drain`: nothing new is placed there.
    pub cordoned: bool,
    /// Shutting down with its replicas (`NodeReport::leaving`).
    pub leaving: bool,
}

/// A node whose clock is further than this from the conductor's is shown
/// `clock-skew`: signed requests it checks (log requests) fail beyond
/// the 30 s window, and its times in `ps` mislead well before.
pub const CLOCK_SKEW_WARN_MS: i64 = 5_000;

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
    /// Why its last start failed (a failed build, a missing runtime), if
    /// it did.
    pub error: Option<String>,
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

/// One page of the audit log, each entry in the store's own encoding, for
/// offline verification (`skr8tr history --verify`), oldest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditPage {
    pub cluster: ClusterId,
    pub entries: Vec<Vec<u8>>,
    /// The `from` of the next page; `None` at the end of the log.
    pub next: Option<u64>,
}

/// One page of history, oldest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryPage {
    pub entries: Vec<HistoryEntry>,
    /// The `before` of the page before this one; `None` at the start of
    /// the log (or of the app's entries).
    pub before: Option<u64>,
    /// For a page read forwards (`from`): the `from` of the next page;
    /// `None` at the end of the log.
    pub next: Option<u64>,
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

/// Where the ingress serves an app, from its manifest's `route` and
/// `host` (`GET /v1/routes`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteView {
    pub app: String,
    pub route: Option<String>,
    pub host: Option<String>,
}
