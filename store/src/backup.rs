//! Snapshots of the store: every table of one read view (redb's MVCC: the
//! writer goes on meanwhile) copied row by row into a new database file,
//! which is then a store like any other — [`Store::open`] opens it,
//! upgrading an older schema, and its audit chain verifies as the
//! original's did. This is redb's own advice for moving data ("create a
//! new table and copy"); the file is never copied byte for byte while the
//! writer may be in the middle of a commit.
//!
//! [`Store::open`]: crate::Store::open

use crate::error::StoreError;
use crate::tables::{
    APPS, AUDIT, AUDIT_BY_APP, CORDONED, META, NODE_KEYS, NONCE_EXPIRY, NONCES, OPERATOR_KEYS,
    PLACEMENTS, ROLLOUTS, ROUTES, SPECS,
};
use redb::{
    Database, Key, ReadTransaction, ReadableTable, TableDefinition, TableHandle, Value,
    WriteTransaction,
};
use std::path::Path;

/// Copies every table of `from` into a new database at `to` (which must
/// not exist), durably. The copy's cache is small: it only writes.
pub(crate) fn copy(from: &ReadTransaction, to: &Path) -> Result<(), StoreError> {
    if to.exists() {
        return Err(StoreError::Database(redb::Error::Io(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!("{} exists", to.display()),
        ))));
    }
    let db = Database::builder()
        .set_cache_size(4 << 20)
        .create(to)
        .map_err(|e| StoreError::Database(e.into()))?;
    let w = db.begin_write()?;
    table(from, &w, META)?;
    table(from, &w, APPS)?;
    table(from, &w, SPECS)?;
    table(from, &w, PLACEMENTS)?;
    table(from, &w, ROLLOUTS)?;
    table(from, &w, OPERATOR_KEYS)?;
    table(from, &w, NODE_KEYS)?;
    table(from, &w, CORDONED)?;
    table(from, &w, ROUTES)?;
    table(from, &w, AUDIT)?;
    table(from, &w, AUDIT_BY_APP)?;
    table(from, &w, NONCES)?;
    table(from, &w, NONCE_EXPIRY)?;
    w.commit()?;
    // A table this copy does not know (added without being listed here)
    // fails the snapshot instead of being left out of it.
    let known = [
        META.name(),
        APPS.name(),
        SPECS.name(),
        PLACEMENTS.name(),
        ROLLOUTS.name(),
        OPERATOR_KEYS.name(),
        NODE_KEYS.name(),
        CORDONED.name(),
        ROUTES.name(),
        AUDIT.name(),
        AUDIT_BY_APP.name(),
        NONCES.name(),
        NONCE_EXPIRY.name(),
    ];
    let unknown: Vec<String> = from
        .list_tables()?
        .map(|t| t.name().to_string())
        .chain(
            from.list_multimap_tables()?
                .map(|t| redb::MultimapTableHandle::name(&t).to_string()),
        )
        .filter(|n| !known.contains(&n.as_str()))
        .collect();
    if !unknown.is_empty() {
        return Err(StoreError::Database(redb::Error::Io(
            std::io::Error::other(format!(
                "the store has tables the snapshot does not copy: {}",
                unknown.join(", ")
            )),
        )));
    }
    Ok(())
}

fn table<K: Key + 'static, V: Value + 'static>(
    from: &ReadTransaction,
    to: &WriteTransaction,
    def: TableDefinition<K, V>,
) -> Result<(), StoreError> {
    let src = match from.open_table(def) {
        Ok(t) => t,
        // A table an older schema did not have yet.
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let mut dst = to.open_table(def)?;
    for row in src.iter()? {
        let (k, v) = row?;
        dst.insert(k.value(), v.value())?;
    }
    Ok(())
}
