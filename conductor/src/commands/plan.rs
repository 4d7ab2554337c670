//! `skr8tr plan FILE`: what `up` would change, computed inside a store
//! transaction like the command it previews (and writing nothing but its
//! audit entry), and the index it was computed at. `up --check-index N`
//! applies the manifest only if the index is still `N`, as Nomad's
//! `job run -check-index` does.
//!
//! The index is a digest of what `up` reads for the manifest's apps (and
//! the apps an earlier version of the same file had): their records,
//! current generations and rollouts. Anything that would change what `up`
//! does — another `up`, a scale, the autoscaler, a rollout's progress, a
//! `down` — moves it; placements and log reads do not.

use super::plural;
use super::secrets::opened;
use serde_json::Value;
use sha2::{Digest, Sha256};
use skr8tr_proto::code::Code;
use skr8tr_proto::manifest::{AppSpec, Port};
use skr8tr_proto::sealed::OpeningKey;
use skr8tr_store::records::AppStatus;
use skr8tr_store::{EffectError, Refusal, Tx};
use std::collections::{BTreeMap, BTreeSet};

/// The plan's text: a block per app, warnings, then the index.
pub(super) fn plan(
    tx: &mut Tx<'_>,
    file: &str,
    specs: &[AppSpec],
    opening: &OpeningKey,
) -> Result<String, EffectError> {
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    for spec in specs {
        let Some(app) = tx.app(&spec.name)? else {
            let generation = tx.specs_of(&spec.name)?.last().map_or(0, |(g, _)| *g) + 1;
            out.push(format!(
                "+ app {}: create, generation {generation}, {}",
                spec.name,
                plural(spec.replicas, "replica")
            ));
            for (key, value) in flatten(spec) {
                out.push(format!("    + {key}: {value}"));
            }
            continue;
        };
        let current = tx.spec(&spec.name, app.generation)?;
        let old = current.as_ref().map(|c| &c.spec);
        if old.is_some_and(|old| super::secrets::same(old, spec, opening)) {
            out.push(format!(
                "= app {}: unchanged (generation {})",
                spec.name, app.generation
            ));
            continue;
        }
        let newest = tx
            .specs_of(&spec.name)?
            .last()
            .map_or(app.generation, |(g, _)| *g);
        let wanted = match &spec.scale {
            Some(scale) => app.replicas.clamp(scale.min, scale.max.max(scale.min)),
            None => spec.replicas,
        };
        out.push(format!(
            "~ app {}: roll out generation {} -> {}, {}",
            spec.name,
            app.generation,
            newest + 1,
            how(spec)
        ));
        let diff = diff(&old.map(flatten).unwrap_or_default(), &flatten(spec));
        out.extend(diff.into_iter().map(|l| format!("    {l}")));
        for name in old.map_or(Vec::new(), |o| changed_secrets(o, spec, opening)) {
            out.push(format!("    ~ secret.{name}: a new value (not shown)"));
        }
        if wanted > app.replicas {
            let n = plural(wanted - app.replicas, "replica");
            out.push(format!("    {n} to add ({} -> {wanted})", app.replicas));
        } else if wanted < app.replicas {
            let n = plural(app.replicas - wanted, "replica");
            out.push(format!("    {n} to remove ({} -> {wanted})", app.replicas));
        }
        if spec.scale.is_some() && wanted != spec.replicas {
            warnings.push(format!(
                "{}: autoscaled, keeps {wanted} replicas (its current count, within scale \
                 {{ min max }}), not `replicas {}`",
                spec.name, spec.replicas
            ));
        }
        if let Some(r) = tx.rollout(&spec.name)? {
            warnings.push(format!(
                "{}: rolling out from generation {} to {} now: `up` is refused until it ends \
                 (`skr8tr status`)",
                spec.name, r.from_generation, r.to_generation
            ));
        }
        if app.status == AppStatus::Stopping {
            warnings.push(format!("{}: being stopped (`down`)", spec.name));
        }
    }
    for name in removed(tx, file, specs)? {
        out.push(format!(
            "- app {name}: in an earlier `{file}`, not in this one: `up` leaves it running; \
             `skr8tr down {name}` stops it"
        ));
    }
    if !warnings.is_empty() {
        out.push("warnings:".into());
        out.extend(warnings.into_iter().map(|w| format!("  {w}")));
    }
    let index = index(tx, file, specs)?;
    // The CLI adds how to apply it, with the path it was given.
    out.push(format!("index {index}"));
    Ok(out.join("\n"))
}

/// Refuses with `stale-plan` unless the index is still `expected`.
pub(super) fn check_index(
    tx: &mut Tx<'_>,
    file: &str,
    specs: &[AppSpec],
    expected: u64,
) -> Result<(), EffectError> {
    let now = index(tx, file, specs)?;
    if now != expected {
        return Err(Refusal::new(
            Code::StalePlan,
            format!(
                "the apps of {file} changed since the plan (index {expected}, now {now}): \
                 nothing was applied; plan again (`skr8tr plan` of the same file)"
            ),
        )
        .into());
    }
    Ok(())
}

/// How a rollout of `spec` replaces replicas.
fn how(spec: &AppSpec) -> String {
    match spec.port {
        Port::Fixed(p) => format!(
            "one at a time; in place where port {p} is taken on every node (drained, then \
             replaced: capacity dips by one)"
        ),
        Port::Auto => "one at a time, each new replica ready before an old one drains".into(),
    }
}

/// Apps whose current spec came from a file of the same name but that are
/// not in this manifest.
fn removed(tx: &Tx<'_>, file: &str, specs: &[AppSpec]) -> Result<Vec<String>, EffectError> {
    let named: BTreeSet<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    let mut out = Vec::new();
    for (name, app) in tx.apps()? {
        if named.contains(name.as_str()) {
            continue;
        }
        if tx
            .spec(&name, app.generation)?
            .is_some_and(|s| s.file == file)
        {
            out.push(name);
        }
    }
    Ok(out)
}

/// The digest of what `up` reads for these apps, as a number.
fn index(tx: &Tx<'_>, file: &str, specs: &[AppSpec]) -> Result<u64, EffectError> {
    let mut names: BTreeSet<String> = specs.iter().map(|s| s.name.clone()).collect();
    names.extend(removed(tx, file, specs)?);
    let mut h = Sha256::new();
    for name in &names {
        h.update(skr8tr_proto::wire::encode(name));
        let app = tx.app(name)?;
        h.update(skr8tr_proto::wire::encode(&app));
        let current = match &app {
            Some(a) => tx.spec(name, a.generation)?.map(|s| s.hash),
            None => None,
        };
        h.update(skr8tr_proto::wire::encode(&current));
        let newest = tx.specs_of(name)?.last().map(|(g, _)| *g);
        h.update(skr8tr_proto::wire::encode(&newest));
        let rollout = tx
            .rollout(name)?
            .map(|r| (r.from_generation, r.to_generation, r.step, r.phase));
        h.update(skr8tr_proto::wire::encode(&rollout));
    }
    let digest = h.finalize();
    let mut n = [0u8; 8];
    n.copy_from_slice(&digest[..8]);
    // Within what a shell and JSON take as an integer exactly (2^53).
    Ok(u64::from_be_bytes(n) >> 11)
}

/// A spec as `key: value` lines, in a stable order: nested blocks become
/// dotted keys, named lists (`env`, `constraint`, `secret`) keyed by name.
/// A secret's value is never shown (`changed_secrets` says which changed).
fn flatten(spec: &AppSpec) -> BTreeMap<String, String> {
    let mut plain = spec.clone();
    plain.line = 0;
    plain.secrets.clear();
    let mut out = BTreeMap::new();
    let value = serde_json::to_value(&plain).unwrap_or(Value::Null);
    if let Value::Object(fields) = value {
        for (key, v) in fields {
            match key.as_str() {
                "line" | "name" | "secrets" => {}
                "env" | "constraints" => named(&mut out, &key, &v),
                _ => walk(&mut out, key, &v),
            }
        }
    }
    for (n, _) in &spec.secrets {
        out.insert(format!("secret.{n}"), "(sealed)".into());
    }
    out
}

/// Secrets in both specs whose values differ (opened with the
/// conductor's key; one that cannot be opened counts as changed).
fn changed_secrets(old: &AppSpec, new: &AppSpec, opening: &OpeningKey) -> Vec<String> {
    let (Ok(old), Ok(new)) = (opened(old, opening), opened(new, opening)) else {
        return new.secrets.iter().map(|(n, _)| n.clone()).collect();
    };
    new.secrets
        .iter()
        .filter(|(n, v)| {
            old.secrets
                .iter()
                .any(|(o, ov)| o == n && ov.expose() != v.expose())
        })
        .map(|(n, _)| n.clone())
        .collect()
}

/// `[[NAME, VALUE], …]` as `key.NAME: VALUE`.
fn named(out: &mut BTreeMap<String, String>, key: &str, v: &Value) {
    for pair in v.as_array().into_iter().flatten() {
        if let Some([Value::String(n), value]) = pair.as_array().map(Vec::as_slice) {
            out.insert(format!("{key}.{n}"), show(value));
        }
    }
}

fn walk(out: &mut BTreeMap<String, String>, key: String, v: &Value) {
    match v {
        Value::Null => {}
        Value::Array(a) if a.is_empty() => {}
        Value::Object(o) if is_duration(o) => {
            out.insert(key, show(v));
        }
        Value::Object(o) => {
            for (k, v) in o {
                walk(out, format!("{key}.{k}"), v);
            }
        }
        Value::Array(a) if a.iter().any(|v| v.is_object()) => {
            for (i, v) in a.iter().enumerate() {
                walk(out, format!("{key}[{i}]"), v);
            }
        }
        _ => {
            out.insert(key, show(v));
        }
    }
}

fn is_duration(o: &serde_json::Map<String, Value>) -> bool {
    o.len() == 2 && o.contains_key("secs") && o.contains_key("nanos")
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Object(o) if is_duration(o) => {
            let secs = o.get("secs").and_then(Value::as_u64).unwrap_or(0);
            let nanos = o.get("nanos").and_then(Value::as_u64).unwrap_or(0);
            let ms = secs * 1000 + nanos / 1_000_000;
            if ms % 1000 == 0 {
                format!("{secs}s")
            } else {
                format!("{ms}ms")
            }
        }
        other => other.to_string(),
    }
}

/// `+ key: new`, `- key: old`, `~ key: old -> new`, in key order.
fn diff(old: &BTreeMap<String, String>, new: &BTreeMap<String, String>) -> Vec<String> {
    let keys: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    keys.into_iter()
        .filter_map(|k| match (old.get(k), new.get(k)) {
            (None, Some(n)) => Some(format!("+ {k}: {n}")),
            (Some(o), None) => Some(format!("- {k}: {o}")),
            (Some(o), Some(n)) if o != n => Some(format!("~ {k}: {o} -> {n}")),
            _ => None,
        })
        .collect()
}
