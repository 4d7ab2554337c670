//! Read snapshots: a consistent view of the store that never blocks writers.

use redb::{ReadTransaction, ReadableTable, ReadableTableMetadata};
use skr8tr_proto::command::ClusterId;
use skr8tr_proto::envelope::Nonce;
use skr8tr_proto::keys::Fingerprint;

use crate::error::StoreError;
use crate::records::*;
use crate::tables::*;

/// A point-in-time view: every getter sees the same committed state.
pub struct Snapshot {
    pub(crate) txn: ReadTransaction,
}

read_api!(Snapshot);

impl Snapshot {
    /// Every audit entry in its stored encoding (for export and offline
    /// verification with [`crate::audit::decode_entry`]).
    pub fn audit_raw(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        let t = self.txn.open_table(AUDIT)?;
        t.iter()?.map(|row| Ok(row?.1.value().to_vec())).collect()
    }

    /// Every audit entry, oldest first (for chain verification and export).
    pub fn audit_all(&self) -> Result<Vec<AuditRecord>, StoreError> {
        self.audit(1, usize::MAX)
    }
}
