//! What the store keeps, one record type per table. Each value is stored as
//! postcard of a versioned enum (`Stored::V1(record)`), so a later schema can
//! read old values and upgrade them. Field order is the encoding: never
//! reorder, only add a new version.

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use skr8tr_proto::keys::Fingerprint;
use skr8tr_proto::manifest::AppSpec;

use crate::error::StoreError;

/// An app's desired state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppRecord {
    /// The generation replicas should run.
    pub generation: u64,
    /// The generation before it, for rollback.
    pub previous_generation: Option<u64>,
    /// Desired replica count.
    pub replicas: u32,
    pub status: AppStatus,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AppStatus {
    /// Replicas should run.
    Active,
    /// `down` was accepted: replicas are being stopped.
    Stopping,
}

/// One generation of an app: the spec as parsed and the text it came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecRecord {
    pub spec: AppSpec,
    /// The manifest file name as the operator gave it.
    pub file: String,
    /// The manifest text of this app's generation.
    pub manifest: String,
    /// SHA-256 of `manifest`.
    pub hash: [u8; 32],
}

/// A replica the conductor wants somewhere (desired, never observed state).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementRecord {
    pub app: String,
    pub generation: u64,
    pub index: u32,
    /// Node id.
    pub node: String,
    /// The static port, when the spec has one.
    pub port: Option<u16>,
    pub desired: DesiredStatus,
}

/// What the conductor wants of one placed replica: desired state, as
/// Nomad's `DesiredStatus`. What its node observes is the other side,
/// `skr8tr_proto::wire::ReplicaState` (Nomad's `ClientStatus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DesiredStatus {
    Run,
    /// Drain and stop (the registry drops it first).
    Stop,
}

/// A rolling update in progress: the durable state machine of its steps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutRecord {
    pub from_generation: u64,
    pub to_generation: u64,
    /// Replicas replaced so far.
    pub step: u32,
    pub phase: RolloutPhase,
    pub started_at_ms: u64,
    /// When the current step must be done, or the rollout reverts.
    pub step_deadline_ms: u64,
    /// Why it is reverting or failed, for operators.
    pub reason: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RolloutPhase {
    /// A new-generation replica was asked for; waiting for it to be ready.
    Surging,
    /// Every new replica is placed and ready; the last old ones are
    /// draining before the app moves to the new generation.
    Draining,
    /// Going back to `from_generation`.
    Reverting,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorKeyRecord {
    pub name: String,
    /// FIPS 204 encoding (1952 bytes).
    pub public_key: Vec<u8>,
    /// `None` for the key given at cluster creation.
    pub added_by: Option<Fingerprint>,
    /// Audit sequence number of the entry that added it.
    pub added_seq: u64,
    /// Audit sequence number of the entry that revoked it.
    pub revoked_seq: Option<u64>,
}

/// A node no new replica is placed on (`skr8tr node drain`); those it
/// runs move away, surge-first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CordonRecord {
    /// Audit sequence number of the `node drain` that cordoned it.
    pub since_seq: u64,
    pub by: Option<Fingerprint>,
}

/// Where the ingress serves an app (`route`, `host` in its manifest):
/// app-level, changed without a new generation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteRecord {
    pub route: Option<String>,
    pub host: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeKeyRecord {
    pub public_key: Vec<u8>,
    pub admitted_by: Option<Fingerprint>,
    pub admitted_seq: u64,
}

/// A stored value: postcard of a versioned enum, decoded strictly.
pub(crate) trait Record: Sized + Clone {
    fn encode(&self) -> Vec<u8>;
    fn decode(bytes: &[u8]) -> Result<Self, StoreError>;
}

/// Decodes `bytes` as exactly one `T`: trailing bytes mean the record was
/// written by a newer schema, and are an error rather than silently dropped.
pub(crate) fn decode_exact<T: DeserializeOwned>(
    table: &'static str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    match postcard::take_from_bytes::<T>(bytes) {
        Ok((v, [])) => Ok(v),
        Ok((_, rest)) => Err(StoreError::Decode {
            table,
            reason: format!(
                "{} bytes left over (written by a newer skr8tr?)",
                rest.len()
            ),
        }),
        Err(e) => Err(StoreError::Decode {
            table,
            reason: e.to_string(),
        }),
    }
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising plain data into a Vec cannot fail.
    postcard::to_allocvec(value).unwrap_or_default()
}

/// Declares the versioned wrapper of a record type and its `Record` impl.
macro_rules! versioned {
    ($record:ident, $stored:ident, $table:literal) => {
        #[derive(Serialize, Deserialize)]
        enum $stored {
            V1($record),
        }

        impl Record for $record {
            fn encode(&self) -> Vec<u8> {
                encode(&$stored::V1(self.clone()))
            }

            fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
                match decode_exact::<$stored>($table, bytes)? {
                    $stored::V1(r) => Ok(r),
                }
            }
        }
    };
}

versioned!(AppRecord, StoredApp, "apps");
versioned!(SpecRecord, StoredSpec, "specs");
versioned!(PlacementRecord, StoredPlacement, "placements");
versioned!(RolloutRecord, StoredRollout, "rollouts");
versioned!(OperatorKeyRecord, StoredOperatorKey, "operator_keys");
versioned!(NodeKeyRecord, StoredNodeKey, "node_keys");
versioned!(CordonRecord, StoredCordon, "cordoned");
versioned!(RouteRecord, StoredRoute, "routes");
versioned!(AuditRecord, StoredAudit, "audit");

pub use crate::audit::AuditRecord;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_reject_damage() {
        let r = AppRecord {
            generation: 3,
            previous_generation: Some(2),
            replicas: 5,
            status: AppStatus::Active,
        };
        let bytes = r.encode();
        assert_eq!(bytes[0], 0, "version tag V1 comes first");
        assert_eq!(AppRecord::decode(&bytes).unwrap(), r);
        let mut longer = bytes.clone();
        longer.push(1);
        assert!(
            AppRecord::decode(&longer)
                .unwrap_err()
                .to_string()
                .contains("newer skr8tr")
        );
        assert!(AppRecord::decode(&bytes[..2]).is_err());
        let mut v9 = bytes.clone();
        v9[0] = 9;
        assert!(AppRecord::decode(&v9).is_err());
    }
}
