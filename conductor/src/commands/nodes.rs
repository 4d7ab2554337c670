//! `node drain` and `node uncordon`: a cordon is durable desired state
//! (the `cordoned` table); the scheduler moves what a cordoned node runs,
//! surge-first, and places nothing new there.

use skr8tr_proto::code::Code;
use skr8tr_proto::keys::Fingerprint;
use skr8tr_store::{EffectError, Refusal, Tx};

fn admitted(tx: &Tx<'_>, name: &str) -> Result<(), EffectError> {
    if tx.node_key(name)?.is_none() {
        return Err(Refusal::new(
            Code::NotFound,
            format!("no node `{name}` is admitted; `skr8tr nodes` lists the nodes"),
        )
        .into());
    }
    Ok(())
}

pub(super) fn drain(tx: &mut Tx<'_>, name: &str, by: Fingerprint) -> Result<String, EffectError> {
    admitted(tx, name)?;
    if !tx.cordon(name, Some(by))? {
        return Ok(format!(
            "node `{name}` is already cordoned; its replicas move (or have moved) away; \
             `skr8tr ps` shows where they run"
        ));
    }
    Ok(format!(
        "node `{name}` cordoned: nothing new goes there, and each replica it runs moves \
         away once its replacement is ready; `skr8tr node uncordon {name}` undoes it"
    ))
}

pub(super) fn uncordon(tx: &mut Tx<'_>, name: &str) -> Result<String, EffectError> {
    admitted(tx, name)?;
    if !tx.uncordon(name)? {
        return Ok(format!("node `{name}` was not cordoned; nothing changed"));
    }
    Ok(format!(
        "node `{name}` takes new replicas again (those that moved away stay where they are)"
    ))
}
