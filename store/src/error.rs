//! Store errors: one enum for opening, one for operations.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(
        "{dir} is already in use by another process (is a conductor running on it?); \
         stop it, or give this one its own --data directory"
    )]
    Locked { dir: PathBuf },
    #[error("{dir} has no Skr8tr store; start the conductor with --init-key to create one")]
    Missing { dir: PathBuf },
    #[error(
        "{dir} already holds a Skr8tr store (cluster {cluster}); open it instead of creating it"
    )]
    Exists { dir: PathBuf, cluster: String },
    #[error(
        "{file} is damaged: {reason}. The store will not guess at its contents: \
         restore it from a backup (the file is left untouched)"
    )]
    Corrupt { file: PathBuf, reason: String },
    #[error("{file}: {source}")]
    Io {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: {source}")]
    Schema {
        file: PathBuf,
        source: skr8tr_migrations::MigrationError,
    },
    #[error("{file}: {source}")]
    Store { file: PathBuf, source: StoreError },
    #[error(transparent)]
    Private(#[from] skr8tr_proto::files::PrivateError),
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] redb::Error),
    #[error("a record in table `{table}` cannot be read: {reason}")]
    Decode { table: &'static str, reason: String },
    #[error("the store's writer has stopped; restart the conductor")]
    WriterGone,
    #[error("the store is missing its {0} record")]
    MissingMeta(&'static str),
    /// The disk (or quota) holding the store has no room for a commit.
    /// Nothing of the refused commit was kept; writes resume as soon as
    /// there is room.
    #[error(
        "the disk holding {file} is full: this change was refused (if in doubt, `skr8tr \
         history` shows what was recorded). Free space there; the conductor resumes by \
         itself, no restart needed"
    )]
    Full { file: PathBuf },
    #[error("the disk holding the store failed: {0}; see the conductor's log")]
    Disk(String),
    #[error("the store is reopening after a disk error; retry in a moment")]
    Reopening,
}

impl StoreError {
    /// An I/O failure after which redb must be reopened.
    pub(crate) fn is_io(&self) -> bool {
        matches!(
            self,
            StoreError::Database(redb::Error::Io(_) | redb::Error::PreviousIo)
        )
    }

    /// An I/O failure saying there is no room.
    pub(crate) fn is_no_room(&self) -> bool {
        matches!(
            self,
            StoreError::Database(redb::Error::Io(e))
                if matches!(e.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded)
        )
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Database(e.into())
            }
        }
    )*};
}

from_redb!(
    redb::TableError,
    redb::StorageError,
    redb::TransactionError,
    redb::CommitError
);
