//! Operator keys: trusted from the entry that adds them, distrusted from
//! the one that revokes them; the last active key stays.

use skr8tr_proto::code::Code;
use skr8tr_proto::keys::{Fingerprint, PublicKey};
use skr8tr_store::{EffectError, Refusal, Tx};

pub(super) fn add_key(
    tx: &mut Tx<'_>,
    name: &str,
    key: &PublicKey,
    by: Fingerprint,
) -> Result<String, EffectError> {
    let fp = key.fingerprint();
    if tx.operator_key(&fp)?.is_some() {
        return Err(Refusal::new(Code::KeyExists, format!("key {fp} is already known")).into());
    }
    tx.add_operator_key(name, key, Some(by))?;
    Ok(format!("operator key `{name}` ({fp}) added"))
}

pub(super) fn revoke_key(tx: &mut Tx<'_>, fp: &Fingerprint) -> Result<String, EffectError> {
    let active = tx
        .operator_keys()?
        .iter()
        .filter(|(_, k)| k.revoked_seq.is_none())
        .count();
    let Some(record) = tx.operator_key(fp)? else {
        return Err(Refusal::new(
            Code::NoSuchKey,
            format!("no operator key {fp}; `skr8tr key list` shows them"),
        )
        .into());
    };
    if record.revoked_seq.is_some() {
        return Err(
            Refusal::new(Code::AlreadyRevoked, format!("key {fp} is already revoked")).into(),
        );
    }
    if active <= 1 {
        return Err(Refusal::new(
            Code::LastKey,
            "this is the last active operator key; add another before revoking it",
        )
        .into());
    }
    tx.revoke_operator_key(fp)?;
    Ok(format!("operator key `{}` ({fp}) revoked", record.name))
}

/// Forgets an admitted node's key.
pub(super) fn revoke_node(tx: &mut Tx<'_>, name: &str) -> Result<String, EffectError> {
    if !tx.remove_node_key(name)? {
        return Err(Refusal::new(
            Code::NotFound,
            format!("no node `{name}` is admitted; `skr8tr nodes` lists the nodes"),
        )
        .into());
    }
    Ok(format!(
        "node `{name}` revoked: its key is refused from now on and its replicas move to \
         other nodes; `skr8tr ticket {name}` admits a new key under that name"
    ))
}
