//! What app commands do inside their commit: up, rollout, rollback,
//! down and scale.

use super::plural;
use skr8tr_proto::code::Code;
use skr8tr_proto::manifest::AppSpec;
use skr8tr_store::records::{AppRecord, AppStatus, RolloutPhase, RolloutRecord, SpecRecord};
use skr8tr_store::{EffectError, Refusal, Tx};

/// `up` creates new apps and rolls changed ones to a new generation;
/// `rollout` (`existing_only`) refuses apps that do not exist yet.
pub(super) fn up(
    tx: &mut Tx<'_>,
    file: &str,
    text: &str,
    hash: [u8; 32],
    specs: &[AppSpec],
    existing_only: bool,
    opening: &skr8tr_proto::sealed::OpeningKey,
) -> Result<String, EffectError> {
    let mut lines = Vec::new();
    for spec in specs {
        let Some(app) = tx.app(&spec.name)? else {
            if existing_only {
                return Err(Refusal::new(
                    Code::UnknownApp,
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
            .is_some_and(|s| super::secrets::same(&s.spec, spec, opening));
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
        // An autoscaled app keeps the count the autoscaler (or `scale`)
        // chose, brought into its new range; `replicas` is where it starts.
        let wanted = match &spec.scale {
            Some(scale) => app.replicas.clamp(scale.min, scale.max.max(scale.min)),
            None => spec.replicas,
        };
        if wanted != app.replicas {
            tx.put_app(
                &spec.name,
                &AppRecord {
                    replicas: wanted,
                    ..app.clone()
                },
            )?;
        }
        let replicas = plural(wanted, "replica");
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
            Code::RolloutInProgress,
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
            Code::UnknownGeneration,
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

/// `secret set`: the app's current spec with secret `name` set to the
/// sealed `value` (added if it had none of that name) becomes a new
/// generation, rolled out like any other.
pub(super) fn set_secret(
    tx: &mut Tx<'_>,
    app: &str,
    name: &str,
    value: &str,
) -> Result<String, EffectError> {
    let record = known_app(tx, app)?;
    no_rollout_running(tx, app)?;
    let current = tx.spec(app, record.generation)?.ok_or_else(|| {
        Refusal::new(
            Code::UnknownGeneration,
            format!("app `{app}` has no generation {}", record.generation),
        )
    })?;
    let mut spec = current.spec.clone();
    let secret = skr8tr_proto::manifest::Secret::new(value.to_string());
    match spec.secrets.iter_mut().find(|(n, _)| n == name) {
        Some((_, v)) => *v = secret,
        None => spec.secrets.push((name.to_string(), secret)),
    }
    let newest = tx
        .specs_of(app)?
        .last()
        .map_or(record.generation, |(g, _)| *g);
    let generation = newest + 1;
    put_generation(
        tx,
        &spec,
        generation,
        &current.file,
        &current.manifest,
        current.hash,
    )?;
    let replicas = plural(record.replicas, "replica");
    let rolling = start_rollout(tx, app, record.generation, generation, &replicas)?;
    Ok(format!("{app}: secret `{name}` set\n{rolling}"))
}

pub(super) fn rollback(tx: &mut Tx<'_>, app: &str) -> Result<String, EffectError> {
    let record = known_app(tx, app)?;
    no_rollout_running(tx, app)?;
    let Some(previous) = record.previous_generation else {
        return Err(Refusal::new(
            Code::NoPrevious,
            format!("app `{app}` has no previous generation to roll back to"),
        )
        .into());
    };
    let replicas = plural(record.replicas, "replica");
    start_rollout(tx, app, record.generation, previous, &replicas)
}

pub(super) fn known_app(tx: &Tx<'_>, app: &str) -> Result<AppRecord, EffectError> {
    tx.app(app)?.ok_or_else(|| {
        Refusal::new(
            Code::UnknownApp,
            format!("there is no app `{app}`; `skr8tr status` lists the apps"),
        )
        .into()
    })
}

pub(super) fn down(tx: &mut Tx<'_>, app: &str) -> Result<String, EffectError> {
    let record = known_app(tx, app)?;
    tx.remove_app(app)?;
    tx.remove_rollout(app)?;
    tx.set_route(app, None)?;
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

/// An operator's `scale`: on an autoscaled app, only inside its range.
pub(super) fn scale(tx: &mut Tx<'_>, app: &str, replicas: u32) -> Result<String, EffectError> {
    let record = known_app(tx, app)?;
    if let Some(scale) = tx.spec(app, record.generation)?.and_then(|s| s.spec.scale)
        && !(scale.min..=scale.max).contains(&replicas)
    {
        return Err(Refusal::new(
            Code::BadCount,
            format!(
                "`{app}` autoscales between {} and {} replicas; scale it inside that range, \
                 or change its `scale {{ min max }}` and `skr8tr up` the manifest",
                scale.min, scale.max
            ),
        )
        .into());
    }
    scale_to(tx, app, replicas)
}

/// Sets an app's desired count (the operator's `scale` after its checks,
/// and the autoscaler's changes).
pub(crate) fn scale_to(tx: &mut Tx<'_>, app: &str, replicas: u32) -> Result<String, EffectError> {
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
