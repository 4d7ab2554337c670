//! `POST /v1/snapshot`: an operator's signed `snapshot save` is verified
//! and recorded like any command, then the store is copied as of one read
//! view (the writer goes on) into a file beside it, whose bytes stream
//! back after a preamble the conductor signs (`wire::snapshot`), newlines
//! before it while the copy is made. One snapshot at a time; the copy is
//! removed once sent, failed, or the client gone, and any a killed
//! conductor left is removed at the next start. The copy needs as much
//! free space beside the store as the store takes: a disk that fills
//! fails the copy (and the live store's writes until it is removed, which
//! the writer recovers from, as from any full disk).

use super::body;
use crate::state::Conductor;
use axum::body::{Body, Bytes};
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::Response;
use sha2::{Digest, Sha256};
use skr8tr_proto::code::Code;
use skr8tr_proto::command::Command;
use skr8tr_proto::wire::{SignedSnapshotHeader, SnapshotHeader};
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set while a snapshot is being taken or sent (one per process: each
/// holds a copy of the whole store on disk).
static TAKING: AtomicBool = AtomicBool::new(false);
/// Bytes per body frame.
const CHUNK: usize = 256 * 1024;
/// A newline this often while the copy is made (the API closes a
/// connection idle for a minute).
const KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(10);
/// The copies' names in the data directory.
const TMP_PREFIX: &str = "snapshot.";

pub async fn snapshot(
    State(c): State<Arc<Conductor>>,
    peer: Option<Extension<super::Peer>>,
    bytes: Bytes,
) -> Response {
    let is_snapshot =
        super::commands::claimed(&bytes).is_some_and(|c| matches!(c, Command::SnapshotSave));
    if !is_snapshot {
        return super::ApiError::new(
            Code::BadRequest,
            "only signed `snapshot save` commands are taken here",
        )
        .into_response_body();
    }
    // Verified and recorded first: an unsigned request takes no turn.
    let recorded = super::commands::record(&c, super::Peer::ip(peer), bytes).await;
    if recorded.command.is_none() || !recorded.reply.accepted {
        return body(recorded.status, &recorded.reply);
    }
    if TAKING.swap(true, Ordering::AcqRel) {
        return super::ApiError::new(
            Code::Unavailable,
            "another snapshot is being taken; try again when it is done",
        )
        .into_response_body();
    }
    let guard = Taking;
    let copy = c.config.data_dir.join(format!(
        "{TMP_PREFIX}{}.tmp",
        skr8tr_proto::hex::encode(&super::logs::random_nonce())
    ));
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    // One task owns the turn and the copy, whatever the client does: the
    // copy is removed when it is sent, fails, or the client goes away.
    tokio::spawn(async move {
        let _guard = guard;
        let _cleanup = Cleanup(copy.clone());
        let path = copy.clone();
        let mut taking = tokio::task::spawn_blocking(move || take(&c, &path));
        let taken = loop {
            tokio::select! {
                taken = &mut taking => break taken,
                // Newlines before the preamble keep the connection from
                // looking idle while a big store is copied.
                _ = tokio::time::sleep(KEEPALIVE) => {
                    if tx.send(Bytes::from_static(b"\n")).await.is_err() {
                        let _ = taking.await;
                        return;
                    }
                }
            }
        };
        let preamble = match taken {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => return tracing::warn!("snapshot failed: {e}"),
            Err(e) => return tracing::warn!("snapshot failed: {e}"),
        };
        let _ = tokio::task::spawn_blocking(move || send(&copy, preamble, &tx)).await;
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(axum::http::header::CONTENT_TYPE, "application/octet-stream")
        .body(Body::from_stream(super::logs::ReceiverStream(rx)))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

/// Removes a copy when dropped.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Copies left by a conductor killed while it took one: removed at start.
pub fn remove_leftovers(data_dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(TMP_PREFIX) && name.ends_with(".tmp") {
            let _ = std::fs::remove_file(e.path());
        }
    }
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
    skr8tr_proto::files::private_file(path).map_err(|e| e.to_string())?;
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
