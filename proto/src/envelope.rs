//! The signed-command envelope.
//!
//! `payload = postcard(Payload { command, cluster, issued_at_ms, nonce })`;
//! `signature = ML-DSA-65(payload, context = SIGNING_CONTEXT)`. The envelope
//! names its signer by fingerprint. [`verify`] checks, in this order: size,
//! framing, signer known and not revoked, signature, payload, cluster, clock
//! window — and only then returns the command. Nonce replay is checked by
//! the conductor against its store, since only it remembers nonces.

use crate::clock::unix_ms;
use crate::code::Code;
use crate::command::{ClusterId, Command};
use crate::keys::{Fingerprint, KeyError, PublicKey, SecretKey};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime};

/// Domain separation: a signature made for a Skr8tr command verifies for
/// nothing else, and nothing else verifies as a command.
pub const SIGNING_CONTEXT: &[u8] = b"skr8tr/command/v1";
/// How far `issued_at` may be from the verifier's clock, either way.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(30);
/// The largest envelope accepted: a full-size manifest plus framing.
pub const MAX_ENVELOPE_BYTES: usize = crate::manifest::MAX_MANIFEST_BYTES + 16 * 1024;
/// Longest a join ticket (`Command::AdmitNode`) may be valid.
pub const MAX_TICKET_LIFETIME_MS: u64 = 24 * 3600 * 1000;
/// The envelope framing version this code writes and reads.
pub const ENVELOPE_VERSION: u8 = 1;

/// What is signed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload {
    pub command: Command,
    pub cluster: ClusterId,
    /// Milliseconds since the Unix epoch, by the signer's clock.
    pub issued_at_ms: u64,
    /// Random; the conductor refuses a nonce it has seen.
    pub nonce: Nonce,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Nonce(pub [u8; 16]);

impl Nonce {
    pub fn generate() -> Result<Nonce, KeyError> {
        let mut n = [0u8; 16];
        getrandom::fill(&mut n).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(Nonce(n))
    }
}

impl std::fmt::Display for Nonce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::hex::encode(&self.0))
    }
}

impl std::fmt::Debug for Nonce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Nonce({self})")
    }
}

/// What travels: the payload bytes exactly as signed, so the audit log can
/// keep them and re-verify them later.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub version: u8,
    pub signer: Fingerprint,
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

impl Envelope {
    /// Signs `command` for `cluster` at `now` with a fresh random nonce.
    pub fn sign(
        key: &SecretKey,
        command: Command,
        cluster: ClusterId,
        now: SystemTime,
    ) -> Result<Envelope, KeyError> {
        let payload = Payload {
            command,
            cluster,
            issued_at_ms: unix_ms(now),
            nonce: Nonce::generate()?,
        };
        Envelope::sign_payload(key, &payload)
    }

    /// Signs a payload as given (tests use this to make stale or replayed ones).
    pub fn sign_payload(key: &SecretKey, payload: &Payload) -> Result<Envelope, KeyError> {
        // postcard writes to a Vec without failing for these plain types.
        let bytes = postcard::to_allocvec(payload).map_err(|_| KeyError::Sign)?;
        let signature = key.sign(&bytes, SIGNING_CONTEXT)?;
        Ok(Envelope {
            version: ENVELOPE_VERSION,
            signer: key.public().fingerprint(),
            payload: bytes,
            signature,
        })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// Decodes the framing only; nothing inside is trusted yet.
    pub fn from_bytes(bytes: &[u8]) -> Result<Envelope, VerifyError> {
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(VerifyError::TooLarge {
                size: bytes.len(),
                limit: MAX_ENVELOPE_BYTES,
            });
        }
        let (env, rest): (Envelope, _) =
            postcard::take_from_bytes(bytes).map_err(|e| VerifyError::Malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(VerifyError::Malformed(format!(
                "{} unexpected bytes after the envelope",
                rest.len()
            )));
        }
        if env.version != ENVELOPE_VERSION {
            return Err(VerifyError::UnsupportedVersion(env.version));
        }
        Ok(env)
    }

    /// Decodes the payload without checking anything (for audit listings of
    /// commands that were already verified, or rejected ones).
    pub fn payload_unverified(&self) -> Result<Payload, VerifyError> {
        decode_payload(&self.payload)
    }
}

fn decode_payload(bytes: &[u8]) -> Result<Payload, VerifyError> {
    let (payload, rest): (Payload, _) = postcard::take_from_bytes(bytes)
        .map_err(|e| VerifyError::MalformedPayload(e.to_string()))?;
    if !rest.is_empty() {
        return Err(VerifyError::MalformedPayload(format!(
            "{} unexpected bytes after the command (signed by a newer skr8tr?)",
            rest.len()
        )));
    }
    Ok(payload)
}

/// Where the verifier looks up signers.
pub trait KeyRing {
    fn lookup(&self, fingerprint: &Fingerprint) -> KeyStatus<'_>;
}

pub enum KeyStatus<'a> {
    Active(&'a PublicKey),
    Revoked,
    Unknown,
}

/// A command whose signature, signer, cluster and time all checked out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    pub signer: Fingerprint,
    pub payload: Payload,
}

/// Why an envelope was refused. Each reason is distinct so the audit log and
/// the operator see exactly what went wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("command is {size} bytes; the limit is {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("not a signed command: {0}")]
    Malformed(String),
    #[error(
        "signed-command format version {0} is not supported; this conductor reads version {ENVELOPE_VERSION}"
    )]
    UnsupportedVersion(u8),
    #[error(
        "key {0} is not an operator key of this cluster; an operator can add it with `skr8tr key add`"
    )]
    UnknownKey(Fingerprint),
    #[error("key {0} has been revoked")]
    RevokedKey(Fingerprint),
    #[error("bad signature: the command was altered or not signed by key {0}")]
    BadSignature(Fingerprint),
    #[error("signed command cannot be read: {0}")]
    MalformedPayload(String),
    #[error("command was signed for cluster {got}, but this is cluster {expected}")]
    WrongCluster { expected: ClusterId, got: ClusterId },
    #[error("command was signed {age_ms} ms ago, more than the {} s allowed; check the clocks, then sign it again", MAX_CLOCK_SKEW.as_secs())]
    Stale { age_ms: u64 },
    #[error("command is dated {ahead_ms} ms in the future, more than the {} s allowed; check the clocks", MAX_CLOCK_SKEW.as_secs())]
    FromFuture { ahead_ms: u64 },
}

impl VerifyError {
    /// A stable, short code for logs, the audit record and scripts.
    pub fn code(&self) -> Code {
        match self {
            VerifyError::TooLarge { .. } => Code::TooLarge,
            VerifyError::Malformed(_) => Code::Malformed,
            VerifyError::UnsupportedVersion(_) => Code::UnsupportedVersion,
            VerifyError::UnknownKey(_) => Code::UnknownKey,
            VerifyError::RevokedKey(_) => Code::RevokedKey,
            VerifyError::BadSignature(_) => Code::BadSignature,
            VerifyError::MalformedPayload(_) => Code::MalformedPayload,
            VerifyError::WrongCluster { .. } => Code::WrongCluster,
            VerifyError::Stale { .. } => Code::Stale,
            VerifyError::FromFuture { .. } => Code::FromFuture,
        }
    }

    /// Whether the signer proved its key (the signature verified) before
    /// this refusal: then the envelope is evidence worth keeping whole.
    pub fn signer_proven(&self) -> bool {
        matches!(
            self,
            VerifyError::WrongCluster { .. }
                | VerifyError::Stale { .. }
                | VerifyError::FromFuture { .. }
        )
    }
}

/// Verifies an encoded envelope for `cluster` at `now_ms` (Unix milliseconds).
pub fn verify(
    bytes: &[u8],
    keys: &(impl KeyRing + ?Sized),
    cluster: &ClusterId,
    now_ms: u64,
) -> Result<Verified, VerifyError> {
    let env = Envelope::from_bytes(bytes)?;
    verify_envelope(&env, keys, cluster, now_ms)
}

/// Verifies a decoded envelope; see [`verify`].
pub fn verify_envelope(
    env: &Envelope,
    keys: &(impl KeyRing + ?Sized),
    cluster: &ClusterId,
    now_ms: u64,
) -> Result<Verified, VerifyError> {
    let key = match keys.lookup(&env.signer) {
        KeyStatus::Active(key) => key,
        KeyStatus::Revoked => return Err(VerifyError::RevokedKey(env.signer)),
        KeyStatus::Unknown => return Err(VerifyError::UnknownKey(env.signer)),
    };
    if !key.verify(&env.payload, SIGNING_CONTEXT, &env.signature) {
        return Err(VerifyError::BadSignature(env.signer));
    }
    let payload = decode_payload(&env.payload)?;
    if payload.cluster != *cluster {
        return Err(VerifyError::WrongCluster {
            expected: *cluster,
            got: payload.cluster,
        });
    }
    let skew = u64::try_from(MAX_CLOCK_SKEW.as_millis()).unwrap_or(u64::MAX);
    // A join ticket is valid until its own expiry (at most a day), not
    // just for the clock window: a node may start minutes after the
    // operator made it. Its nonce is remembered that long (see the store).
    let valid_until = match &payload.command {
        Command::AdmitNode { expires_at_ms, .. } => {
            (*expires_at_ms).min(payload.issued_at_ms.saturating_add(MAX_TICKET_LIFETIME_MS))
        }
        _ => payload.issued_at_ms,
    };
    if now_ms > valid_until && now_ms - valid_until > skew {
        return Err(VerifyError::Stale {
            age_ms: now_ms - valid_until,
        });
    }
    if payload.issued_at_ms > now_ms && payload.issued_at_ms - now_ms > skew {
        return Err(VerifyError::FromFuture {
            ahead_ms: payload.issued_at_ms - now_ms,
        });
    }
    Ok(Verified {
        signer: env.signer,
        payload,
    })
}

/// A key ring of one list of active keys, for the CLI and tests.
impl KeyRing for [PublicKey] {
    fn lookup(&self, fingerprint: &Fingerprint) -> KeyStatus<'_> {
        match self.iter().find(|k| k.fingerprint() == *fingerprint) {
            Some(k) => KeyStatus::Active(k),
            None => KeyStatus::Unknown,
        }
    }
}
