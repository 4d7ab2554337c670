//! The open database, shared by the writer and every reader, and reopened
//! after a disk error.
//!
//! redb fails every later operation on a `Database` after one I/O error
//! (`PreviousIo`: "close and re-open"), reads included. A full disk is the
//! common such error, and it heals when space is freed, so the writer
//! reopens the file at once: readers keep reading what was committed, and
//! the next write succeeds as soon as there is room. The file lock allows
//! one open `Database`, so the old one (and every read transaction still
//! holding it) must be gone before the new one opens: meanwhile readers
//! are told `Reopening` (they never wait on the slot's lock), and a reopen
//! that gave up is tried again by the writer every second.

use redb::{Database, ReadableDatabase};
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use crate::error::StoreError;
use crate::read::Snapshot;

/// How long a reopen waits for the last read transactions on the old
/// handle to end before it gives up (the writer tries again at its next
/// request).
const REOPEN_WAIT: Duration = Duration::from_secs(5);

pub(crate) struct Db {
    slot: RwLock<Option<Arc<Database>>>,
    file: PathBuf,
    cache_bytes: usize,
}

impl Db {
    pub fn new(db: Database, file: PathBuf, cache_bytes: usize) -> Db {
        Db {
            slot: RwLock::new(Some(Arc::new(db))),
            file,
            cache_bytes,
        }
    }

    pub fn file(&self) -> &std::path::Path {
        &self.file
    }

    /// The database as it is now; an error only while a failed reopen is
    /// waiting for its next try.
    pub fn get(&self) -> Result<Arc<Database>, StoreError> {
        self.slot
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or(StoreError::Reopening)
    }

    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        Ok(Snapshot {
            txn: self.get()?.begin_read()?,
        })
    }

    /// Whether a reopen failed and must be tried again before a write.
    pub fn is_closed(&self) -> bool {
        self.slot
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none()
    }

    /// Closes the failed handle and opens the file again. Called by the
    /// writer only, holding no handle of its own.
    pub fn reopen(&self) -> Result<(), StoreError> {
        // Readers get `Reopening` meanwhile: none waits on the lock while
        // this waits for the last of them to let go of the old handle.
        drop(
            self.slot
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        let deadline = Instant::now() + REOPEN_WAIT;
        loop {
            let mut builder = Database::builder();
            builder.set_cache_size(self.cache_bytes);
            match builder.open(&self.file) {
                Ok(db) => {
                    *self.slot.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(db));
                    tracing::info!(file = %self.file.display(), "store reopened after a disk error");
                    return Ok(());
                }
                // A read transaction still holds the old handle.
                Err(redb::DatabaseError::DatabaseAlreadyOpen) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => {
                    tracing::error!(file = %self.file.display(), "reopening the store: {e}");
                    return Err(StoreError::Database(e.into()));
                }
            }
        }
    }
}
