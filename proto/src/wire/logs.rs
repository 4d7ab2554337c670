//! Workload output: the conductor's signed log requests to a node's log
//! endpoint, and the lines that come back.

use super::seal::{fresh, seal, unseal};
use crate::keys::{KeyError, PublicKey, SecretKey};
use serde::{Deserialize, Serialize};

/// Domain separation for the conductor's log requests to nodes.
pub const LOGS_CONTEXT: &[u8] = b"skr8tr/logs/v1";
/// The same request for the replica's previous run (`logs --previous`),
/// read from the node's files. A separate context, not a new field: a
/// node of an older release refuses it instead of misreading it.
pub const PREVIOUS_LOGS_CONTEXT: &[u8] = b"skr8tr/logs/previous/v1";

/// Which run of a replica a request reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Run {
    /// The in-memory lines (across runs, following is possible).
    Current,
    /// The run before the latest, from disk.
    Previous,
}

impl Run {
    fn context(self) -> &'static [u8] {
        match self {
            Run::Current => LOGS_CONTEXT,
            Run::Previous => PREVIOUS_LOGS_CONTEXT,
        }
    }
}

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
    /// Random per request: a node serves each nonce once.
    pub nonce: [u8; 16],
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedLogRequest {
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

impl SignedLogRequest {
    pub fn sign(
        key: &SecretKey,
        request: &LogRequest,
        run: Run,
    ) -> Result<SignedLogRequest, KeyError> {
        let (payload, signature) = seal(key, run.context(), request)?;
        Ok(SignedLogRequest { payload, signature })
    }

    /// The request and the run it reads, if the pinned conductor key
    /// signed it for `node` within the clock window around `now_ms`.
    pub fn open(
        &self,
        conductor: &PublicKey,
        node: &str,
        now_ms: u64,
    ) -> Result<(LogRequest, Run), String> {
        let (r, run): (LogRequest, Run) = [Run::Current, Run::Previous]
            .into_iter()
            .find_map(|run| {
                unseal(conductor, run.context(), &self.payload, &self.signature)
                    .map(|r| r.map(|r| (r, run)))
            })
            .ok_or("not signed by the pinned conductor key")??;
        if r.node != node {
            return Err(format!("addressed to node `{}`", r.node));
        }
        if !fresh(r.issued_at_ms, now_ms) {
            return Err("stale or future request".into());
        }
        Ok((r, run))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::CONDUCTOR_SESSION_CONTEXT;

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
            nonce: [3; 16],
        };
        let signed = SignedLogRequest::sign(&conductor, &request("n1", now), Run::Current).unwrap();
        assert_eq!(
            signed.open(&conductor.public(), "n1", now + 1000).unwrap(),
            (request("n1", now), Run::Current)
        );
        let previous =
            SignedLogRequest::sign(&conductor, &request("n1", now), Run::Previous).unwrap();
        assert_eq!(
            previous.open(&conductor.public(), "n1", now).unwrap().1,
            Run::Previous
        );
        let other = SecretKey::from_seed(&[2; 32]);
        assert!(signed.open(&other.public(), "n1", now).is_err());
        assert!(signed.open(&conductor.public(), "n2", now).is_err());
        assert!(
            signed
                .open(&conductor.public(), "n1", now + 31_000)
                .is_err()
        );
        let forged = SignedLogRequest::sign(&other, &request("n1", now), Run::Previous).unwrap();
        assert!(forged.open(&conductor.public(), "n1", now).is_err());
        // A session proof is not a log-request signature.
        let cross = SignedLogRequest {
            signature: conductor
                .sign(&signed.payload, CONDUCTOR_SESSION_CONTEXT)
                .unwrap(),
            payload: signed.payload.clone(),
        };
        assert!(cross.open(&conductor.public(), "n1", now).is_err());
    }
}
