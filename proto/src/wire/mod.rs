//! Messages between the conductor, nodes and the CLI. All travel as postcard
//! over HTTP (`application/x-skr8tr`); fields and variants are only ever
//! appended.
//!
//! Node sync, one line: node opens a session (`POST /v1/session`, its key
//! and the conductor's proven over the TLS exporter) → node `POST
//! /v1/nodes/{name}/assignments` with [`NodeMessage::Poll`] → long-poll →
//! [`Assignments`] echoing the poll's nonce → node converges → node `POST
//! /v1/nodes/{name}/report` ([`NodeMessage::Report`]) on every local change
//! and at least every second.
//!
//! Layout:
//! - this file: the postcard codec ([`encode`], [`decode`]) and limits.
//! - `seal`: sign/verify of conductor-signed log requests under their own
//!   context.
//! - `session`: the once-per-connection proofs over the TLS exporter.
//! - `sync`: node sync — assignments, reports, node messages.
//! - `views`: what the API answers — command replies, status, nodes,
//!   replicas, history, keys, the audit export, the registry.
//! - `logs`: conductor-signed log requests and the lines they return.
//! - `snapshot`: the snapshot file's signed preamble.

mod delta;
mod logs;
mod seal;
mod session;
mod snapshot;
mod sync;
mod views;

pub use delta::*;
pub use logs::*;
pub use session::*;
pub use snapshot::*;
pub use sync::*;
pub use views::*;

use serde::Serialize;

/// The media type of every postcard body.
pub const CONTENT_TYPE: &str = "application/x-skr8tr";
/// Largest body any endpoint reads (a full envelope, or a big report).
pub const MAX_BODY_BYTES: usize = crate::envelope::MAX_ENVELOPE_BYTES;

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
