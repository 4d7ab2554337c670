//! `POST /v1/commands`: verify, then record and apply in one durable commit,
//! then answer. Refusals are recorded too, before the answer: in full when
//! the sender proved its key (the command was verified, fresh and new, and
//! only its effect refused it); as a bounded summary, within the budget of
//! `crate::refusals`, when it did not (unreadable, a bad or unknown
//! signature, stale, from the future, for another cluster, replayed) —
//! anyone can send those.

use super::{Peer, body, error::status_for};
use crate::commands;
use crate::refusals::Decision;
use crate::state::Conductor;
use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::Response;
use skr8tr_proto::code::Code;
use skr8tr_proto::command::Command;
use skr8tr_proto::envelope::{self, Envelope};
use skr8tr_proto::keys::Fingerprint;
use skr8tr_proto::wire::{CommandReply, CommandRequest};
use skr8tr_store::{CommandEntry, Outcome, Refusal, UnverifiedEntry};
use std::net::IpAddr;
use std::sync::Arc;

pub async fn command(
    State(c): State<Arc<Conductor>>,
    peer: Option<Extension<Peer>>,
    bytes: Bytes,
) -> Response {
    // Reads with an answer of their own have their own paths.
    let own_path = claimed(&bytes).is_some_and(|c| matches!(c, Command::SnapshotSave));
    if own_path {
        return super::ApiError::new(
            Code::BadRequest,
            "`snapshot save` goes to /v1/snapshot (`skr8tr snapshot save FILE`)",
        )
        .into_response_body();
    }
    let recorded = record(&c, Peer::ip(peer), bytes).await;
    body(recorded.status, &recorded.reply)
}

/// The command a request says it carries, before anything in it is
/// verified: only to send it to the path that serves it.
pub(super) fn claimed(bytes: &[u8]) -> Option<Command> {
    skr8tr_proto::wire::decode::<CommandRequest>(bytes)
        .ok()
        .and_then(|r| skr8tr_proto::envelope::Envelope::from_bytes(&r.envelope).ok())
        .and_then(|e| e.payload_unverified().ok())
        .map(|p| p.command)
}

/// What recording a command request came to.
pub(super) struct Recorded {
    pub reply: CommandReply,
    pub status: StatusCode,
    /// The command, when it was accepted.
    pub command: Option<Command>,
    /// The command's kind, once its signature verified.
    pub kind: Option<&'static str>,
}

impl Recorded {
    fn refused(seq: Option<u64>, refusal: Refusal) -> Recorded {
        Recorded {
            status: status_for(refusal.code),
            reply: CommandReply {
                seq,
                accepted: false,
                code: Some(refusal.code.as_str().to_string()),
                message: refusal.message,
            },
            command: None,
            kind: None,
        }
    }
}

/// The conductor's own state after an accepted command: keys reloaded,
/// a revoked node forgotten (its next request finds no key, the scheduler
/// no longer counts it), long-polls, watchers and the reconciler told.
fn after_commit(c: &Conductor, command: &Command, is_key_change: bool) {
    if is_key_change && let Err(e) = c.reload_keys() {
        tracing::error!("reloading operator keys: {e}");
    }
    if let Command::RevokeNode { name } = command {
        c.forget_node(name);
    }
    c.bump();
}

/// Verifies a command request from `from`, records it (accepted or not)
/// and applies it; counts it for `/metrics`.
pub(super) async fn record(c: &Arc<Conductor>, from: IpAddr, bytes: Bytes) -> Recorded {
    let recorded = decide(c, from, bytes).await;
    c.metrics
        .command(recorded.kind, recorded.reply.code.as_deref());
    recorded
}

async fn decide(c: &Arc<Conductor>, from: IpAddr, bytes: Bytes) -> Recorded {
    let now = c.now_ms();
    let request: CommandRequest = match skr8tr_proto::wire::decode(&bytes) {
        Ok(r) => r,
        Err(e) => {
            let refusal = Refusal::new(Code::Malformed, format!("not a command request: {e}"));
            return unverified(c, from, bytes.to_vec(), None, refusal, now).await;
        }
    };
    // An ML-DSA verification (about 0.2 ms) goes to the blocking pool,
    // not the thread that serves every connection.
    let (ring, cluster) = (c.keyring(), c.cluster);
    let signed = request.envelope.clone();
    let verified =
        tokio::task::spawn_blocking(move || envelope::verify(&signed, &*ring, &cluster, now)).await;
    let verified = match verified {
        Ok(Ok(v)) => v,
        Err(e) => {
            let refusal = Refusal::new(Code::Internal, format!("verification failed: {e}"));
            return unverified(c, from, bytes.to_vec(), None, refusal, now).await;
        }
        Ok(Err(e)) => {
            let refusal = Refusal::new(e.code(), e.to_string());
            let envelope = Some(request.envelope.as_slice());
            return unverified(c, from, bytes.to_vec(), envelope, refusal, now).await;
        }
    };
    // A replay proves nothing about its sender: anyone who saw the bytes
    // can send them again. Caught here, it costs a summary, not a copy.
    // (The writer checks again inside the commit, for a race of two.)
    if c.store
        .snapshot()
        .and_then(|s| s.nonce_seen(&verified.payload.nonce))
        .unwrap_or(false)
    {
        let refusal = Refusal::new(
            Code::Replayed,
            format!(
                "this signed command (nonce {}) was already received; sign a new one",
                verified.payload.nonce
            ),
        );
        let envelope = Some(request.envelope.as_slice());
        return unverified(c, from, bytes.to_vec(), envelope, refusal, now).await;
    }
    let command = verified.payload.command.clone();
    let is_key_change = matches!(
        command,
        Command::AddOperatorKey { .. } | Command::RevokeOperatorKey { .. }
    );
    let effect = commands::prepare(&command, verified.signer, &request.secrets, &c.sealing);
    let entry = CommandEntry::new(request.envelope, &verified, now).from(from.to_string());
    // What follows a commit runs on the blocking task with it, so a client
    // that hangs up mid-commit cannot leave a revoked key accepted.
    let (after, applied) = (c.clone(), command.clone());
    let outcome = tokio::task::spawn_blocking(move || {
        let began = std::time::Instant::now();
        let outcome = match effect {
            Ok(effect) => after.store.command(entry, effect),
            Err(refusal) => after
                .store
                .command(entry, move |_| Err(refusal.clone().into())),
        };
        after.metrics.commit(began.elapsed());
        if let Ok(Outcome::Accepted { .. }) = &outcome {
            after_commit(&after, &applied, is_key_change);
        }
        outcome
    })
    .await;
    match outcome {
        Ok(Ok(Outcome::Accepted { seq, value })) => {
            tracing::info!(seq, signer = %verified.signer, "{}", command.summary());
            Recorded {
                reply: CommandReply {
                    seq: Some(seq),
                    accepted: true,
                    code: None,
                    message: value,
                },
                status: StatusCode::OK,
                kind: Some(command.kind()),
                command: Some(command),
            }
        }
        Ok(Ok(Outcome::Rejected { seq, refusal })) => {
            tracing::info!(code = %refusal.code, "refused: {}", refusal.message);
            Recorded {
                kind: Some(command.kind()),
                ..Recorded::refused(seq, refusal)
            }
        }
        Ok(Err(e)) => Recorded {
            kind: Some(command.kind()),
            ..store_failed(e)
        },
        Err(e) => Recorded {
            kind: Some(command.kind()),
            ..unavailable(e)
        },
    }
}

/// Records a request refused before its sender proved a key: a bounded
/// summary (what it claims to be, its size, digest and first bytes), if
/// the budget for such refusals allows, and the window's count otherwise.
/// `envelope` is the signed-command framing inside `bytes`, if it came
/// that far: the key and command it names are shown, unverified.
pub(super) async fn unverified(
    c: &Arc<Conductor>,
    from: IpAddr,
    bytes: Vec<u8>,
    envelope: Option<&[u8]>,
    refusal: Refusal,
    now: u64,
) -> Recorded {
    let (decision, ended) = c.refusals.admit(from);
    if let Some(summary) = ended {
        record_summary(c, summary, now).await;
    }
    if decision == Decision::Drop {
        tracing::debug!(%from, code = %refusal.code, "refused, over the record budget: {}", refusal.message);
        return Recorded::refused(None, refusal);
    }
    tracing::warn!(%from, code = %refusal.code, "refused: {}", refusal.message);
    let (claimed_signer, summary) = claims(envelope);
    let entry = UnverifiedEntry {
        from: from.to_string(),
        bytes,
        claimed_signer,
        summary,
        refusal: refusal.clone(),
        time_ms: now,
    };
    let store = c.store.clone();
    match tokio::task::spawn_blocking(move || store.reject(entry)).await {
        Ok(Ok(seq)) => Recorded::refused(Some(seq), refusal),
        Ok(Err(e)) => store_failed(e),
        Err(e) => unavailable(e),
    }
}

/// The signer and command an envelope names, if its framing can be read —
/// so the history says who claims to have tried what, trusting none of it.
fn claims(envelope: Option<&[u8]>) -> (Option<Fingerprint>, String) {
    let decoded = envelope.and_then(|e| Envelope::from_bytes(e).ok());
    let signer = decoded.as_ref().map(|d| d.signer);
    let summary = decoded
        .and_then(|d| d.payload_unverified().ok())
        .map_or_else(|| "unreadable".to_string(), |p| p.command.summary());
    (signer, summary)
}

/// Records the count of a budget window that dropped refusals.
pub(crate) async fn record_summary(c: &Arc<Conductor>, summary: String, now: u64) {
    tracing::warn!("{summary}");
    let store = c.store.clone();
    let result =
        tokio::task::spawn_blocking(move || store.system(summary, Vec::new(), now, |_| Ok(())))
            .await;
    if !matches!(result, Ok(Ok(Outcome::Accepted { .. }))) {
        tracing::error!("cannot record the refusal count");
    }
}

/// A write the store could not make. A full disk is said plainly: the
/// command was not recorded, and what to do.
fn store_failed(e: skr8tr_store::StoreError) -> Recorded {
    if let skr8tr_store::StoreError::Full { .. } = e {
        crate::throttle::STORE_FULL.warn(&e);
        return Recorded::refused(None, Refusal::new(Code::StoreFull, e.to_string()));
    }
    unavailable(e)
}

fn unavailable(e: impl std::fmt::Display) -> Recorded {
    crate::throttle::STORE_FULL.warn(&e);
    Recorded::refused(
        None,
        Refusal::new(
            Code::Unavailable,
            format!(
                "the command may or may not have been recorded ({e}); check `skr8tr history` before retrying"
            ),
        ),
    )
}
