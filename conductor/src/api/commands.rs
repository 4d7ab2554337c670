//! `POST /v1/commands`: verify, then record and apply in one durable commit,
//! then answer. Refusals are recorded too, before the answer.

use super::{body, error::status_for};
use crate::commands;
use crate::state::Conductor;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use skr8tr_proto::command::Command;
use skr8tr_proto::envelope::{self, Envelope, VerifyError};
use skr8tr_proto::wire::{CommandReply, CommandRequest};
use skr8tr_store::{CommandEntry, Outcome, Refusal, RejectionEntry};
use std::sync::Arc;

pub async fn command(State(c): State<Arc<Conductor>>, bytes: Bytes) -> Response {
    let (reply, _) = record(&c, bytes).await;
    let status = if reply.accepted {
        StatusCode::OK
    } else {
        status_for(reply.code.as_deref().unwrap_or(""))
    };
    body(status, &reply)
}

/// Verifies a command request, records it (accepted or not) and applies it.
/// Returns the reply and, when accepted, the command.
pub(super) async fn record(c: &Arc<Conductor>, bytes: Bytes) -> (CommandReply, Option<Command>) {
    let now = c.now_ms();
    let request: CommandRequest = match skr8tr_proto::wire::decode(&bytes) {
        Ok(r) => r,
        Err(e) => {
            let refusal = Refusal::new("malformed", format!("not a command request: {e}"));
            return (
                reject(c, bytes.to_vec(), None, "unreadable".into(), refusal, now).await,
                None,
            );
        }
    };
    let verified = {
        let ring = c.keyring();
        envelope::verify(&request.envelope, &*ring, &c.cluster, now)
    };
    let verified = match verified {
        Ok(v) => v,
        Err(e) => return (refuse_unverified(c, request.envelope, e, now).await, None),
    };
    let command = verified.payload.command.clone();
    let is_key_change = matches!(
        command,
        Command::AddOperatorKey { .. } | Command::RevokeOperatorKey { .. }
    );
    let effect = commands::prepare(&command, verified.signer, &request.secrets);
    let entry = CommandEntry::new(request.envelope, &verified, now);
    let store = c.store.clone();
    let outcome = tokio::task::spawn_blocking(move || match effect {
        Ok(effect) => store.command(entry, effect),
        Err(refusal) => store.command(entry, move |_| Err(refusal.clone().into())),
    })
    .await;
    match outcome {
        Ok(Ok(Outcome::Accepted { seq, value })) => {
            if is_key_change && let Err(e) = c.reload_keys() {
                tracing::error!("reloading operator keys: {e}");
            }
            c.bump();
            tracing::info!(seq, signer = %verified.signer, "{}", command.summary());
            let reply = CommandReply {
                seq: Some(seq),
                accepted: true,
                code: None,
                message: value,
            };
            (reply, Some(command))
        }
        Ok(Ok(Outcome::Rejected { seq, refusal })) => {
            tracing::info!(code = %refusal.code, "refused: {}", refusal.message);
            (refused(seq, refusal), None)
        }
        Ok(Err(e)) => (unavailable(e), None),
        Err(e) => (unavailable(e), None),
    }
}

async fn refuse_unverified(
    c: &Arc<Conductor>,
    envelope: Vec<u8>,
    e: VerifyError,
    now: u64,
) -> CommandReply {
    // Name the signer and the command if the framing can be read, so the
    // history says who tried what — without trusting any of it.
    let decoded = Envelope::from_bytes(&envelope).ok();
    let signer = decoded.as_ref().map(|d| d.signer);
    let summary = decoded
        .and_then(|d| d.payload_unverified().ok())
        .map_or_else(|| "unreadable".to_string(), |p| p.command.summary());
    let refusal = Refusal::new(e.code(), e.to_string());
    reject(c, envelope, signer, summary, refusal, now).await
}

pub(super) async fn reject(
    c: &Arc<Conductor>,
    envelope: Vec<u8>,
    signer: Option<skr8tr_proto::keys::Fingerprint>,
    summary: String,
    refusal: Refusal,
    now: u64,
) -> CommandReply {
    tracing::warn!(code = %refusal.code, "rejected command: {}", refusal.message);
    let store = c.store.clone();
    let entry = RejectionEntry {
        envelope: evidence(envelope),
        signer,
        summary,
        refusal: refusal.clone(),
        time_ms: now,
    };
    match tokio::task::spawn_blocking(move || store.reject(entry)).await {
        Ok(Ok(seq)) => refused(Some(seq), refusal),
        Ok(Err(e)) => unavailable(e),
        Err(e) => unavailable(e),
    }
}

/// Unverified bytes cost nothing to send, so the audit log keeps only their
/// first 4 KiB (a real envelope's signature and command fit) — anyone can
/// send refusals, nobody can fill the disk with them.
pub(super) fn evidence(mut bytes: Vec<u8>) -> Vec<u8> {
    const KEEP: usize = 4096;
    bytes.truncate(KEEP);
    bytes
}

fn refused(seq: Option<u64>, refusal: Refusal) -> CommandReply {
    CommandReply {
        seq,
        accepted: false,
        code: Some(refusal.code),
        message: refusal.message,
    }
}

fn unavailable(e: impl std::fmt::Display) -> CommandReply {
    tracing::error!("store failure: {e}");
    CommandReply {
        seq: None,
        accepted: false,
        code: Some("unavailable".into()),
        message: format!(
            "the command may or may not have been recorded ({e}); check `skr8tr history` before retrying"
        ),
    }
}
