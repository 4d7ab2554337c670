//! The conductor's durable state: one redb file holding apps, specs per
//! generation, placements, rollouts, operator and node keys, the
//! hash-chained audit log, seen nonces and meta (schema version, cluster
//! id). It is the only crate that touches the database file. Its API speaks
//! in domain operations — "record this signed command and its effect" — so
//! no caller can commit a state change without its audit entry. The store
//! never reads the clock or invents ids: callers pass both.
//!
//! Layout:
//! - [`Store`] (this file): open/create, the writer thread, the public API.
//! - `writer`: the single writer, group commit, refusal handling.
//! - [`Tx`] (`tx`): what an effect may change, inside the audited transaction.
//! - [`Snapshot`] (`read`): consistent read views.
//! - `tables`: table definitions and the read API shared by both.
//! - [`records`]: the versioned record types.
//! - [`audit`]: the hash chain and its offline verifier.
//! - `backup`: a consistent copy of the whole store into a new file.
//! - `error`: [`OpenError`] and [`StoreError`].
//!
//! `store/DESIGN.md` describes the tables, the commit protocol and the
//! invariants.

#![forbid(unsafe_code)]

pub mod audit;
mod backup;
mod db;
mod error;
pub mod feed;
mod read;
pub mod records;
mod tables;
mod tx;
mod writer;

pub use audit::{AuditEvent, AuditOutcome, AuditRecord, ChainError, ChainReport, ChainVerifier};
pub use error::{OpenError, StoreError};
pub use read::Snapshot;
pub use tx::{EffectError, Refusal, Tx};
pub use writer::Outcome;

use redb::{Database, ReadableDatabase};
use skr8tr_proto::command::ClusterId;
use skr8tr_proto::envelope::{MAX_CLOCK_SKEW, Nonce, Verified};
use skr8tr_proto::files;
use skr8tr_proto::keys::{Fingerprint, PublicKey};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{self, Sender};
use std::thread::JoinHandle;

use writer::{AnyValue, Kind, Pending};

/// The database file inside the data directory.
pub const DB_FILE: &str = "skr8tr.redb";

#[derive(Clone, Debug)]
pub struct Options {
    /// redb's page cache. The default (1 GiB) would dominate the
    /// conductor's memory; the whole store usually fits in a few MB.
    pub cache_bytes: usize,
    /// Most requests committed by one fsync. 1 turns group commit off.
    pub max_batch: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            cache_bytes: 4 << 20,
            max_batch: 128,
        }
    }
}

/// A signed command that passed verification, ready to be recorded.
#[derive(Clone, Debug)]
pub struct CommandEntry {
    /// The envelope exactly as received.
    pub envelope: Vec<u8>,
    pub signer: Fingerprint,
    pub summary: String,
    pub nonce: Nonce,
    /// When the nonce may be forgotten: once the envelope is too old to
    /// pass the clock check anyway.
    pub nonce_expires_ms: u64,
    /// The conductor's clock (Unix ms).
    pub time_ms: u64,
    /// The apps it is about, for `history --app` (the audit log's per-app
    /// index).
    pub apps: Vec<String>,
    /// Who sent it (an address), for the record if it turns out to be a
    /// replay: then it is kept as a bounded summary, like any request
    /// whose sender proved nothing.
    pub from: String,
}

impl CommandEntry {
    pub fn new(envelope: Vec<u8>, verified: &Verified, time_ms: u64) -> CommandEntry {
        let skew = u64::try_from(MAX_CLOCK_SKEW.as_millis()).unwrap_or(u64::MAX);
        let payload = &verified.payload;
        // The nonce must be remembered as long as the envelope could pass
        // verification: the clock window, or a join ticket's own validity.
        let valid_until = match &payload.command {
            skr8tr_proto::command::Command::AdmitNode { expires_at_ms, .. } => (*expires_at_ms)
                .min(
                    payload
                        .issued_at_ms
                        .saturating_add(skr8tr_proto::envelope::MAX_TICKET_LIFETIME_MS),
                ),
            _ => payload.issued_at_ms,
        };
        CommandEntry {
            envelope,
            signer: verified.signer,
            summary: payload.command.summary(),
            nonce: payload.nonce,
            // Twice the window: room for the conductor's clock to step back.
            nonce_expires_ms: valid_until.saturating_add(2 * skew),
            time_ms,
            apps: payload.command.apps(),
            from: String::new(),
        }
    }

    /// The same entry, naming its sender.
    pub fn from(mut self, from: impl Into<String>) -> CommandEntry {
        self.from = from.into();
        self
    }
}

/// A request refused before its sender proved a key (unreadable, bad or
/// unknown signature, stale, replayed, …), recorded as a bounded summary
/// (`AuditEvent::Unverified`): what it was, never all of it.
#[derive(Clone, Debug)]
pub struct UnverifiedEntry {
    /// The sender's address.
    pub from: String,
    /// What was received (only its size, digest and first bytes are kept).
    pub bytes: Vec<u8>,
    /// The key its envelope names, if the framing could be read.
    pub claimed_signer: Option<Fingerprint>,
    /// What it claims to ask, if the framing could be read.
    pub summary: String,
    pub refusal: Refusal,
    pub time_ms: u64,
}

pub struct Store {
    db: Arc<db::Db>,
    /// What each commit wrote, for in-memory indexes ([`feed`]).
    feed: Arc<feed::Feed>,
    sender: Option<Sender<Pending>>,
    writer: Option<JoinHandle<()>>,
    file: PathBuf,
    cluster: ClusterId,
}

impl Store {
    /// Creates a new store in `dir` (made 0700; the file 0600) for `cluster`,
    /// trusting `key` as its first operator key. Refuses a directory that
    /// already holds a store.
    pub fn create(
        dir: &Path,
        cluster: ClusterId,
        key_name: &str,
        key: &PublicKey,
        now_ms: u64,
        options: Options,
    ) -> Result<Store, OpenError> {
        files::private_dir(dir)?;
        let file = dir.join(DB_FILE);
        let db = open_db(dir, &file, true, &options)?;
        files::private_file(&file)?;
        let store_err = |source| OpenError::Store {
            file: file.clone(),
            source,
        };
        let txn = db.begin_write().map_err(|e| store_err(e.into()))?;
        let schema = skr8tr_migrations::version(&txn).map_err(|source| OpenError::Schema {
            file: file.clone(),
            source,
        })?;
        if schema.is_some() {
            let existing = Snapshot {
                txn: db.begin_read().map_err(|e| store_err(e.into()))?,
            }
            .cluster_id()
            .map(|c| c.to_string())
            .unwrap_or_else(|_| "unknown".into());
            return Err(OpenError::Exists {
                dir: dir.to_path_buf(),
                cluster: existing,
            });
        }
        initialise(&txn, cluster, key_name, key, now_ms).map_err(store_err)?;
        txn.commit().map_err(|e| store_err(e.into()))?;
        Ok(Store::start(db, file, cluster, &options))
    }

    /// Opens the store in `dir` (made 0700, the file 0600, even if they
    /// were looser), upgrading an older schema in one
    /// transaction. A newer schema, a damaged file or a directory another
    /// process holds is refused without changing anything.
    pub fn open(dir: &Path, options: Options) -> Result<Store, OpenError> {
        let file = dir.join(DB_FILE);
        match std::fs::metadata(&file) {
            Ok(m) if m.len() > 0 => {}
            _ => {
                return Err(OpenError::Missing {
                    dir: dir.to_path_buf(),
                });
            }
        }
        // Made private before anything is read: a directory or file some
        // earlier tool left readable by others is not left so.
        files::private_dir(dir)?;
        files::private_file(&file)?;
        let db = open_db(dir, &file, false, &options)?;
        let store_err = |source| OpenError::Store {
            file: file.clone(),
            source,
        };
        let schema_err = |source| OpenError::Schema {
            file: file.clone(),
            source,
        };
        let txn = db.begin_write().map_err(|e| store_err(e.into()))?;
        let Some(version) = skr8tr_migrations::version(&txn).map_err(schema_err)? else {
            return Err(OpenError::Missing {
                dir: dir.to_path_buf(),
            });
        };
        skr8tr_migrations::check_supported(version).map_err(schema_err)?;
        if version < skr8tr_migrations::CURRENT {
            skr8tr_migrations::upgrade(&txn, version).map_err(schema_err)?;
            tables::create_all(&txn).map_err(store_err)?;
            txn.commit().map_err(|e| store_err(e.into()))?;
        } else {
            txn.abort().map_err(|e| store_err(e.into()))?;
        }
        let cluster = Snapshot {
            txn: db.begin_read().map_err(|e| store_err(e.into()))?,
        }
        .cluster_id()
        .map_err(store_err)?;
        Ok(Store::start(db, file, cluster, &options))
    }

    fn start(db: Database, file: PathBuf, cluster: ClusterId, options: &Options) -> Store {
        let db = Arc::new(db::Db::new(db, file.clone(), options.cache_bytes));
        let (sender, rx) = mpsc::channel();
        let writer_db = db.clone();
        let feed = Arc::new(feed::Feed::default());
        let writer_feed = feed.clone();
        let max_batch = options.max_batch.max(1);
        let writer = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer::run(writer_db, writer_feed, rx, max_batch))
            .ok();
        Store {
            db,
            feed,
            sender: writer.as_ref().map(|_| sender),
            writer,
            file,
            cluster,
        }
    }

    /// The cluster id, fixed when the store was created.
    pub fn cluster_id(&self) -> ClusterId {
        self.cluster
    }

    /// The database file.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// What commits changed, for readers that keep desired state in memory.
    pub fn feed(&self) -> &feed::Feed {
        &self.feed
    }

    /// A consistent read view of everything committed so far.
    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        self.db.snapshot()
    }

    /// Records a verified command and applies `effect` in the same durable
    /// commit. A nonce seen before makes it `Rejected` (code `replayed`)
    /// without running `effect`; a refusal from `effect` is recorded
    /// instead of any of its changes. `effect` may run more than once (a
    /// batch that is retried), so it must only act through `Tx`.
    pub fn command<R: Send + 'static>(
        &self,
        entry: CommandEntry,
        effect: impl FnMut(&mut Tx<'_>) -> Result<R, EffectError> + Send + 'static,
    ) -> Result<Outcome<R>, StoreError> {
        let time_ms = entry.time_ms;
        let kind = Kind::Command {
            envelope: entry.envelope,
            signer: entry.signer,
            summary: entry.summary,
            nonce: entry.nonce,
            nonce_expires_ms: entry.nonce_expires_ms,
            apps: entry.apps,
            from: entry.from,
        };
        self.submit(kind, time_ms, Some(erase(effect)))
    }

    /// Records a request refused before its sender proved a key, as a
    /// bounded summary. Returns its audit sequence number.
    pub fn reject(&self, entry: UnverifiedEntry) -> Result<u64, StoreError> {
        let kind = Kind::Unverified {
            event: unverified_event(
                entry.from,
                &entry.bytes,
                entry.claimed_signer,
                &entry.summary,
            ),
            refusal: entry.refusal,
        };
        match self.submit::<()>(kind, entry.time_ms, None)? {
            Outcome::Rejected { seq: Some(seq), .. } | Outcome::Accepted { seq, .. } => Ok(seq),
            Outcome::Rejected { seq: None, .. } => Err(StoreError::WriterGone),
        }
    }

    /// A change the conductor makes on its own (re-placing a replica, a
    /// rollout step), recorded as a system entry in the same commit and
    /// indexed under `apps`.
    pub fn system<R: Send + 'static>(
        &self,
        summary: impl Into<String>,
        apps: Vec<String>,
        time_ms: u64,
        effect: impl FnMut(&mut Tx<'_>) -> Result<R, EffectError> + Send + 'static,
    ) -> Result<Outcome<R>, StoreError> {
        let kind = Kind::System {
            summary: summary.into(),
            apps,
        };
        self.submit(kind, time_ms, Some(erase(effect)))
    }

    fn submit<R: Send + 'static>(
        &self,
        kind: Kind,
        time_ms: u64,
        effect: Option<writer::Effect>,
    ) -> Result<Outcome<R>, StoreError> {
        let (tx, rx) = mpsc::sync_channel(1);
        let pending = Pending {
            kind,
            time_ms,
            effect,
            touched: Vec::new(),
            reply: Box::new(move |result| {
                let _ = tx.send(result);
            }),
        };
        self.sender
            .as_ref()
            .ok_or(StoreError::WriterGone)?
            .send(pending)
            .map_err(|_| StoreError::WriterGone)?;
        let outcome = rx.recv().map_err(|_| StoreError::WriterGone)??;
        Ok(match outcome {
            Outcome::Accepted { seq, value } => Outcome::Accepted {
                seq,
                value: *value.downcast::<R>().map_err(|_| StoreError::WriterGone)?,
            },
            Outcome::Rejected { seq, refusal } => Outcome::Rejected { seq, refusal },
        })
    }

    /// Copies the whole store, as of one consistent read view, into a new
    /// database file at `to` (which must not exist), while the writer
    /// goes on. Returns the audit head (sequence number and hash) the copy
    /// holds. Blocking: it reads and writes every row.
    pub fn backup(&self, to: &Path) -> Result<(u64, [u8; 32]), StoreError> {
        let snap = self.snapshot()?;
        let head = snap.audit_head()?;
        backup::copy(&snap.txn, to)?;
        Ok(head)
    }

    /// Re-verifies the whole audit chain and every accepted signature, a
    /// page at a time (bounded memory for a log of any size).
    pub fn verify_audit(&self) -> Result<ChainReport, VerifyAuditError> {
        let snap = self.snapshot()?;
        let mut verifier = audit::ChainVerifier::default();
        let mut from = 1;
        loop {
            let page = snap.audit(from, 256)?;
            let Some(last) = page.last().map(|r| r.seq) else {
                break;
            };
            for r in &page {
                verifier.push(r)?;
            }
            from = last + 1;
        }
        Ok(verifier.finish()?)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyAuditError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("audit log verification failed: {0}")]
    Chain(#[from] ChainError),
}

/// The bounded record of a request whose sender proved no key: its size,
/// digest and first bytes, never all of it.
pub(crate) fn unverified_event(
    from: String,
    bytes: &[u8],
    claimed_signer: Option<Fingerprint>,
    summary: &str,
) -> AuditEvent {
    use sha2::{Digest, Sha256};
    AuditEvent::Unverified {
        from,
        size: bytes.len() as u64,
        digest: Sha256::digest(bytes).into(),
        head: bytes[..bytes.len().min(audit::UNVERIFIED_HEAD_BYTES)].to_vec(),
        claimed_signer,
        summary: summary
            .chars()
            .take(audit::UNVERIFIED_SUMMARY_CHARS)
            .collect(),
    }
}

fn erase<R: Send + 'static>(
    mut effect: impl FnMut(&mut Tx<'_>) -> Result<R, EffectError> + Send + 'static,
) -> writer::Effect {
    Box::new(move |tx| effect(tx).map(|v| Box::new(v) as AnyValue))
}

impl Drop for Store {
    fn drop(&mut self) {
        // Closing the channel ends the writer after it has answered every
        // request already sent.
        self.sender.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// Opens (or creates) the redb file, turning every failure — including a
/// panic inside redb on a damaged file — into an `OpenError`.
fn open_db(
    dir: &Path,
    file: &Path,
    create: bool,
    options: &Options,
) -> Result<Database, OpenError> {
    let mut builder = Database::builder();
    builder.set_cache_size(options.cache_bytes);
    // Verify every page's checksum at open: a damaged file is refused with
    // an error instead of being read (the store is small, so this is cheap).
    builder.set_check_integrity_on_open(true);
    let attempt = catch_unwind(AssertUnwindSafe(|| {
        if create {
            builder.create(file)
        } else {
            builder.open(file)
        }
    }));
    let corrupt = |reason: String| OpenError::Corrupt {
        file: file.to_path_buf(),
        reason,
    };
    match attempt {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(redb::DatabaseError::DatabaseAlreadyOpen)) => Err(OpenError::Locked {
            dir: dir.to_path_buf(),
        }),
        // InvalidData: not a redb file; UnexpectedEof: a file cut short.
        // Both are damage, not I/O trouble the operator could retry.
        Ok(Err(redb::DatabaseError::Storage(redb::StorageError::Io(e))))
            if !matches!(
                e.kind(),
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
            ) =>
        {
            Err(OpenError::Io {
                file: file.to_path_buf(),
                source: e,
            })
        }
        Ok(Err(e)) => Err(corrupt(e.to_string())),
        Err(panic) => Err(corrupt(format!(
            "the database library failed reading it ({})",
            panic_message(&panic)
        ))),
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "no message".into()
    }
}

/// Writes a new store's schema version, cluster id and genesis audit entry.
fn initialise(
    txn: &redb::WriteTransaction,
    cluster: ClusterId,
    key_name: &str,
    key: &PublicKey,
    now_ms: u64,
) -> Result<(), StoreError> {
    tables::create_all(txn)?;
    skr8tr_migrations::set_version(txn, skr8tr_migrations::CURRENT).map_err(|e| {
        StoreError::Decode {
            table: "meta",
            reason: e.to_string(),
        }
    })?;
    txn.open_table(tables::META)?
        .insert(tables::CLUSTER_ID_KEY, cluster.0.as_slice())?;
    let genesis = audit::next_entry(
        (0, [0; 32]),
        now_ms,
        AuditEvent::Genesis {
            cluster,
            key_name: key_name.to_string(),
            public_key: key.to_bytes(),
        },
        AuditOutcome::Accepted,
    );
    tx::append_audit(txn, &genesis, &[])?;
    let mut t = Tx {
        txn,
        seq: genesis.seq,
        time_ms: now_ms,
        touched: Vec::new(),
    };
    t.add_operator_key(key_name, key, None)
}
