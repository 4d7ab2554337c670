//! The audit log: append-only and hash-chained.
//!
//! Entry `n` stores the previous entry's hash and its own:
//! `hash = SHA-256("skr8tr-audit-v1" ‖ prev_hash ‖ postcard(seq, time, event, outcome))`,
//! with `prev_hash` of entry 1 all zeros. Signed commands are kept as the
//! exact envelope bytes received, so [`verify_chain`] can check, offline,
//! every link and every accepted command's signature against the operator
//! keys that were valid at that point of the log — the log is evidence,
//! not just a record.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use skr8tr_proto::command::{ClusterId, Command};
use skr8tr_proto::envelope::{self, Envelope, KeyRing, KeyStatus, VerifyError};
use skr8tr_proto::keys::{Fingerprint, PublicKey};
use std::collections::HashMap;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// 1, 2, 3, … with no gaps.
    pub seq: u64,
    /// The conductor's clock when the entry was committed (Unix ms).
    pub time_ms: u64,
    pub event: AuditEvent,
    pub outcome: AuditOutcome,
    pub prev_hash: [u8; 32],
    pub hash: [u8; 32],
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuditEvent {
    /// The store was created, trusting its first operator key.
    Genesis {
        cluster: ClusterId,
        key_name: String,
        public_key: Vec<u8>,
    },
    /// A signed operator command, exactly as received (accepted or not).
    Command {
        #[serde(with = "serde_bytes")]
        envelope: Vec<u8>,
        /// The signer named by the envelope, if it could be read.
        signer: Option<Fingerprint>,
        /// What was asked, for listings: `up web.skr8tr`, `scale api 3`.
        summary: String,
    },
    /// A change the conductor made on its own (a replica re-placed, a
    /// rollout step).
    System { summary: String },
    /// A request refused before its sender proved a key (unreadable, bad
    /// or unknown signature, stale, replayed, …). Anyone can send one, so
    /// it is kept as a bounded summary, never whole.
    Unverified {
        /// The sender's address.
        from: String,
        /// Bytes received.
        size: u64,
        /// SHA-256 of what was received.
        digest: [u8; 32],
        /// The first bytes received (at most [`UNVERIFIED_HEAD_BYTES`]).
        #[serde(with = "serde_bytes")]
        head: Vec<u8>,
        /// The key the envelope names, unverified.
        claimed_signer: Option<Fingerprint>,
        /// What it claims to ask, unverified, at most
        /// [`UNVERIFIED_SUMMARY_CHARS`] characters.
        summary: String,
    },
}

/// How much of an unverified request's bytes its audit entry keeps.
pub const UNVERIFIED_HEAD_BYTES: usize = 256;
/// How long an unverified request's claimed summary may be.
pub const UNVERIFIED_SUMMARY_CHARS: usize = 160;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuditOutcome {
    Accepted,
    Rejected {
        /// Stable short code (`bad-signature`, `replayed`, …).
        code: String,
        /// What the operator was told.
        message: String,
    },
}

impl AuditRecord {
    pub fn is_accepted(&self) -> bool {
        self.outcome == AuditOutcome::Accepted
    }

    /// Who did it: the signer's fingerprint, `genesis` or `conductor`.
    pub fn actor(&self) -> String {
        match &self.event {
            AuditEvent::Genesis { .. } => "genesis".into(),
            AuditEvent::Command {
                signer: Some(fp), ..
            } => fp.to_string(),
            AuditEvent::Command { signer: None, .. } => "unknown".into(),
            AuditEvent::System { .. } => "conductor".into(),
            AuditEvent::Unverified { from, .. } => from.clone(),
        }
    }

    pub fn summary(&self) -> String {
        match &self.event {
            AuditEvent::Genesis {
                key_name,
                public_key,
                ..
            } => format!(
                "cluster created; operator key {key_name} ({}) trusted",
                Fingerprint::of(public_key)
            ),
            AuditEvent::Command { summary, .. } | AuditEvent::System { summary } => summary.clone(),
            AuditEvent::Unverified {
                size,
                digest,
                claimed_signer,
                summary,
                ..
            } => {
                let claims = claimed_signer
                    .map(|fp| format!(", names key {fp}"))
                    .unwrap_or_default();
                format!(
                    "unverified: {summary} ({size} bytes, sha256 {}{claims})",
                    skr8tr_proto::hex::encode(&digest[..8])
                )
            }
        }
    }
}

/// The hash an entry must carry, given the one before it.
pub fn entry_hash(
    prev_hash: &[u8; 32],
    seq: u64,
    time_ms: u64,
    event: &AuditEvent,
    outcome: &AuditOutcome,
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"skr8tr-audit-v1");
    h.update(prev_hash);
    h.update(crate::records::encode(&(seq, time_ms, event, outcome)));
    h.finalize().into()
}

/// Builds the next entry of a chain whose last entry is `(seq, hash)`.
pub(crate) fn next_entry(
    head: (u64, [u8; 32]),
    time_ms: u64,
    event: AuditEvent,
    outcome: AuditOutcome,
) -> AuditRecord {
    let (prev_seq, prev_hash) = head;
    let seq = prev_seq + 1;
    let hash = entry_hash(&prev_hash, seq, time_ms, &event, &outcome);
    AuditRecord {
        seq,
        time_ms,
        event,
        outcome,
        prev_hash,
        hash,
    }
}

/// What a successful verification covered.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ChainReport {
    pub entries: u64,
    /// Accepted commands whose signature was re-verified.
    pub signatures_verified: u64,
    pub rejected: u64,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("the audit log is empty: it must start with the cluster's genesis entry")]
    Empty,
    #[error("entry {seq} should be the genesis entry")]
    NoGenesis { seq: u64 },
    #[error("entry {found} follows entry {previous}: entries were deleted or reordered")]
    Gap { previous: u64, found: u64 },
    #[error(
        "entry {seq} does not link to the entry before it: entries were deleted, reordered or replaced"
    )]
    BrokenLink { seq: u64 },
    #[error("entry {seq} was altered: its contents do not match its hash")]
    Altered { seq: u64 },
    #[error("entry {seq} records an accepted command that does not verify: {reason}")]
    BadCommand { seq: u64, reason: String },
}

/// Operator keys as the log says they were at some point of it.
#[derive(Default)]
struct KeysAtTheTime(HashMap<Fingerprint, (PublicKey, bool)>);

impl KeyRing for KeysAtTheTime {
    fn lookup(&self, fingerprint: &Fingerprint) -> KeyStatus<'_> {
        match self.0.get(fingerprint) {
            Some((_, true)) => KeyStatus::Revoked,
            Some((key, false)) => KeyStatus::Active(key),
            None => KeyStatus::Unknown,
        }
    }
}

/// Checks every link of the chain and re-verifies every accepted command's
/// signature, cluster and time against the keys valid when it was accepted.
pub fn verify_chain(
    records: impl IntoIterator<Item = AuditRecord>,
) -> Result<ChainReport, ChainError> {
    let mut verifier = ChainVerifier::default();
    for r in records {
        verifier.push(&r)?;
    }
    verifier.finish()
}

/// [`verify_chain`] one entry at a time, so a log of any size is checked
/// in the memory of one entry (and of the operator keys it names).
#[derive(Default)]
pub struct ChainVerifier {
    report: ChainReport,
    keys: KeysAtTheTime,
    cluster: Option<ClusterId>,
    prev: Option<(u64, [u8; 32])>,
}

impl ChainVerifier {
    /// Checks the next entry of the log.
    pub fn push(&mut self, r: &AuditRecord) -> Result<(), ChainError> {
        let expected_seq = self.prev.map_or(1, |(s, _)| s + 1);
        if r.seq != expected_seq {
            return Err(ChainError::Gap {
                previous: expected_seq - 1,
                found: r.seq,
            });
        }
        let prev_hash = self.prev.map_or([0; 32], |(_, h)| h);
        if r.prev_hash != prev_hash {
            return Err(ChainError::BrokenLink { seq: r.seq });
        }
        if entry_hash(&r.prev_hash, r.seq, r.time_ms, &r.event, &r.outcome) != r.hash {
            return Err(ChainError::Altered { seq: r.seq });
        }
        match (&r.event, r.seq) {
            (
                AuditEvent::Genesis {
                    cluster: c,
                    public_key,
                    ..
                },
                1,
            ) => {
                self.cluster = Some(*c);
                let key =
                    PublicKey::from_bytes(public_key).map_err(|e| ChainError::BadCommand {
                        seq: 1,
                        reason: e.to_string(),
                    })?;
                self.keys.0.insert(key.fingerprint(), (key, false));
            }
            (_, 1) | (AuditEvent::Genesis { .. }, _) => {
                return Err(ChainError::NoGenesis { seq: r.seq });
            }
            (
                AuditEvent::Command {
                    envelope: bytes, ..
                },
                seq,
            ) if r.is_accepted() => {
                let cluster = self.cluster.ok_or(ChainError::NoGenesis { seq: 1 })?;
                let bad = |e: VerifyError| ChainError::BadCommand {
                    seq,
                    reason: e.to_string(),
                };
                let verified =
                    envelope::verify(bytes, &self.keys, &cluster, r.time_ms).map_err(bad)?;
                apply_key_change(&mut self.keys, &verified.payload.command, seq)?;
                self.report.signatures_verified += 1;
            }
            (AuditEvent::Command { .. } | AuditEvent::Unverified { .. }, _) => {
                self.report.rejected += 1;
            }
            (AuditEvent::System { .. }, _) => {}
        }
        self.report.entries += 1;
        self.prev = Some((r.seq, r.hash));
        Ok(())
    }

    /// The report, once every entry was pushed.
    pub fn finish(self) -> Result<ChainReport, ChainError> {
        if self.report.entries == 0 {
            return Err(ChainError::Empty);
        }
        Ok(self.report)
    }

    /// The last entry checked: its sequence number and hash.
    pub fn head(&self) -> Option<(u64, [u8; 32])> {
        self.prev
    }
}

fn apply_key_change(
    keys: &mut KeysAtTheTime,
    command: &Command,
    seq: u64,
) -> Result<(), ChainError> {
    match command {
        Command::AddOperatorKey { public_key, .. } => {
            let key = PublicKey::from_bytes(public_key).map_err(|e| ChainError::BadCommand {
                seq,
                reason: e.to_string(),
            })?;
            keys.0.insert(key.fingerprint(), (key, false));
        }
        Command::RevokeOperatorKey { fingerprint } => {
            if let Some(entry) = keys.0.get_mut(fingerprint) {
                entry.1 = true;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Decodes one exported entry (see `Snapshot::audit_raw`).
pub fn decode_entry(bytes: &[u8]) -> Result<AuditRecord, crate::StoreError> {
    use crate::records::Record;
    AuditRecord::decode(bytes)
}

/// The envelope inside a command entry, decoded without trusting it.
pub fn envelope_of(record: &AuditRecord) -> Option<Envelope> {
    match &record.event {
        AuditEvent::Command { envelope, .. } => Envelope::from_bytes(envelope).ok(),
        _ => None,
    }
}
