//! Table definitions and the typed getters shared by read snapshots and
//! write transactions. Keys are plain redb types; values are versioned
//! postcard records (see `records`). Every table is created with the store,
//! so a reader never meets a missing table.

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use crate::error::StoreError;
use crate::records::Record;

pub(crate) use skr8tr_migrations::META;

/// app name -> `AppRecord`
pub(crate) const APPS: TableDefinition<&str, &[u8]> = TableDefinition::new("apps");
/// (app name, generation) -> `SpecRecord`
pub(crate) const SPECS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("specs");
/// replica id `app/generation/index` -> `PlacementRecord`
pub(crate) const PLACEMENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("placements");
/// app name -> `RolloutRecord`
pub(crate) const ROLLOUTS: TableDefinition<&str, &[u8]> = TableDefinition::new("rollouts");
/// key fingerprint (8 bytes) -> `OperatorKeyRecord`
pub(crate) const OPERATOR_KEYS: TableDefinition<&[u8], &[u8]> =
    TableDefinition::new("operator_keys");
/// node id -> `NodeKeyRecord`
pub(crate) const NODE_KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("node_keys");
/// node id -> `CordonRecord` (schema 4 on)
pub(crate) const CORDONED: TableDefinition<&str, &[u8]> = TableDefinition::new("cordoned");
/// app name -> `RouteRecord` (added without a schema change: a store
/// without it gets it empty)
pub(crate) const ROUTES: TableDefinition<&str, &[u8]> = TableDefinition::new("routes");
/// sequence number -> `AuditRecord`
pub(crate) use skr8tr_migrations::AUDIT;
/// (app, sequence number) -> (): the audit entries about each app.
pub(crate) use skr8tr_migrations::AUDIT_BY_APP;
/// nonce (16 bytes) -> expiry (Unix ms)
pub(crate) const NONCES: TableDefinition<&[u8], u64> = TableDefinition::new("nonces");
/// (expiry, nonce) -> (): the same nonces in expiry order, for collection.
pub(crate) const NONCE_EXPIRY: TableDefinition<(u64, &[u8]), ()> =
    TableDefinition::new("nonce_expiry");

/// `meta` key of the cluster id (16 bytes).
pub(crate) const CLUSTER_ID_KEY: &str = "cluster_id";

/// Creates every table (a no-op for those that exist).
pub(crate) fn create_all(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(META)?;
    txn.open_table(APPS)?;
    txn.open_table(SPECS)?;
    txn.open_table(PLACEMENTS)?;
    txn.open_table(ROLLOUTS)?;
    txn.open_table(OPERATOR_KEYS)?;
    txn.open_table(NODE_KEYS)?;
    txn.open_table(CORDONED)?;
    txn.open_table(ROUTES)?;
    txn.open_table(AUDIT)?;
    txn.open_table(AUDIT_BY_APP)?;
    txn.open_table(NONCES)?;
    txn.open_table(NONCE_EXPIRY)?;
    Ok(())
}

/// Decodes an optional stored value.
pub(crate) fn decode_opt<T: Record>(
    guard: Option<redb::AccessGuard<'_, &'static [u8]>>,
) -> Result<Option<T>, StoreError> {
    guard.map(|g| T::decode(g.value())).transpose()
}

/// Every `(String key, record)` of a string-keyed table within `range`.
pub(crate) fn str_range<T: Record>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    from: &str,
    to: Option<&str>,
) -> Result<Vec<(String, T)>, StoreError> {
    let iter = match to {
        Some(to) => table.range(from..to)?,
        None => table.range(from..)?,
    };
    iter.map(|row| {
        let (k, v) = row?;
        Ok((k.value().to_string(), T::decode(v.value())?))
    })
    .collect()
}

/// Audit values newest first (a missing one skipped) to a page, oldest
/// first: up to `limit` entries and, past the first, `max_bytes` of them;
/// whether older ones were left.
pub(crate) fn page_back<'a>(
    rows: impl Iterator<Item = Result<Option<redb::AccessGuard<'a, &'static [u8]>>, StoreError>>,
    limit: usize,
    max_bytes: usize,
) -> Result<(Vec<crate::records::AuditRecord>, bool), StoreError> {
    let mut out = Vec::new();
    let mut bytes = 0;
    for row in rows {
        let Some(value) = row? else { continue };
        let v = value.value();
        if out.len() >= limit || (!out.is_empty() && bytes + v.len() > max_bytes) {
            out.reverse();
            return Ok((out, true));
        }
        bytes += v.len();
        out.push(crate::records::AuditRecord::decode(v)?);
    }
    out.reverse();
    Ok((out, false))
}

/// Generates the read API for a type with a `txn` field that has
/// `open_table` (a read snapshot, or a write transaction seeing its own
/// writes), so both read exactly the same way.
macro_rules! read_api {
    ($ty:ident $(<$lt:lifetime>)?) => {
        impl $(<$lt>)? $ty $(<$lt>)? {
            /// The cluster this store belongs to.
            pub fn cluster_id(&self) -> Result<ClusterId, StoreError> {
                let meta = self.txn.open_table(META)?;
                let raw = meta
                    .get(CLUSTER_ID_KEY)?
                    .ok_or(StoreError::MissingMeta("cluster id"))?;
                let bytes: [u8; 16] = raw.value().try_into().map_err(|_| StoreError::Decode {
                    table: "meta",
                    reason: "cluster id is not 16 bytes".into(),
                })?;
                Ok(ClusterId(bytes))
            }

            pub fn app(&self, name: &str) -> Result<Option<AppRecord>, StoreError> {
                decode_opt(self.txn.open_table(APPS)?.get(name)?)
            }

            /// Every app, by name.
            pub fn apps(&self) -> Result<Vec<(String, AppRecord)>, StoreError> {
                str_range(&self.txn.open_table(APPS)?, "", None)
            }

            pub fn spec(&self, app: &str, generation: u64) -> Result<Option<SpecRecord>, StoreError> {
                decode_opt(self.txn.open_table(SPECS)?.get((app, generation))?)
            }

            /// Every stored generation of an app, oldest first.
            pub fn specs_of(&self, app: &str) -> Result<Vec<(u64, SpecRecord)>, StoreError> {
                let t = self.txn.open_table(SPECS)?;
                t.range((app, 0)..=(app, u64::MAX))?
                    .map(|row| {
                        let (k, v) = row?;
                        Ok((k.value().1, SpecRecord::decode(v.value())?))
                    })
                    .collect()
            }

            /// The newest stored generation of an app, read from the keys
            /// only (no spec is decoded).
            pub fn newest_generation(&self, app: &str) -> Result<Option<u64>, StoreError> {
                let t = self.txn.open_table(SPECS)?;
                let last = t.range((app, 0)..=(app, u64::MAX))?.next_back().transpose()?;
                Ok(last.map(|(k, _)| k.value().1))
            }

            /// Every stored generation of every app, by app then generation.
            pub fn specs(&self) -> Result<Vec<(String, u64, SpecRecord)>, StoreError> {
                let t = self.txn.open_table(SPECS)?;
                t.iter()?
                    .map(|row| {
                        let (k, v) = row?;
                        let (app, generation) = k.value();
                        Ok((app.to_string(), generation, SpecRecord::decode(v.value())?))
                    })
                    .collect()
            }

            pub fn placement(&self, replica: &str) -> Result<Option<PlacementRecord>, StoreError> {
                decode_opt(self.txn.open_table(PLACEMENTS)?.get(replica)?)
            }

            /// Every placement, by replica id.
            pub fn placements(&self) -> Result<Vec<(String, PlacementRecord)>, StoreError> {
                str_range(&self.txn.open_table(PLACEMENTS)?, "", None)
            }

            /// The placements of one app (replica ids start with `app/`).
            pub fn placements_of(&self, app: &str) -> Result<Vec<(String, PlacementRecord)>, StoreError> {
                // '0' is the character after '/', so this is the `app/` prefix.
                let (from, to) = (format!("{app}/"), format!("{app}0"));
                str_range(&self.txn.open_table(PLACEMENTS)?, &from, Some(&to))
            }

            pub fn rollout(&self, app: &str) -> Result<Option<RolloutRecord>, StoreError> {
                decode_opt(self.txn.open_table(ROLLOUTS)?.get(app)?)
            }

            pub fn rollouts(&self) -> Result<Vec<(String, RolloutRecord)>, StoreError> {
                str_range(&self.txn.open_table(ROLLOUTS)?, "", None)
            }

            pub fn operator_key(&self, fp: &Fingerprint) -> Result<Option<OperatorKeyRecord>, StoreError> {
                decode_opt(self.txn.open_table(OPERATOR_KEYS)?.get(fp.0.as_slice())?)
            }

            /// Every operator key ever added (revoked ones included).
            pub fn operator_keys(&self) -> Result<Vec<(Fingerprint, OperatorKeyRecord)>, StoreError> {
                let t = self.txn.open_table(OPERATOR_KEYS)?;
                t.iter()?
                    .map(|row| {
                        let (k, v) = row?;
                        let fp: [u8; 8] = k.value().try_into().map_err(|_| StoreError::Decode {
                            table: "operator_keys",
                            reason: "fingerprint is not 8 bytes".into(),
                        })?;
                        Ok((Fingerprint(fp), OperatorKeyRecord::decode(v.value())?))
                    })
                    .collect()
            }

            pub fn node_key(&self, node: &str) -> Result<Option<NodeKeyRecord>, StoreError> {
                decode_opt(self.txn.open_table(NODE_KEYS)?.get(node)?)
            }

            pub fn node_keys(&self) -> Result<Vec<(String, NodeKeyRecord)>, StoreError> {
                str_range(&self.txn.open_table(NODE_KEYS)?, "", None)
            }

            /// Every app's `route`/`host`, by app.
            pub fn routes(&self) -> Result<Vec<(String, RouteRecord)>, StoreError> {
                match self.txn.open_table(ROUTES) {
                    Ok(t) => str_range(&t, "", None),
                    // A store opened read-only before the table existed.
                    Err(redb::TableError::TableDoesNotExist(_)) => Ok(Vec::new()),
                    Err(e) => Err(e.into()),
                }
            }

            pub fn route(&self, app: &str) -> Result<Option<RouteRecord>, StoreError> {
                match self.txn.open_table(ROUTES) {
                    Ok(t) => decode_opt(t.get(app)?),
                    Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
                    Err(e) => Err(e.into()),
                }
            }

            /// Nodes cordoned by `node drain`, by name.
            pub fn cordoned(&self) -> Result<Vec<(String, CordonRecord)>, StoreError> {
                str_range(&self.txn.open_table(CORDONED)?, "", None)
            }

            /// Sequence number and hash of the last audit entry (0 and zeros when empty).
            pub fn audit_head(&self) -> Result<(u64, [u8; 32]), StoreError> {
                let t = self.txn.open_table(AUDIT)?;
                match t.last()? {
                    Some((k, v)) => Ok((k.value(), AuditRecord::decode(v.value())?.hash)),
                    None => Ok((0, [0; 32])),
                }
            }

            /// Up to `limit` audit entries from `from_seq` on, oldest first.
            pub fn audit(&self, from_seq: u64, limit: usize) -> Result<Vec<AuditRecord>, StoreError> {
                let t = self.txn.open_table(AUDIT)?;
                t.range(from_seq..)?
                    .take(limit)
                    .map(|row| AuditRecord::decode(row?.1.value()))
                    .collect()
            }

            /// Up to `limit` audit entries before `before` (all entries when
            /// `None`), oldest first, and no more stored bytes than
            /// `max_bytes` once the first is in; whether there are earlier ones.
            pub fn audit_before(&self, before: Option<u64>, limit: usize, max_bytes: usize) -> Result<(Vec<AuditRecord>, bool), StoreError> {
                let t = self.txn.open_table(AUDIT)?;
                let rows = t.range(..before.unwrap_or(u64::MAX))?.rev().map(|row| {
                    row.map(|(_, v)| Some(v)).map_err(StoreError::from)
                });
                page_back(rows, limit, max_bytes)
            }

            /// [`Self::audit_before`] for the entries about `app`, through the
            /// per-app index: the log is not scanned.
            pub fn audit_of_app(&self, app: &str, before: Option<u64>, limit: usize, max_bytes: usize) -> Result<(Vec<AuditRecord>, bool), StoreError> {
                let index = self.txn.open_table(AUDIT_BY_APP)?;
                let audit = self.txn.open_table(AUDIT)?;
                let rows = index
                    .range((app, 0)..(app, before.unwrap_or(u64::MAX)))?
                    .rev()
                    .map(|row| Ok(audit.get(row?.0.value().1)?));
                page_back(rows, limit, max_bytes)
            }

            /// Up to `limit` audit entries from `from` on, oldest first, and
            /// no more stored bytes than `max_bytes` once the first is in;
            /// the seq of the next one, if any.
            pub fn audit_from(&self, from: u64, limit: usize, max_bytes: usize) -> Result<(Vec<AuditRecord>, Option<u64>), StoreError> {
                let t = self.txn.open_table(AUDIT)?;
                let mut out = Vec::new();
                let mut bytes = 0;
                for row in t.range(from..)? {
                    let (seq, v) = row?;
                    let v = v.value();
                    if out.len() >= limit || (!out.is_empty() && bytes + v.len() > max_bytes) {
                        return Ok((out, Some(seq.value())));
                    }
                    bytes += v.len();
                    out.push(AuditRecord::decode(v)?);
                }
                Ok((out, None))
            }

            /// The last `limit` audit entries, oldest first.
            pub fn audit_tail(&self, limit: usize) -> Result<Vec<AuditRecord>, StoreError> {
                let t = self.txn.open_table(AUDIT)?;
                let mut out: Vec<AuditRecord> = t
                    .iter()?
                    .rev()
                    .take(limit)
                    .map(|row| AuditRecord::decode(row?.1.value()))
                    .collect::<Result<_, _>>()?;
                out.reverse();
                Ok(out)
            }

            pub fn nonce_seen(&self, nonce: &Nonce) -> Result<bool, StoreError> {
                Ok(self.txn.open_table(NONCES)?.get(nonce.0.as_slice())?.is_some())
            }

            /// How many nonces are remembered (collection keeps this bounded).
            pub fn nonce_count(&self) -> Result<u64, StoreError> {
                Ok(self.txn.open_table(NONCES)?.len()?)
            }
        }
    };
}

pub(crate) use read_api;
