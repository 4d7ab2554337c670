//! The single writer. Every change goes through one thread that owns the
//! write side of the database. Requests that arrive while a commit is in
//! flight are committed together in the next transaction (group commit):
//! one fsync acknowledges them all, each with its own audit entry.
//!
//! An effect may refuse after it has written something, and redb cannot
//! roll back part of a transaction. So a batch in which any effect refuses
//! is dropped whole and its requests are committed one by one; a refused
//! request then gets a transaction of its own that records only the refusal
//! (and the command's nonce, so it cannot be replayed).
//!
//! An effect that panics fails its own request (refused with `internal`,
//! and an error log), never the writer: the thread and every other
//! request go on.

use redb::Database;
use skr8tr_proto::code::Code;
use skr8tr_proto::envelope::Nonce;
use skr8tr_proto::keys::Fingerprint;
use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::mpsc::Receiver;

use crate::audit::{AuditEvent, AuditOutcome, next_entry};
use crate::db::Db;
use crate::error::StoreError;
use crate::feed::{Feed, Touched};
use crate::tx::{self, EffectError, Refusal, Tx};

pub(crate) type AnyValue = Box<dyn Any + Send>;
pub(crate) type Effect = Box<dyn FnMut(&mut Tx<'_>) -> Result<AnyValue, EffectError> + Send>;
pub(crate) type Reply = Box<dyn FnOnce(Result<Outcome<AnyValue>, StoreError>) + Send>;

/// How many expired nonces one transaction forgets, at most.
const NONCES_COLLECTED_PER_COMMIT: usize = 256;

/// What happened to a request, once durable.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome<R> {
    /// Committed with its audit entry `seq`.
    Accepted { seq: u64, value: R },
    /// Not applied. `seq` is the audit entry recording the refusal; `None`
    /// for a conductor-initiated change, whose refusals are not recorded.
    Rejected { seq: Option<u64>, refusal: Refusal },
}

pub(crate) enum Kind {
    Command {
        envelope: Vec<u8>,
        signer: Fingerprint,
        summary: String,
        nonce: Nonce,
        nonce_expires_ms: u64,
        apps: Vec<String>,
        from: String,
    },
    /// Refused before its sender proved a key: `event` is the bounded
    /// `AuditEvent::Unverified` summary.
    Unverified {
        event: AuditEvent,
        refusal: Refusal,
    },
    System {
        summary: String,
        apps: Vec<String>,
    },
}

impl Kind {
    /// The apps its audit entry is indexed under.
    fn apps(&self) -> &[String] {
        match self {
            Kind::Command { apps, .. } | Kind::System { apps, .. } => apps,
            Kind::Unverified { .. } => &[],
        }
    }
}

pub(crate) struct Pending {
    pub kind: Kind,
    pub time_ms: u64,
    pub effect: Option<Effect>,
    pub reply: Reply,
    /// The keys its effect wrote in the transaction being built.
    pub touched: Vec<Touched>,
}

enum Abort {
    Refused(Refusal),
    Store(StoreError),
    /// `commit` itself failed: the entries up to `seq` may have reached
    /// the file anyway.
    Commit {
        error: StoreError,
        seq: u64,
        outcomes: Vec<Outcome<AnyValue>>,
    },
}

impl From<StoreError> for Abort {
    fn from(e: StoreError) -> Self {
        Abort::Store(e)
    }
}

impl From<redb::TransactionError> for Abort {
    fn from(e: redb::TransactionError) -> Self {
        Abort::Store(e.into())
    }
}

pub(crate) fn run(db: Arc<Db>, feed: Arc<Feed>, rx: Receiver<Pending>, max_batch: usize) {
    loop {
        // A reopen that gave up is tried again each second, writes or not,
        // so reads come back by themselves.
        let first = if db.is_closed() {
            match rx.recv_timeout(std::time::Duration::from_secs(1)) {
                Ok(p) => p,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    let _ = db.reopen();
                    continue;
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
        } else {
            match rx.recv() {
                Ok(p) => p,
                Err(_) => break,
            }
        };
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        commit_batch(&db, &feed, batch);
    }
}

fn commit_batch(db: &Db, feed: &Feed, mut batch: Vec<Pending>) {
    // A reopen that failed is tried again before anything is written.
    if db.is_closed()
        && let Err(e) = db.reopen()
    {
        fail_all(db, batch, &e);
        return;
    }
    let handle = match db.get() {
        Ok(h) => h,
        Err(e) => return fail_all(db, batch, &e),
    };
    // If something refused or failed, each request is retried on its own so
    // that one request's problem is not every request's. A disk error is
    // every request's problem: they all get it.
    if batch.len() > 1 {
        match try_together(&handle, &mut batch) {
            Ok(outcomes) => return reply_all(feed, batch, outcomes),
            Err(Abort::Store(e)) if e.is_io() => {
                drop(handle);
                let _ = db.reopen();
                return fail_all(db, batch, &e);
            }
            Err(Abort::Commit {
                error,
                seq,
                outcomes,
            }) => {
                drop(handle);
                if recovered_through(db, seq) {
                    return reply_all(feed, batch, outcomes);
                }
                return fail_all(db, batch, &error);
            }
            Err(_) => {}
        }
    }
    drop(handle);
    for p in batch {
        commit_alone(db, feed, p);
    }
}

/// After the commit: what it wrote goes to the feed, then each caller hears.
fn reply_all(feed: &Feed, mut batch: Vec<Pending>, outcomes: Vec<Outcome<AnyValue>>) {
    feed.publish(
        batch
            .iter_mut()
            .flat_map(|p| std::mem::take(&mut p.touched))
            .collect(),
    );
    for (p, outcome) in batch.into_iter().zip(outcomes) {
        (p.reply)(Ok(outcome));
    }
}

fn fail_all(db: &Db, batch: Vec<Pending>, e: &StoreError) {
    for p in batch {
        (p.reply)(Err(disk_error(db, e)));
    }
}

/// What a caller is told about a write that failed on the disk.
fn disk_error(db: &Db, e: &StoreError) -> StoreError {
    if e.is_no_room() {
        return StoreError::Full {
            file: db.file().to_path_buf(),
        };
    }
    match e {
        StoreError::Reopening => StoreError::Reopening,
        other => StoreError::Disk(other.to_string()),
    }
}

/// After `commit` failed on the disk: reopens the database and tells
/// whether the audit entry `seq`, the last of the commit, reached the file.
fn recovered_through(db: &Db, seq: u64) -> bool {
    if db.reopen().is_err() {
        return false;
    }
    matches!(db.snapshot().and_then(|s| s.audit_head()), Ok((head, _)) if head >= seq)
}

fn try_together(db: &Database, batch: &mut [Pending]) -> Result<Vec<Outcome<AnyValue>>, Abort> {
    let txn = db.begin_write()?;
    let mut head = Tx::head(&txn)?;
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut latest = 0;
    for p in batch.iter_mut() {
        latest = latest.max(p.time_ms);
        outcomes.push(apply(&txn, &mut head, p)?);
    }
    tx::collect_nonces(&txn, latest, NONCES_COLLECTED_PER_COMMIT)?;
    commit(txn, head.0, outcomes)
}

fn commit(
    txn: redb::WriteTransaction,
    seq: u64,
    outcomes: Vec<Outcome<AnyValue>>,
) -> Result<Vec<Outcome<AnyValue>>, Abort> {
    match txn.commit() {
        Ok(()) => Ok(outcomes),
        Err(e) => {
            let error = StoreError::from(e);
            if error.is_io() {
                Err(Abort::Commit {
                    error,
                    seq,
                    outcomes,
                })
            } else {
                Err(Abort::Store(error))
            }
        }
    }
}

fn commit_alone(db: &Db, feed: &Feed, mut p: Pending) {
    let result = (|| {
        let handle = db.get()?;
        let txn = handle.begin_write()?;
        let mut head = Tx::head(&txn)?;
        match apply(&txn, &mut head, &mut p) {
            Ok(outcome) => {
                tx::collect_nonces(&txn, p.time_ms, NONCES_COLLECTED_PER_COMMIT)?;
                match commit(txn, head.0, vec![outcome]) {
                    Ok(mut o) => Ok(o.remove(0)),
                    Err(Abort::Commit {
                        error,
                        seq,
                        mut outcomes,
                    }) => {
                        drop(handle);
                        if recovered_through(db, seq) {
                            Ok(outcomes.remove(0))
                        } else {
                            Err(error)
                        }
                    }
                    Err(Abort::Store(e)) => Err(e),
                    Err(Abort::Refused(_)) => Err(StoreError::WriterGone),
                }
            }
            Err(Abort::Store(e)) => Err(e),
            Err(Abort::Commit { error, .. }) => Err(error),
            Err(Abort::Refused(refusal)) => {
                txn.abort()?;
                record_refusal(&handle, &p, refusal)
            }
        }
    })();
    let result = match result {
        Err(e) if e.is_io() => {
            // redb fails everything after one I/O error: open it again now,
            // so reads go on and the next write finds the disk as it is.
            if !db.is_closed() {
                let _ = db.reopen();
            }
            Err(disk_error(db, &e))
        }
        other => other,
    };
    if result.is_ok() {
        feed.publish(std::mem::take(&mut p.touched));
    }
    (p.reply)(result);
}

/// After an effect refused: a fresh transaction with only the refusal.
fn record_refusal(
    db: &Database,
    p: &Pending,
    refusal: Refusal,
) -> Result<Outcome<AnyValue>, StoreError> {
    let Kind::Command {
        envelope,
        signer,
        summary,
        nonce,
        nonce_expires_ms,
        apps,
        ..
    } = &p.kind
    else {
        // The conductor changed its mind about its own change: nothing to record.
        return Ok(Outcome::Rejected { seq: None, refusal });
    };
    let txn = db.begin_write()?;
    let head = Tx::head(&txn)?;
    tx::remember_nonce(&txn, nonce, *nonce_expires_ms)?;
    let entry = next_entry(
        head,
        p.time_ms,
        AuditEvent::Command {
            envelope: envelope.clone(),
            signer: Some(*signer),
            summary: summary.clone(),
        },
        rejected(&refusal),
    );
    tx::append_audit(&txn, &entry, apps)?;
    txn.commit()?;
    Ok(Outcome::Rejected {
        seq: Some(entry.seq),
        refusal,
    })
}

fn rejected(r: &Refusal) -> AuditOutcome {
    AuditOutcome::Rejected {
        code: r.code.as_str().to_string(),
        message: r.message.clone(),
    }
}

/// Applies one request inside `txn` and appends its audit entry.
fn apply(
    txn: &redb::WriteTransaction,
    head: &mut (u64, [u8; 32]),
    p: &mut Pending,
) -> Result<Outcome<AnyValue>, Abort> {
    let seq = head.0 + 1;
    // What an earlier try of this request wrote is not in this transaction.
    p.touched.clear();
    let (event, outcome, value) = match &p.kind {
        Kind::Command {
            envelope,
            signer,
            summary,
            nonce,
            nonce_expires_ms,
            from,
            ..
        } => {
            let mut tx = Tx {
                txn,
                seq,
                time_ms: p.time_ms,
                touched: Vec::new(),
            };
            if tx.nonce_seen(nonce)? {
                let refusal = Refusal::new(
                    Code::Replayed,
                    format!(
                        "this signed command (nonce {nonce}) was already received; sign a new one"
                    ),
                );
                // Anyone who saw it can send it again: a bounded summary.
                let event = crate::unverified_event(from.clone(), envelope, Some(*signer), summary);
                (event, rejected(&refusal), Err(refusal))
            } else {
                let value = run_effect(&mut p.effect, &mut tx)?;
                p.touched = tx.touched;
                tx::remember_nonce(txn, nonce, *nonce_expires_ms)?;
                let event = AuditEvent::Command {
                    envelope: envelope.clone(),
                    signer: Some(*signer),
                    summary: summary.clone(),
                };
                (event, AuditOutcome::Accepted, Ok(value))
            }
        }
        Kind::Unverified { event, refusal } => {
            (event.clone(), rejected(refusal), Err(refusal.clone()))
        }
        Kind::System { summary, .. } => {
            let mut tx = Tx {
                txn,
                seq,
                time_ms: p.time_ms,
                touched: Vec::new(),
            };
            let value = run_effect(&mut p.effect, &mut tx)?;
            p.touched = tx.touched;
            (
                AuditEvent::System {
                    summary: summary.clone(),
                },
                AuditOutcome::Accepted,
                Ok(value),
            )
        }
    };
    let entry = next_entry(*head, p.time_ms, event, outcome);
    tx::append_audit(txn, &entry, p.kind.apps())?;
    *head = (entry.seq, entry.hash);
    Ok(match value {
        Ok(value) => Outcome::Accepted { seq, value },
        Err(refusal) => Outcome::Rejected {
            seq: Some(seq),
            refusal,
        },
    })
}

fn run_effect(effect: &mut Option<Effect>, tx: &mut Tx<'_>) -> Result<AnyValue, Abort> {
    let Some(f) = effect else {
        return Ok(Box::new(()));
    };
    // The transaction is dropped (nothing of it is kept) whatever the
    // effect did before it panicked, so unwinding leaves no broken state.
    match catch_unwind(AssertUnwindSafe(|| f(tx))) {
        Ok(result) => result.map_err(|e| match e {
            EffectError::Refused(r) => Abort::Refused(r),
            EffectError::Store(s) => Abort::Store(s),
        }),
        Err(panic) => {
            let why = crate::panic_message(&panic);
            tracing::error!("a change failed inside the store ({why}); it was not applied");
            Err(Abort::Refused(Refusal::new(
                Code::Internal,
                format!("the conductor failed applying it ({why}); nothing changed; see its log"),
            )))
        }
    }
}

impl Tx<'_> {
    fn head(txn: &redb::WriteTransaction) -> Result<(u64, [u8; 32]), StoreError> {
        Tx {
            txn,
            seq: 0,
            time_ms: 0,
            touched: Vec::new(),
        }
        .audit_head()
    }
}
