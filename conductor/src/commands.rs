//! What each verified operator command does to desired state. Checks that
//! need no state (the manifest parses, secrets match their signed digests)
//! happen in `prepare`; the effect then runs inside the store transaction
//! that also records the command, reading current state through `Tx`.

use sha2::{Digest, Sha256};
use skr8tr_proto::command::Command;
use skr8tr_proto::keys::{Fingerprint, PublicKey};
use skr8tr_proto::manifest::{self, AppSpec, MAX_REPLICAS, Secret, secrets};
use skr8tr_proto::wire::SecretValue;
use skr8tr_store::records::{AppRecord, AppStatus, SpecRecord};
use skr8tr_store::{EffectError, Refusal, Tx};

/// A command ready to apply: its effect returns the message the operator reads.
pub type Effect = Box<dyn FnMut(&mut Tx<'_>) -> Result<String, EffectError> + Send>;

/// Checks a command and builds its effect; `Err` refuses it before any
/// state is read.
pub fn prepare(
    command: &Command,
    signer: Fingerprint,
    sidecar: &[SecretValue],
) -> Result<Effect, Refusal> {
    match command.clone() {
        Command::Up { file, manifest } => {
            let specs = parse_with_secrets(&file, &manifest, sidecar)?;
            let hash: [u8; 32] = Sha256::digest(manifest.as_bytes()).into();
            Ok(Box::new(move |tx| up(tx, &file, &manifest, hash, &specs)))
        }
        Command::Down { app } => Ok(Box::new(move |tx| down(tx, &app))),
        Command::Scale { app, replicas } => {
            if replicas > MAX_REPLICAS {
                return Err(Refusal::new(
                    "bad-count",
                    format!("{replicas} replicas is more than the limit of {MAX_REPLICAS}"),
                ));
            }
            Ok(Box::new(move |tx| scale(tx, &app, replicas)))
        }
        Command::Logs { app, .. } => Ok(Box::new(move |tx| {
            known_app(tx, &app)?;
            Ok(format!("logs of {app} read"))
        })),
        Command::AddOperatorKey { name, public_key } => {
            let key = PublicKey::from_bytes(&public_key)
                .map_err(|e| Refusal::new("bad-key", format!("cannot add key `{name}`: {e}")))?;
            Ok(Box::new(move |tx| add_key(tx, &name, &key, signer)))
        }
        Command::RevokeOperatorKey { fingerprint } => {
            Ok(Box::new(move |tx| revoke_key(tx, &fingerprint)))
        }
        Command::AdmitNode { name, .. } => Err(Refusal::new(
            "ticket",
            format!(
                "a join ticket is presented by the node it admits: start it with \
                 `skr8tr node --name {name} --ticket FILE` (this ticket is now used up)"
            ),
        )),
    }
}

/// Parses the signed manifest and puts back the secret values sent beside
/// it, each checked against the digest the operator signed.
fn parse_with_secrets(
    file: &str,
    text: &str,
    sidecar: &[SecretValue],
) -> Result<Vec<AppSpec>, Refusal> {
    let mut specs = manifest::parse(file, text)
        .map_err(|d| Refusal::new("invalid-manifest", format!("the manifest has errors:\n{d}")))?;
    for spec in &mut specs {
        for (name, value) in &mut spec.secrets {
            let redacted = value.expose().to_string();
            if !secrets::is_redacted(&redacted) {
                return Err(Refusal::new(
                    "secret-in-clear",
                    format!(
                        "secret `{name}` of app `{}` is in the signed manifest in clear, where the \
                         audit log would keep it; send it with `skr8tr up`, which signs only its digest",
                        spec.name
                    ),
                ));
            }
            let sent = sidecar
                .iter()
                .find(|s| s.app == spec.name && s.name == *name)
                .ok_or_else(|| {
                    Refusal::new(
                        "secret-missing",
                        format!(
                            "secret `{name}` of app `{}` was signed but not sent",
                            spec.name
                        ),
                    )
                })?;
            if !secrets::matches(&redacted, &spec.name, name, &sent.value) {
                return Err(Refusal::new(
                    "secret-mismatch",
                    format!(
                        "secret `{name}` of app `{}` does not match the digest that was signed",
                        spec.name
                    ),
                ));
            }
            *value = Secret::new(sent.value.clone());
        }
    }
    Ok(specs)
}

fn up(
    tx: &mut Tx<'_>,
    file: &str,
    text: &str,
    hash: [u8; 32],
    specs: &[AppSpec],
) -> Result<String, EffectError> {
    let mut lines = Vec::new();
    for spec in specs {
        let current = tx.app(&spec.name)?;
        let (generation, previous) = match &current {
            Some(app) => {
                let same = tx
                    .spec(&spec.name, app.generation)?
                    .is_some_and(|s| s.spec == *spec);
                if same && app.status == AppStatus::Active {
                    lines.push(format!(
                        "{}: unchanged (generation {})",
                        spec.name, app.generation
                    ));
                    continue;
                }
                let newest = tx
                    .specs_of(&spec.name)?
                    .last()
                    .map_or(app.generation, |(g, _)| *g);
                (newest + 1, Some(app.generation))
            }
            None => (1, None),
        };
        tx.put_spec(
            &spec.name,
            generation,
            &SpecRecord {
                spec: spec.clone(),
                file: file.to_string(),
                manifest: text.to_string(),
                hash,
            },
        )?;
        tx.put_app(
            &spec.name,
            &AppRecord {
                generation,
                previous_generation: previous,
                replicas: spec.replicas,
                status: AppStatus::Active,
            },
        )?;
        let replicas = plural(spec.replicas, "replica");
        lines.push(match previous {
            None => format!("{}: created, generation 1, {replicas}", spec.name),
            Some(old) => format!(
                "{}: generation {old} -> {generation}, {replicas} (replaced all at once)",
                spec.name
            ),
        });
    }
    Ok(lines.join("\n"))
}

fn known_app(tx: &Tx<'_>, app: &str) -> Result<AppRecord, EffectError> {
    tx.app(app)?.ok_or_else(|| {
        Refusal::new(
            "unknown-app",
            format!("there is no app `{app}`; `skr8tr status` lists the apps"),
        )
        .into()
    })
}

fn down(tx: &mut Tx<'_>, app: &str) -> Result<String, EffectError> {
    let record = known_app(tx, app)?;
    tx.remove_app(app)?;
    tx.remove_rollout(app)?;
    let placements = tx.placements_of(app)?;
    for (id, _) in &placements {
        tx.remove_placement(id)?;
    }
    Ok(format!(
        "{app}: stopping {} (generation {})",
        plural(placements.len() as u32, "replica"),
        record.generation
    ))
}

fn scale(tx: &mut Tx<'_>, app: &str, replicas: u32) -> Result<String, EffectError> {
    let mut record = known_app(tx, app)?;
    let before = record.replicas;
    record.replicas = replicas;
    tx.put_app(app, &record)?;
    Ok(format!(
        "{app}: {before} -> {}",
        plural(replicas, "replica")
    ))
}

fn add_key(
    tx: &mut Tx<'_>,
    name: &str,
    key: &PublicKey,
    by: Fingerprint,
) -> Result<String, EffectError> {
    let fp = key.fingerprint();
    if tx.operator_key(&fp)?.is_some() {
        return Err(Refusal::new("key-exists", format!("key {fp} is already known")).into());
    }
    tx.add_operator_key(name, key, Some(by))?;
    Ok(format!("operator key `{name}` ({fp}) added"))
}

fn revoke_key(tx: &mut Tx<'_>, fp: &Fingerprint) -> Result<String, EffectError> {
    let active = tx
        .operator_keys()?
        .iter()
        .filter(|(_, k)| k.revoked_seq.is_none())
        .count();
    let Some(record) = tx.operator_key(fp)? else {
        return Err(Refusal::new("unknown-key", format!("no operator key {fp}")).into());
    };
    if record.revoked_seq.is_some() {
        return Err(Refusal::new("already-revoked", format!("key {fp} is already revoked")).into());
    }
    if active <= 1 {
        return Err(Refusal::new(
            "last-key",
            "this is the last active operator key; add another before revoking it",
        )
        .into());
    }
    tx.revoke_operator_key(fp)?;
    Ok(format!("operator key `{}` ({fp}) revoked", record.name))
}

fn plural(n: u32, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}
