//! `Tx`: what an effect may do inside the transaction that also writes its
//! audit entry. It is only handed out by the store's writer, so no state
//! change can be committed without the entry that explains it.

use redb::{ReadableTable, ReadableTableMetadata, WriteTransaction};
use skr8tr_proto::code::Code;
use skr8tr_proto::command::ClusterId;
use skr8tr_proto::envelope::Nonce;
use skr8tr_proto::keys::{Fingerprint, PublicKey};

use crate::error::StoreError;
use crate::records::*;
use crate::tables::*;

pub struct Tx<'a> {
    pub(crate) txn: &'a WriteTransaction,
    pub(crate) seq: u64,
    pub(crate) time_ms: u64,
    /// The desired-state keys written so far ([`crate::feed`]).
    pub(crate) touched: Vec<crate::feed::Touched>,
}

read_api!(Tx<'a>);

/// Why an effect declined to change anything. The writer records it in the
/// audit entry and commits nothing else of that request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub code: Code,
    /// What the operator is told: what is wrong and what to do.
    pub message: String,
}

impl Refusal {
    pub fn new(code: Code, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            message: message.into(),
        }
    }
}

/// An effect's failure: a refusal (recorded) or a storage error (nothing is).
#[derive(Debug, thiserror::Error)]
pub enum EffectError {
    #[error("{}", .0.message)]
    Refused(Refusal),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<Refusal> for EffectError {
    fn from(r: Refusal) -> Self {
        EffectError::Refused(r)
    }
}

macro_rules! effect_from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for EffectError {
            fn from(e: $t) -> Self {
                EffectError::Store(e.into())
            }
        }
    )*};
}

effect_from_redb!(redb::TableError, redb::StorageError);

impl Tx<'_> {
    /// The audit sequence number this change is recorded under.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The caller's clock for this change (Unix ms).
    pub fn time_ms(&self) -> u64 {
        self.time_ms
    }

    pub fn put_app(&mut self, name: &str, record: &AppRecord) -> Result<(), StoreError> {
        self.touched
            .push(crate::feed::Touched::App(name.to_string()));
        self.txn
            .open_table(APPS)?
            .insert(name, record.encode().as_slice())?;
        Ok(())
    }

    pub fn remove_app(&mut self, name: &str) -> Result<bool, StoreError> {
        self.touched
            .push(crate::feed::Touched::App(name.to_string()));
        Ok(self.txn.open_table(APPS)?.remove(name)?.is_some())
    }

    pub fn put_spec(
        &mut self,
        app: &str,
        generation: u64,
        record: &SpecRecord,
    ) -> Result<(), StoreError> {
        self.touched
            .push(crate::feed::Touched::Spec(app.to_string(), generation));
        self.txn
            .open_table(SPECS)?
            .insert((app, generation), record.encode().as_slice())?;
        Ok(())
    }

    pub fn remove_spec(&mut self, app: &str, generation: u64) -> Result<bool, StoreError> {
        self.touched
            .push(crate::feed::Touched::Spec(app.to_string(), generation));
        Ok(self
            .txn
            .open_table(SPECS)?
            .remove((app, generation))?
            .is_some())
    }

    pub fn put_placement(
        &mut self,
        replica: &str,
        record: &PlacementRecord,
    ) -> Result<(), StoreError> {
        self.touched
            .push(crate::feed::Touched::Placement(replica.to_string()));
        self.txn
            .open_table(PLACEMENTS)?
            .insert(replica, record.encode().as_slice())?;
        Ok(())
    }

    pub fn remove_placement(&mut self, replica: &str) -> Result<bool, StoreError> {
        self.touched
            .push(crate::feed::Touched::Placement(replica.to_string()));
        Ok(self.txn.open_table(PLACEMENTS)?.remove(replica)?.is_some())
    }

    pub fn put_rollout(&mut self, app: &str, record: &RolloutRecord) -> Result<(), StoreError> {
        self.touched
            .push(crate::feed::Touched::Rollout(app.to_string()));
        self.txn
            .open_table(ROLLOUTS)?
            .insert(app, record.encode().as_slice())?;
        Ok(())
    }

    pub fn remove_rollout(&mut self, app: &str) -> Result<bool, StoreError> {
        self.touched
            .push(crate::feed::Touched::Rollout(app.to_string()));
        Ok(self.txn.open_table(ROLLOUTS)?.remove(app)?.is_some())
    }

    /// Trusts `key` as an operator key from this entry on.
    pub fn add_operator_key(
        &mut self,
        name: &str,
        key: &PublicKey,
        added_by: Option<Fingerprint>,
    ) -> Result<(), StoreError> {
        let record = OperatorKeyRecord {
            name: name.to_string(),
            public_key: key.to_bytes(),
            added_by,
            added_seq: self.seq,
            revoked_seq: None,
        };
        self.txn
            .open_table(OPERATOR_KEYS)?
            .insert(key.fingerprint().0.as_slice(), record.encode().as_slice())?;
        Ok(())
    }

    /// Stops trusting a key from this entry on; `false` if it was unknown or
    /// already revoked.
    pub fn revoke_operator_key(&mut self, fp: &Fingerprint) -> Result<bool, StoreError> {
        let Some(mut record) = self.operator_key(fp)? else {
            return Ok(false);
        };
        if record.revoked_seq.is_some() {
            return Ok(false);
        }
        record.revoked_seq = Some(self.seq);
        self.txn
            .open_table(OPERATOR_KEYS)?
            .insert(fp.0.as_slice(), record.encode().as_slice())?;
        Ok(true)
    }

    /// Admits a node's key.
    pub fn admit_node(
        &mut self,
        node: &str,
        key: &PublicKey,
        admitted_by: Option<Fingerprint>,
    ) -> Result<(), StoreError> {
        let record = NodeKeyRecord {
            public_key: key.to_bytes(),
            admitted_by,
            admitted_seq: self.seq,
        };
        self.txn
            .open_table(NODE_KEYS)?
            .insert(node, record.encode().as_slice())?;
        Ok(())
    }

    /// Cordons `node`; false if it already was.
    pub fn cordon(&mut self, node: &str, by: Option<Fingerprint>) -> Result<bool, StoreError> {
        self.touched
            .push(crate::feed::Touched::Cordon(node.to_string()));
        let mut t = self.txn.open_table(CORDONED)?;
        if t.get(node)?.is_some() {
            return Ok(false);
        }
        let record = CordonRecord {
            since_seq: self.seq,
            by,
        };
        t.insert(node, record.encode().as_slice())?;
        Ok(true)
    }

    /// Sets where the ingress serves `app`; `None` removes it.
    pub fn set_route(&mut self, app: &str, route: Option<&RouteRecord>) -> Result<(), StoreError> {
        let mut t = self.txn.open_table(ROUTES)?;
        match route {
            Some(r) => {
                t.insert(app, r.encode().as_slice())?;
            }
            None => {
                t.remove(app)?;
            }
        }
        Ok(())
    }

    /// Lifts a cordon; false if there was none.
    pub fn uncordon(&mut self, node: &str) -> Result<bool, StoreError> {
        self.touched
            .push(crate::feed::Touched::Cordon(node.to_string()));
        Ok(self.txn.open_table(CORDONED)?.remove(node)?.is_some())
    }

    pub fn remove_node_key(&mut self, node: &str) -> Result<bool, StoreError> {
        Ok(self.txn.open_table(NODE_KEYS)?.remove(node)?.is_some())
    }
}

/// Writer-only operations on the same transaction. Appends an audit
/// entry, indexed under each app it is about.
pub(crate) fn append_audit(
    txn: &WriteTransaction,
    record: &AuditRecord,
    apps: &[String],
) -> Result<(), StoreError> {
    txn.open_table(AUDIT)?
        .insert(record.seq, record.encode().as_slice())?;
    if !apps.is_empty() {
        let mut index = txn.open_table(AUDIT_BY_APP)?;
        for app in apps {
            index.insert((app.as_str(), record.seq), ())?;
        }
    }
    Ok(())
}

pub(crate) fn remember_nonce(
    txn: &WriteTransaction,
    nonce: &Nonce,
    expires_ms: u64,
) -> Result<(), StoreError> {
    txn.open_table(NONCES)?
        .insert(nonce.0.as_slice(), expires_ms)?;
    txn.open_table(NONCE_EXPIRY)?
        .insert((expires_ms, nonce.0.as_slice()), ())?;
    Ok(())
}

/// Forgets up to `max` nonces that expired before `now_ms`; returns how many.
pub(crate) fn collect_nonces(
    txn: &WriteTransaction,
    now_ms: u64,
    max: usize,
) -> Result<usize, StoreError> {
    let mut by_expiry = txn.open_table(NONCE_EXPIRY)?;
    let expired: Vec<(u64, Vec<u8>)> = by_expiry
        .range((0, [].as_slice())..(now_ms, [].as_slice()))?
        .take(max)
        .map(|row| row.map(|(k, _)| (k.value().0, k.value().1.to_vec())))
        .collect::<Result<_, _>>()?;
    let mut nonces = txn.open_table(NONCES)?;
    for (expiry, nonce) in &expired {
        by_expiry.remove((*expiry, nonce.as_slice()))?;
        nonces.remove(nonce.as_slice())?;
    }
    Ok(expired.len())
}
