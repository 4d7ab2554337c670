//! What each verified operator command does to desired state. Checks that
//! need no state (the manifest parses, secrets match their signed digests)
//! happen in `prepare`; the effect then runs inside the store transaction
//! that also records the command, reading current state through `Tx`.

//!
//! Layout:
//! - this file: [`prepare`] — a command to its effect.
//! - `apps`: up, rollout, rollback, down, scale.
//! - `keys`: operator keys added and revoked.
//! - `secrets`: secret values sealed to the conductor, checked to open;
//!   opened only for nodes.

mod apps;
mod keys;
mod nodes;
mod plan;
#[cfg(test)]
mod plan_tests;
mod routes;
mod secrets;
#[cfg(test)]
mod tests;

pub(crate) use apps::scale_to;
use apps::{down, rollback, scale, up};
use keys::{add_key, revoke_key};
use secrets::parse_with_secrets;
pub(crate) use secrets::{opened, sealed_at_rest};
use sha2::{Digest, Sha256};
use skr8tr_proto::code::Code;
use skr8tr_proto::command::Command;
use skr8tr_proto::keys::{Fingerprint, PublicKey};
use skr8tr_proto::manifest::MAX_REPLICAS;
use skr8tr_proto::sealed::OpeningKey;
use skr8tr_proto::wire::SecretValue;
use skr8tr_store::{EffectError, Refusal, Tx};
use std::sync::Arc;

/// A command ready to apply: its effect returns the message the operator reads.
pub type Effect = Box<dyn FnMut(&mut Tx<'_>) -> Result<String, EffectError> + Send>;

/// Checks a command and builds its effect; `Err` refuses it before any
/// state is read.
pub fn prepare(
    command: &Command,
    signer: Fingerprint,
    sidecar: &[SecretValue],
    opening: &Arc<OpeningKey>,
) -> Result<Effect, Refusal> {
    match command.clone() {
        Command::Up { file, manifest } => {
            let specs = parse_with_secrets(&file, &manifest, sidecar, opening)?;
            let hash: [u8; 32] = Sha256::digest(manifest.as_bytes()).into();
            let opening = opening.clone();
            let routing = routes::of(&file, &manifest);
            Ok(Box::new(move |tx| {
                let done = up(tx, &file, &manifest, hash, &specs, false, &opening)?;
                with_routes(tx, done, &routing)
            }))
        }
        Command::SnapshotSave => Ok(Box::new(|_| Ok("snapshot requested".into()))),
        Command::Plan { file, manifest } => {
            let specs = parse_with_secrets(&file, &manifest, sidecar, opening)?;
            let opening = opening.clone();
            let routing = routes::of(&file, &manifest);
            Ok(Box::new(move |tx| {
                plan::plan(tx, &file, &specs, &routing, &opening)
            }))
        }
        Command::UpChecked {
            file,
            manifest,
            index,
        } => {
            let specs = parse_with_secrets(&file, &manifest, sidecar, opening)?;
            let hash: [u8; 32] = Sha256::digest(manifest.as_bytes()).into();
            let opening = opening.clone();
            let routing = routes::of(&file, &manifest);
            Ok(Box::new(move |tx| {
                plan::check_index(tx, &file, &specs, &routing, &opening, index)?;
                let done = up(tx, &file, &manifest, hash, &specs, false, &opening)?;
                with_routes(tx, done, &routing)
            }))
        }
        Command::Rollout { file, manifest } => {
            let specs = parse_with_secrets(&file, &manifest, sidecar, opening)?;
            let hash: [u8; 32] = Sha256::digest(manifest.as_bytes()).into();
            let opening = opening.clone();
            let routing = routes::of(&file, &manifest);
            Ok(Box::new(move |tx| {
                let done = up(tx, &file, &manifest, hash, &specs, true, &opening)?;
                with_routes(tx, done, &routing)
            }))
        }
        Command::Rollback { app } => Ok(Box::new(move |tx| rollback(tx, &app))),
        Command::Down { app } => Ok(Box::new(move |tx| down(tx, &app))),
        Command::Scale { app, replicas } => {
            if replicas > MAX_REPLICAS {
                return Err(Refusal::new(
                    Code::BadCount,
                    format!("{replicas} replicas is more than the limit of {MAX_REPLICAS}"),
                ));
            }
            Ok(Box::new(move |tx| scale(tx, &app, replicas)))
        }
        Command::Logs { app, .. } | Command::PreviousLogs { app, .. } => Ok(Box::new(move |tx| {
            apps::known_app(tx, &app)?;
            Ok(format!("logs of {app} read"))
        })),
        Command::AddOperatorKey { name, public_key } => {
            let key = PublicKey::from_bytes(&public_key)
                .map_err(|e| Refusal::new(Code::BadKey, format!("cannot add key `{name}`: {e}")))?;
            Ok(Box::new(move |tx| add_key(tx, &name, &key, signer)))
        }
        Command::RevokeOperatorKey { fingerprint } => {
            Ok(Box::new(move |tx| revoke_key(tx, &fingerprint)))
        }
        Command::RevokeNode { name } => Ok(Box::new(move |tx| keys::revoke_node(tx, &name))),
        Command::DrainNode { name } => Ok(Box::new(move |tx| nodes::drain(tx, &name, signer))),
        Command::UncordonNode { name } => Ok(Box::new(move |tx| nodes::uncordon(tx, &name))),
        Command::SetSecret { app, name, value } => {
            secrets::check_sealed(&app, &name, &value, opening)?;
            Ok(Box::new(move |tx| {
                apps::set_secret(tx, &app, &name, &value)
            }))
        }
        Command::AdmitNode { name, .. } => Err(Refusal::new(
            Code::Ticket,
            format!(
                "a join ticket is presented by the node it admits: start it with \
                 `skr8tr node --name {name} --ticket FILE` (this ticket is now used up)"
            ),
        )),
    }
}

/// `up`'s message, with a line per app whose routing changed.
fn with_routes(
    tx: &mut Tx<'_>,
    done: String,
    routing: &[skr8tr_proto::manifest::Routing],
) -> Result<String, EffectError> {
    let lines = routes::apply(tx, routing)?;
    if lines.is_empty() {
        return Ok(done);
    }
    Ok(format!("{done}\n{}", lines.join("\n")))
}

pub(crate) fn plural(n: u32, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}
