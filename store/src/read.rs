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
    /// Audit entries from `from` on in their stored encoding (for export
    /// and offline verification with [`crate::audit::decode_entry`]): at
    /// most `max_entries`, and no more bytes than `max_bytes` once the
    /// first is in. Returns them and the seq of the next page, if any.
    pub fn audit_raw_page(
        &self,
        from: u64,
        max_entries: usize,
        max_bytes: usize,
    ) -> Result<(Vec<Vec<u8>>, Option<u64>), StoreError> {
        let t = self.txn.open_table(AUDIT)?;
        let mut out = Vec::new();
        let mut bytes = 0;
        for row in t.range(from..)? {
            let (seq, value) = row?;
            let value = value.value();
            if out.len() >= max_entries || (!out.is_empty() && bytes + value.len() > max_bytes) {
                return Ok((out, Some(seq.value())));
            }
            bytes += value.len();
            out.push(value.to_vec());
        }
        Ok((out, None))
    }

    /// Every audit entry, oldest first. All in memory: for tests and small
    /// logs; serving paths read pages.
    pub fn audit_all(&self) -> Result<Vec<AuditRecord>, StoreError> {
        self.audit(1, usize::MAX)
    }
}
