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
