//! Admission of node (and ingress) keys. A session proves its key over
//! the TLS exporter (see `session`); a name the conductor does not know
//! yet must come with an operator-signed join ticket for it, presented in
//! that same session — so a ticket is only ever used inside TLS, by the
//! holder of the key it admits. The ticket is verified like any command,
//! and its admission — the key bound to the name — is committed with the
//! ticket's envelope as the audit entry. A ticket works once. A ticket
//! refused before it proved its signer (forged, stale, replayed) is
//! recorded like any unverified refusal, within the same budget.

use super::ApiError;
use crate::state::Conductor;
use skr8tr_proto::code::Code;
use skr8tr_proto::command::Command;
use skr8tr_proto::envelope;
use skr8tr_proto::keys::PublicKey;
use skr8tr_store::{CommandEntry, Outcome, Refusal};
use std::net::IpAddr;
use std::sync::Arc;

/// Admits `key` (proven by the session) under `name`: it already is, or
/// `ticket` admits it now.
pub async fn admit_session(
    c: &Arc<Conductor>,
    name: &str,
    key: PublicKey,
    ticket: Option<Vec<u8>>,
    from: IpAddr,
) -> Result<(), ApiError> {
    let now = c.now_ms();
    if let Some(admitted) = c.node_key(name) {
        if admitted == key {
            return Ok(());
        }
        return match ticket {
            // Another agent presents a ticket for a name already taken: a
            // mistake or an impostor (a stolen ticket presented second) —
            // either way it goes in the history.
            Some(ticket) => {
                let refusal = Refusal::new(
                    Code::AlreadyAdmitted,
                    format!(
                        "`{name}` is already admitted with another key; pick another name, or \
                         revoke the old key first (`skr8tr node revoke {name}`)"
                    ),
                );
                record_rejection(c, from, ticket, refusal.clone(), now).await;
                Err(ApiError::new(refusal.code, refusal.message))
            }
            None => Err(ApiError::new(
                Code::NodeAuth,
                format!(
                    "`{name}` is admitted with another key ({})",
                    admitted.fingerprint()
                ),
            )),
        };
    }
    let Some(ticket) = ticket else {
        return Err(not_admitted(name));
    };
    match admit(c, name, key.clone(), ticket, from, now).await {
        Ok(()) => Ok(()),
        // Two first sessions of one node raced with the same ticket; the
        // other one admitted this very key (read it from the store: the
        // cache is filled only after that commit returned).
        Err(_) if admitted_in_store(c, name, &key) => {
            c.set_node_key(name, key);
            Ok(())
        }
        Err(e) => Err(e),
    }
}

fn not_admitted(name: &str) -> ApiError {
    ApiError::new(
        Code::NotAdmitted,
        format!(
            "`{name}` is not admitted to this cluster with this key; an operator makes a join \
             ticket with `skr8tr ticket {name} --out {name}.ticket`, then start it with \
             `--ticket {name}.ticket`"
        ),
    )
}

async fn admit(
    c: &Arc<Conductor>,
    name: &str,
    key: PublicKey,
    ticket: Vec<u8>,
    from: IpAddr,
    now: u64,
) -> Result<(), ApiError> {
    // On the blocking pool, as every ML-DSA operation of the conductor.
    let (ring, cluster, signed) = (c.keyring(), c.cluster, ticket.clone());
    let verified =
        tokio::task::spawn_blocking(move || envelope::verify(&signed, &*ring, &cluster, now))
            .await
            .map_err(|e| ApiError::internal(format!("verification failed: {e}")))?;
    let verified = match verified {
        Ok(v) => v,
        Err(e) => {
            let refusal = Refusal::new(e.code(), format!("join ticket of node `{name}`: {e}"));
            record_rejection(c, from, ticket, refusal.clone(), now).await;
            return Err(ApiError::new(refusal.code, refusal.message));
        }
    };
    let replayed = c
        .store
        .snapshot()
        .and_then(|s| s.nonce_seen(&verified.payload.nonce))
        .unwrap_or(false);
    if replayed {
        let refusal = Refusal::new(
            Code::Replayed,
            format!(
                "the join ticket for `{name}` was already used; make a new one with `skr8tr ticket {name}`"
            ),
        );
        record_rejection(c, from, ticket, refusal.clone(), now).await;
        return Err(ApiError::new(refusal.code, refusal.message));
    }
    let Command::AdmitNode {
        name: for_name,
        expires_at_ms,
    } = verified.payload.command.clone()
    else {
        return Err(ApiError::new(
            Code::TicketMismatch,
            "the ticket is a signed command, but not a join ticket",
        ));
    };
    if for_name != name {
        return Err(ApiError::new(
            Code::TicketMismatch,
            format!("the ticket admits node `{for_name}`, not `{name}`"),
        ));
    }
    let _ = expires_at_ms; // checked by `verify`; the store remembers the nonce until then
    let entry = CommandEntry::new(ticket, &verified, now);
    let store = c.store.clone();
    let (node, k) = (name.to_string(), key.clone());
    let by = verified.signer;
    let outcome = tokio::task::spawn_blocking(move || {
        store.command(entry, move |tx| {
            if tx.node_key(&node)?.is_some() {
                return Err(Refusal::new(
                    Code::AlreadyAdmitted,
                    format!(
                        "node `{node}` is already admitted with another key; pick another name"
                    ),
                )
                .into());
            }
            tx.admit_node(&node, &k, Some(by))?;
            Ok(format!("node `{node}` admitted ({})", k.fingerprint()))
        })
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::store)?;
    match outcome {
        Outcome::Accepted { value, .. } => {
            tracing::info!(node = %name, key = %key.fingerprint(), signer = %by, "{value}");
            c.set_node_key(name, key);
            Ok(())
        }
        Outcome::Rejected { refusal, .. } => {
            let message = if refusal.code == Code::Replayed {
                format!(
                    "the join ticket for `{name}` was already used; make a new one with `skr8tr ticket {name}`"
                )
            } else {
                refusal.message
            };
            Err(ApiError::new(refusal.code, message))
        }
    }
}

async fn record_rejection(
    c: &Arc<Conductor>,
    from: IpAddr,
    ticket: Vec<u8>,
    refusal: Refusal,
    now: u64,
) {
    let envelope = Some(ticket.clone());
    super::commands::unverified(c, from, ticket, envelope.as_deref(), refusal, now).await;
}

fn admitted_in_store(c: &Conductor, name: &str, key: &PublicKey) -> bool {
    c.store
        .snapshot()
        .and_then(|s| s.node_key(name))
        .ok()
        .flatten()
        .is_some_and(|r| r.public_key == key.to_bytes())
}
