//! What each verified operator command does to desired state. Checks that
//! need no state (the manifest parses, secrets match their signed digests)
//! happen in `prepare`; the effect then runs inside the store transaction
//! that also records the command, reading current state through `Tx`.

use sha2::{Digest, Sha256};
use skr8tr_proto::command::Command;
use skr8tr_proto::keys::{Fingerprint, PublicKey};
use skr8tr_proto::manifest::{self, AppSpec, MAX_REPLICAS, Secret, secrets};
use skr8tr_proto::wire::SecretValue;
use skr8tr_store::records::{AppRecord, AppStatus, RolloutPhase, RolloutRecord, SpecRecord};
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
            Ok(Box::new(move |tx| {
                up(tx, &file, &manifest, hash, &specs, false)
            }))
        }
        Command::Rollout { file, manifest } => {
            let specs = parse_with_secrets(&file, &manifest, sidecar)?;
            let hash: [u8; 32] = Sha256::digest(manifest.as_bytes()).into();
            Ok(Box::new(move |tx| {
                up(tx, &file, &manifest, hash, &specs, true)
            }))
        }
        Command::Rollback { app } => Ok(Box::new(move |tx| rollback(tx, &app))),
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

/// `up` creates new apps and rolls changed ones to a new generation;
/// `rollout` (`existing_only`) refuses apps that do not exist yet.
fn up(
    tx: &mut Tx<'_>,
    file: &str,
    text: &str,
    hash: [u8; 32],
    specs: &[AppSpec],
    existing_only: bool,
) -> Result<String, EffectError> {
    let mut lines = Vec::new();
    for spec in specs {
        let Some(app) = tx.app(&spec.name)? else {
            if existing_only {
                return Err(Refusal::new(
                    "unknown-app",
                    format!(
                        "there is no app `{}` to roll out; create it with `skr8tr up {file}`",
                        spec.name
                    ),
                )
                .into());
            }
            // After a `down`, the old generations' specs remain: a new app of
            // the same name starts after them, so no replica id is reused
            // for a different program.
            let generation = tx.specs_of(&spec.name)?.last().map_or(0, |(g, _)| *g) + 1;
            put_generation(tx, spec, generation, file, text, hash)?;
            tx.put_app(
                &spec.name,
                &AppRecord {
                    generation,
                    previous_generation: None,
                    replicas: spec.replicas,
                    status: AppStatus::Active,
                },
            )?;
            let replicas = plural(spec.replicas, "replica");
            lines.push(format!(
                "{}: created, generation {generation}, {replicas}",
                spec.name
            ));
            continue;
        };
        let same = tx
            .spec(&spec.name, app.generation)?
            .is_some_and(|s| s.spec == *spec);
        if same {
            lines.push(format!(
                "{}: unchanged (generation {})",
                spec.name, app.generation
            ));
            continue;
        }
        no_rollout_running(tx, &spec.name)?;
        let newest = tx
            .specs_of(&spec.name)?
            .last()
            .map_or(app.generation, |(g, _)| *g);
        let generation = newest + 1;
        put_generation(tx, spec, generation, file, text, hash)?;
        if spec.replicas != app.replicas {
            tx.put_app(
                &spec.name,
                &AppRecord {
                    replicas: spec.replicas,
                    ..app.clone()
                },
            )?;
        }
        let replicas = plural(spec.replicas, "replica");
        lines.push(start_rollout(
            tx,
            &spec.name,
            app.generation,
            generation,
            &replicas,
        )?);
    }
    Ok(lines.join("\n"))
}

fn put_generation(
    tx: &mut Tx<'_>,
    spec: &AppSpec,
    generation: u64,
    file: &str,
    text: &str,
    hash: [u8; 32],
) -> Result<(), EffectError> {
    Ok(tx.put_spec(
        &spec.name,
        generation,
        &SpecRecord {
            spec: spec.clone(),
            file: file.to_string(),
            manifest: text.to_string(),
            hash,
        },
    )?)
}

fn no_rollout_running(tx: &Tx<'_>, app: &str) -> Result<(), EffectError> {
    if let Some(r) = tx.rollout(app)? {
        return Err(Refusal::new(
            "rollout-in-progress",
            format!(
                "app `{app}` is rolling out from generation {} to {}; wait for it to end \
                 (`skr8tr status`), then try again",
                r.from_generation, r.to_generation
            ),
        )
        .into());
    }
    Ok(())
}

fn start_rollout(
    tx: &mut Tx<'_>,
    app: &str,
    from: u64,
    to: u64,
    replicas: &str,
) -> Result<String, EffectError> {
    let to_spec = tx.spec(app, to)?.ok_or_else(|| {
        Refusal::new(
            "unknown-generation",
            format!("app `{app}` has no generation {to}"),
        )
    })?;
    let now = tx.time_ms();
    tx.put_rollout(
        app,
        &RolloutRecord {
            from_generation: from,
            to_generation: to,
            step: 0,
            phase: RolloutPhase::Surging,
            started_at_ms: now,
            step_deadline_ms: now + crate::rollout::ready_timeout_ms(&to_spec.spec),
            reason: None,
        },
    )?;
    let how = match to_spec.spec.port {
        skr8tr_proto::manifest::Port::Fixed(p) => format!(
            "one at a time; where port {p} is taken on every node, a replica is drained first \
             and replaced (capacity dips by one during that step)"
        ),
        skr8tr_proto::manifest::Port::Auto => {
            "one at a time, each new replica ready before an old one drains".into()
        }
    };
    Ok(format!(
        "{app}: rolling out generation {from} -> {to}, {replicas}, {how}"
    ))
}

fn rollback(tx: &mut Tx<'_>, app: &str) -> Result<String, EffectError> {
    let record = known_app(tx, app)?;
    no_rollout_running(tx, app)?;
    let Some(previous) = record.previous_generation else {
        return Err(Refusal::new(
            "no-previous",
            format!("app `{app}` has no previous generation to roll back to"),
        )
        .into());
    };
    let replicas = plural(record.replicas, "replica");
    start_rollout(tx, app, record.generation, previous, &replicas)
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
    no_rollout_running(tx, app)?;
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
        return Err(Refusal::new(
            "no-such-key",
            format!("no operator key {fp}; `skr8tr key list` shows them"),
        )
        .into());
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

#[cfg(test)]
mod tests {
    use crate::testing::Harness;
    use skr8tr_proto::command::Command;
    use skr8tr_proto::keys::SecretKey;
    use skr8tr_store::Outcome;
    use skr8tr_store::records::AppStatus;

    const WEB: &str = "app web\n  exec /bin/web\n  replicas 2\n";

    fn refused(outcome: Outcome<String>) -> (String, String) {
        match outcome {
            Outcome::Rejected { refusal, seq } => {
                assert!(seq.is_some(), "a refused command is recorded");
                (refusal.code, refusal.message)
            }
            Outcome::Accepted { value, .. } => panic!("accepted: {value}"),
        }
    }

    fn accepted(outcome: Outcome<String>) -> String {
        match outcome {
            Outcome::Accepted { value, .. } => value,
            Outcome::Rejected { refusal, .. } => panic!("refused: {refusal:?}"),
        }
    }

    #[test]
    fn up_creates_then_leaves_unchanged_then_rolls_out_a_change() {
        let h = Harness::new("cmd-up");
        let msg = accepted(h.up(WEB));
        assert_eq!(msg, "web: created, generation 1, 2 replicas");
        let snap = h.c.store.snapshot().unwrap();
        let app = snap.app("web").unwrap().unwrap();
        assert_eq!((app.generation, app.replicas), (1, 2));
        assert_eq!(app.status, AppStatus::Active);
        assert!(snap.rollout("web").unwrap().is_none());
        drop(snap);

        assert_eq!(accepted(h.up(WEB)), "web: unchanged (generation 1)");
        let msg = accepted(h.up(&WEB.replace("/bin/web", "/bin/web2")));
        assert!(
            msg.starts_with("web: rolling out generation 1 -> 2, 2 replicas"),
            "{msg}"
        );
        let snap = h.c.store.snapshot().unwrap();
        let rollout = snap.rollout("web").unwrap().unwrap();
        assert_eq!((rollout.from_generation, rollout.to_generation), (1, 2));
        assert_eq!(
            snap.spec("web", 2).unwrap().unwrap().spec.exec.as_deref(),
            Some("/bin/web2")
        );
        drop(snap);
        // A second change while it rolls is refused, and nothing changes.
        let (code, msg) = refused(h.up(&WEB.replace("/bin/web", "/bin/web3")));
        assert_eq!(code, "rollout-in-progress");
        assert!(msg.contains("from generation 1 to 2"), "{msg}");
        let (code, _) = refused(h.apply(Command::Scale {
            app: "web".into(),
            replicas: 3,
        }));
        assert_eq!(code, "rollout-in-progress");
        assert!(
            h.c.store
                .snapshot()
                .unwrap()
                .spec("web", 3)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_rollout_needs_an_existing_app_and_a_rollback_a_previous_generation() {
        let h = Harness::new("cmd-rollout");
        let (code, msg) = refused(h.apply(Command::Rollout {
            file: "t.skr8tr".into(),
            manifest: WEB.into(),
        }));
        assert_eq!(code, "unknown-app");
        assert!(msg.contains("skr8tr up t.skr8tr"), "{msg}");
        accepted(h.up(WEB));
        let (code, _) = refused(h.apply(Command::Rollback { app: "web".into() }));
        assert_eq!(code, "no-previous");
        let (code, msg) = refused(h.apply(Command::Rollback { app: "nope".into() }));
        assert_eq!(code, "unknown-app");
        assert!(msg.contains("skr8tr status"), "{msg}");
    }

    #[test]
    fn scale_is_bounded_and_down_forgets_the_app_and_its_placements() {
        let h = Harness::new("cmd-scale");
        let (code, _) = refused(h.apply(Command::Scale {
            app: "web".into(),
            replicas: 1001,
        }));
        assert_eq!(code, "bad-count");
        let (code, _) = refused(h.apply(Command::Scale {
            app: "web".into(),
            replicas: 2,
        }));
        assert_eq!(code, "unknown-app");
        accepted(h.up(WEB));
        let msg = h.ok(Command::Scale {
            app: "web".into(),
            replicas: 5,
        });
        assert_eq!(msg, "web: 2 -> 5 replicas");
        h.report("n1", &[]);
        assert!(crate::reconciler::step(&h.c, h.now()).unwrap());
        assert_eq!(h.placements().len(), 5);
        let msg = h.ok(Command::Down { app: "web".into() });
        assert_eq!(msg, "web: stopping 5 replicas (generation 1)");
        assert!(h.placements().is_empty());
        assert!(h.c.store.snapshot().unwrap().app("web").unwrap().is_none());
        // A new app of the same name starts after the old generations.
        assert_eq!(
            accepted(h.up(WEB)),
            "web: created, generation 2, 2 replicas"
        );
    }

    #[test]
    fn operator_keys_are_added_once_and_the_last_is_never_revoked() {
        let h = Harness::new("cmd-keys");
        let other = SecretKey::from_seed(&[9; 32]);
        let add = || Command::AddOperatorKey {
            name: "alice".into(),
            public_key: other.public().to_bytes(),
        };
        let msg = h.ok(add());
        assert!(msg.starts_with("operator key `alice`"), "{msg}");
        let (code, _) = refused(h.apply(add()));
        assert_eq!(code, "key-exists");
        let (code, _) = refused(h.apply(Command::AddOperatorKey {
            name: "bad".into(),
            public_key: vec![1, 2, 3],
        }));
        assert_eq!(code, "bad-key");
        h.ok(Command::RevokeOperatorKey {
            fingerprint: other.public().fingerprint(),
        });
        let (code, _) = refused(h.apply(Command::RevokeOperatorKey {
            fingerprint: other.public().fingerprint(),
        }));
        assert_eq!(code, "already-revoked");
        let (code, msg) = refused(h.apply(Command::RevokeOperatorKey {
            fingerprint: h.operator.public().fingerprint(),
        }));
        assert_eq!(code, "last-key");
        assert!(msg.contains("add another"), "{msg}");
        let (code, _) = refused(h.apply(Command::RevokeOperatorKey {
            fingerprint: SecretKey::from_seed(&[3; 32]).public().fingerprint(),
        }));
        assert_eq!(code, "no-such-key");
    }

    #[test]
    fn secrets_must_come_beside_the_manifest_and_match_its_digests() {
        let h = Harness::new("cmd-secrets");
        let text = "app db\n  exec /bin/db\n  secret { DB_PASS hunter2 }\n";
        // Through `up` (redacted, value beside it): accepted, and the
        // stored spec carries the value for the node.
        accepted(h.up(text));
        let spec =
            h.c.store
                .snapshot()
                .unwrap()
                .spec("db", 1)
                .unwrap()
                .unwrap();
        assert_eq!(spec.spec.secrets[0].1.expose(), "hunter2");
        assert!(
            !spec.manifest.contains("hunter2"),
            "the signed text holds a digest"
        );
        // In clear in the signed text: refused.
        let clear = Command::Up {
            file: "t.skr8tr".into(),
            manifest: text.replace("db", "db2"),
        };
        let (code, msg) = refused(h.apply(clear));
        assert_eq!(code, "secret-in-clear");
        assert!(msg.contains("skr8tr up"), "{msg}");
        // Redacted but not sent, or sent with another value: refused.
        let (signed, _) =
            skr8tr_proto::manifest::secrets::redact("t", &text.replace("db", "db3"), || [1; 16])
                .unwrap();
        let up = Command::Up {
            file: "t.skr8tr".into(),
            manifest: signed,
        };
        let (code, _) = refused(h.apply_with(up.clone(), &[]));
        assert_eq!(code, "secret-missing");
        let wrong = skr8tr_proto::wire::SecretValue {
            app: "db3".into(),
            name: "DB_PASS".into(),
            value: "hunter3".into(),
        };
        let (code, _) = refused(h.apply_with(up, &[wrong]));
        assert_eq!(code, "secret-mismatch");
    }

    #[test]
    fn an_invalid_manifest_and_a_join_ticket_sent_as_a_command_are_refused() {
        let h = Harness::new("cmd-invalid");
        let (code, msg) = refused(h.apply(Command::Up {
            file: "bad.skr8tr".into(),
            manifest: "app web\n  replcas 3\n".into(),
        }));
        assert_eq!(code, "invalid-manifest");
        assert!(msg.contains("bad.skr8tr:2:3"), "{msg}");
        let (code, msg) = refused(h.apply(Command::AdmitNode {
            name: "n1".into(),
            expires_at_ms: h.now() + 60_000,
        }));
        assert_eq!(code, "ticket");
        assert!(msg.contains("skr8tr node --name n1 --ticket"), "{msg}");
        let (code, _) = refused(h.apply(Command::Logs {
            app: "nope".into(),
            replica: None,
            follow: false,
        }));
        assert_eq!(code, "unknown-app");
    }
}
