//! Sealing: a signed message (a conductor-signed log request) is a
//! postcard payload and an ML-DSA-65 signature over it under the message
//! kind's own context, so no other signature (a command's, a session
//! proof) passes as one.

use super::{decode, encode};
use crate::keys::{KeyError, PublicKey, SecretKey};
use serde::Serialize;

/// Encodes `value` and signs it under `context`.
pub(super) fn seal<T: Serialize>(
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
pub(super) fn unseal<T: serde::de::DeserializeOwned>(
    key: &PublicKey,
    context: &[u8],
    payload: &[u8],
    signature: &[u8],
) -> Option<Result<T, String>> {
    key.verify(payload, context, signature)
        .then(|| decode(payload))
}

/// A request's `issued_at_ms` is within the clock window around `now_ms`.
pub(super) fn fresh(issued_at_ms: u64, now_ms: u64) -> bool {
    issued_at_ms.abs_diff(now_ms) <= crate::envelope::MAX_CLOCK_SKEW.as_millis() as u64
}
