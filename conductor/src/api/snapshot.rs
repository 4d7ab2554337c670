//! `POST /v1/snapshot`: an operator's signed `snapshot save` is verified
//! and recorded like any command, then the store is copied as of one read
//! view (the writer goes on) into a file beside it, whose bytes stream
//! back after a preamble the conductor signs (`wire::snapshot`). One
//! snapshot at a time; the copy is removed once sent, or if the client
//! goes away.

use super::body;
use crate::state::Conductor;
use axum::body::{Body, Bytes};
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::Response;
use sha2::{Digest, Sha256};
use skr8tr_proto::code::Code;
use skr8tr_proto::command::Command;
use skr8tr_proto::wire::{self, SignedSnapshotHeader, SnapshotHeader};
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set while a snapshot is being taken or sent (one per process: each
/// holds a copy of the whole store on disk).
static TAKING: AtomicBool = AtomicBool::new(false);
/// Bytes per body frame.
const CHUNK: usize = 256 * 1024;

pub async fn snapshot(
    State(c): State<Arc<Conductor>>,
    peer: Option<Extension<super::Peer>>,
    bytes: Bytes,
) -> Response {
    let is_snapshot = wire::decode::<wire::CommandRequest>(&bytes)
        .ok()
        .and_then(|r| skr8tr_proto::envelope::Envelope::from_bytes(&r.envelope).ok())
        .and_then(|e| e.payload_unverified().ok())
        .is_some_and(|p| matches!(p.command, Command::SnapshotSave));
    if !is_snapshot {
        return super::ApiError::new(
            Code::BadRequest,
            "only signed `snapshot save` commands are taken here",
        )
        .into_response_body();
    }
    if TAKING.swap(true, Ordering::AcqRel) {
        return super::ApiError::new(
            Code::Unavailable,
            "a snapshot is being taken; try again when it is done",
        )
        .into_response_body();
    }
    let guard = Taking;
    let recorded = super::commands::record(&c, super::Peer::ip(peer), bytes).await;
    if recorded.command.is_none() || !recorded.reply.accepted {
        return body(recorded.status, &recorded.reply);
    }
    let copy = c.config.data_dir.join(format!(
        "snapshot.{}.tmp",
        skr8tr_proto::hex::encode(&super::logs::random_nonce())
    ));
    let taker = c.clone();
    let path = copy.clone();
    let taken = tokio::task::spawn_blocking(move || take(&taker, &path)).await;
    let failed = |why: String| {
        let _ = std::fs::remove_file(&copy);
        tracing::warn!("snapshot failed: {why}");
        super::ApiError::new(Code::Internal, format!("the snapshot failed: {why}"))
            .into_response_body()
    };
    let preamble = match taken {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => return failed(e),
        Err(e) => return failed(e.to_string()),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    tokio::task::spawn_blocking(move || {
        let _guard = guard;
        send(&copy, preamble, &tx);
        let _ = std::fs::remove_file(&copy);
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(axum::http::header::CONTENT_TYPE, "application/octet-stream")
        .body(Body::from_stream(super::logs::ReceiverStream(rx)))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

/// Clears [`TAKING`] when the snapshot is sent or given up.
struct Taking;

impl Drop for Taking {
    fn drop(&mut self) {
        TAKING.store(false, Ordering::Release);
    }
}

/// Copies the store to `path` and returns the signed preamble.
fn take(c: &Conductor, path: &PathBuf) -> Result<Vec<u8>, String> {
    let (audit_seq, audit_hash) = c.store.backup(path).map_err(|e| e.to_string())?;
    let mut file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        total += n as u64;
    }
    let header = SnapshotHeader {
        cluster: c.cluster,
        taken_at_ms: c.now_ms(),
        audit_seq,
        audit_hash,
        db_bytes: total,
        db_sha256: hash.finalize().into(),
    };
    tracing::info!(audit_seq, bytes = total, "snapshot taken");
    let signed = SignedSnapshotHeader::sign(&c.key, &header).map_err(|e| e.to_string())?;
    Ok(signed.preamble())
}

/// The preamble, then the copy's bytes, until done or the client is gone.
fn send(path: &PathBuf, preamble: Vec<u8>, tx: &tokio::sync::mpsc::Sender<Bytes>) {
    if tx.blocking_send(Bytes::from(preamble)).is_err() {
        return;
    }
    let Ok(mut file) = std::fs::File::open(path) else {
        return;
    };
    let mut buf = vec![0u8; CHUNK];
    loop {
        match file.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if tx.blocking_send(Bytes::copy_from_slice(&buf[..n])).is_err() {
                    return;
                }
            }
        }
    }
}
