//! `skr8tr plan FILE`: what `up` would change, computed inside a store
//! transaction like the command it previews (and writing nothing but its
//! audit entry), and the index it was computed at. `up --check-index N`
//! applies the manifest only if the index is still `N`, as Nomad's
//! `job run -check-index` does.
//!
//! The index is a digest of what `up` would do to each app of the
//! manifest (see [`index`]): anything that changes that — another `up`, a
//! scale of a changed app, a rollout starting or ending, a `down`, a
//! different manifest — moves it; placements and log reads do not.

use super::plural;
use super::secrets::opened;
use serde_json::Value;
use sha2::{Digest, Sha256};
use skr8tr_proto::code::Code;
use skr8tr_proto::manifest::{AppSpec, Port, Routing};
use skr8tr_proto::sealed::OpeningKey;
use skr8tr_store::records::RouteRecord;
use skr8tr_store::{EffectError, Refusal, Tx};
use std::collections::{BTreeMap, BTreeSet};

/// Longest plan text: past it apps are counted, not shown (the index
/// line always ends it).
const MAX_PLAN_BYTES: usize = 256 * 1024;
/// The line the CLI looks for: `up` would be refused now, so it prints
/// no command to apply the plan.
pub(crate) const REFUSED_NOW: &str = "up would be refused now:";

/// What `up` would do to one app of the manifest.
enum Decision {
    Create {
        generation: u64,
    },
    Unchanged {
        generation: u64,
    },
    Roll {
        from: u64,
        to: u64,
        current: u32,
        wanted: u32,
        /// A rollout already running (from, to): `up` is refused.
        running: Option<(u64, u64)>,
        old: Box<AppSpec>,
        changed_secrets: Vec<String>,
    },
}

fn decide(tx: &Tx<'_>, spec: &AppSpec, opening: &OpeningKey) -> Result<Decision, EffectError> {
    let newest = tx.newest_generation(&spec.name)?;
    let Some(app) = tx.app(&spec.name)? else {
        return Ok(Decision::Create {
            generation: newest.unwrap_or(0) + 1,
        });
    };
    let current = tx.spec(&spec.name, app.generation)?;
    if let Some(old) = &current
        && super::secrets::same(&old.spec, spec, opening)
    {
        return Ok(Decision::Unchanged {
            generation: app.generation,
        });
    }
    let wanted = match &spec.scale {
        Some(scale) => app.replicas.clamp(scale.min, scale.max.max(scale.min)),
        None => spec.replicas,
    };
    let old = current.map(|c| c.spec).unwrap_or_else(|| spec.clone());
    Ok(Decision::Roll {
        from: app.generation,
        to: newest.unwrap_or(app.generation) + 1,
        current: app.replicas,
        wanted,
        running: tx
            .rollout(&spec.name)?
            .map(|r| (r.from_generation, r.to_generation)),
        changed_secrets: changed_secrets(&old, spec, opening),
        old: Box::new(old),
    })
}

/// The plan's text: a block per app, warnings, then the index.
pub(super) fn plan(
    tx: &mut Tx<'_>,
    file: &str,
    specs: &[AppSpec],
    routing: &[Routing],
    opening: &OpeningKey,
) -> Result<String, EffectError> {
    let mut out: Vec<String> = Vec::new();
    let mut bytes = 0;
    let mut warnings = Vec::new();
    let mut refused = Vec::new();
    let mut hidden = 0;
    // Decided once: the index hashes the same decisions.
    let decisions = specs
        .iter()
        .map(|spec| decide(tx, spec, opening))
        .collect::<Result<Vec<_>, _>>()?;
    for (spec, decision) in specs.iter().zip(&decisions) {
        let mut block = Vec::new();
        match decision {
            Decision::Create { generation } => {
                block.push(format!(
                    "+ app {}: create, generation {generation}, {}",
                    spec.name,
                    plural(spec.replicas, "replica")
                ));
                for (key, value) in flatten(spec) {
                    block.push(format!("    + {key}: {value}"));
                }
            }
            Decision::Unchanged { generation } => block.push(format!(
                "= app {}: unchanged (generation {generation})",
                spec.name
            )),
            Decision::Roll {
                from,
                to,
                current,
                wanted,
                running,
                old,
                changed_secrets,
            } => {
                block.push(format!(
                    "~ app {}: roll out generation {from} -> {to}, {}",
                    spec.name,
                    how(spec)
                ));
                let diff = diff(&flatten(old), &flatten(spec));
                if diff.is_empty() && changed_secrets.is_empty() {
                    block.push("    (only the order of its lines changed)".into());
                }
                block.extend(diff.into_iter().map(|l| format!("    {l}")));
                for name in changed_secrets {
                    block.push(format!("    ~ secret.{name}: a new value (not shown)"));
                }
                if wanted > current {
                    let n = plural(wanted - current, "replica");
                    block.push(format!("    {n} to add ({current} -> {wanted})"));
                } else if wanted < current {
                    let n = plural(current - wanted, "replica");
                    block.push(format!("    {n} to remove ({current} -> {wanted})"));
                }
                if spec.scale.is_some() && *wanted != spec.replicas {
                    warnings.push(format!(
                        "{}: autoscaled, keeps {wanted} replicas (its current count, within \
                         scale {{ min max }}), not `replicas {}`",
                        spec.name, spec.replicas
                    ));
                }
                if let Some((f, t)) = running {
                    refused.push(format!(
                        "{} is rolling out from generation {f} to {t}; plan again once it \
                         ends (`skr8tr status`)",
                        spec.name
                    ));
                }
            }
        }
        let size: usize = block.iter().map(|l| l.len() + 1).sum();
        if bytes + size > MAX_PLAN_BYTES {
            hidden += 1;
            continue;
        }
        bytes += size;
        out.extend(block);
    }
    if hidden > 0 {
        out.push(format!(
            "… and {hidden} more apps (the plan shows at most {} KiB)",
            MAX_PLAN_BYTES / 1024
        ));
    }
    for name in removed(tx, file, specs)? {
        out.push(format!(
            "- app {name}: not in this file, but its current generation came from a file also \
             named `{file}`: `up` leaves it running (`skr8tr down {name}` stops it, if it \
             belongs to this file)"
        ));
    }
    for r in routing {
        let (have, want) = route_change(tx, r)?;
        if have != want {
            out.push(format!(
                "~ app {}: served by the ingress at {} (was {})",
                r.app,
                show_route(want.as_ref()),
                show_route(have.as_ref())
            ));
        }
    }
    if !warnings.is_empty() {
        out.push("warnings:".into());
        out.extend(warnings.into_iter().map(|w| format!("  {w}")));
    }
    if !refused.is_empty() {
        out.push(format!("{REFUSED_NOW} {}", refused.join("; ")));
    }
    let index = index_of(tx, specs, &decisions, routing)?;
    // The CLI adds how to apply it, with the path it was given.
    out.push(format!("index {index}"));
    Ok(out.join("\n"))
}

/// Refuses with `stale-plan` unless the index is still `expected`.
pub(super) fn check_index(
    tx: &mut Tx<'_>,
    file: &str,
    specs: &[AppSpec],
    routing: &[Routing],
    opening: &OpeningKey,
    expected: u64,
) -> Result<(), EffectError> {
    let now = index(tx, specs, routing, opening)?;
    if now != expected {
        return Err(Refusal::new(
            Code::StalePlan,
            format!(
                "what up would do to {file} changed since the plan (index {expected}, now \
                 {now}): nothing was applied; plan again (`skr8tr plan` of the same file)"
            ),
        )
        .into());
    }
    Ok(())
}

/// An app's routing as stored, and as the manifest asks.
fn route_change(
    tx: &Tx<'_>,
    r: &Routing,
) -> Result<(Option<RouteRecord>, Option<RouteRecord>), EffectError> {
    let want = (r.route.is_some() || r.host.is_some()).then(|| RouteRecord {
        route: r.route.clone(),
        host: r.host.clone(),
    });
    Ok((tx.route(&r.app)?, want))
}

fn show_route(r: Option<&RouteRecord>) -> String {
    match r {
        None => "no route".into(),
        Some(r) => match (&r.host, &r.route) {
            (Some(h), Some(p)) => format!("host `{h}` path `{p}`"),
            (Some(h), None) => format!("host `{h}`"),
            (None, Some(p)) => format!("path `{p}`"),
            (None, None) => "no route".into(),
        },
    }
}

/// How a rollout of `spec` replaces replicas.
fn how(spec: &AppSpec) -> String {
    match spec.port {
        Port::Fixed(p) => format!(
            "one at a time; in place where port {p} is taken on every node (drained, then \
             replaced: capacity dips by one)"
        ),
        Port::Auto => "one at a time, each new replica ready before an old one drains (drained \
                       first where no node has room for one more)"
            .into(),
    }
}

/// Apps whose current spec came from a file of the same name (the CLI
/// sends the base name) but that are not in this manifest: a hint only.
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

/// What `up` would do, as a number: the cluster, and for each app of the
/// manifest its decision (create at g, unchanged at g, roll g -> g' to N
/// replicas, a rollout running) with the new spec's fields and the names
/// of the secrets whose values change. Whatever changes what `up` would
/// do moves it; what does not (placements, log reads, an unchanged app's
/// scaling) does not. A secret's value changed again after the plan, to
/// another new value, does not move it.
fn index(
    tx: &Tx<'_>,
    specs: &[AppSpec],
    routing: &[Routing],
    opening: &OpeningKey,
) -> Result<u64, EffectError> {
    let decisions = specs
        .iter()
        .map(|spec| decide(tx, spec, opening))
        .collect::<Result<Vec<_>, _>>()?;
    index_of(tx, specs, &decisions, routing)
}

/// [`index`] from decisions already made, one per spec.
fn index_of(
    tx: &Tx<'_>,
    specs: &[AppSpec],
    decisions: &[Decision],
    routing: &[Routing],
) -> Result<u64, EffectError> {
    let mut h = Sha256::new();
    h.update(tx.cluster_id()?.0);
    for r in routing {
        let (have, want) = route_change(tx, r)?;
        h.update(skr8tr_proto::wire::encode(&(&r.app, &have, &want)));
    }
    for (spec, decision) in specs.iter().zip(decisions) {
        h.update(skr8tr_proto::wire::encode(&spec.name));
        let fields = flatten(spec);
        match decision {
            Decision::Create { generation } => {
                h.update(skr8tr_proto::wire::encode(&("create", generation, &fields)));
            }
            Decision::Unchanged { generation } => {
                h.update(skr8tr_proto::wire::encode(&("unchanged", generation)));
            }
            Decision::Roll {
                from,
                to,
                current,
                wanted,
                running,
                changed_secrets,
                ..
            } => {
                h.update(skr8tr_proto::wire::encode(&(
                    "roll",
                    (from, to, current, wanted, running),
                    &fields,
                    &changed_secrets,
                )));
            }
        }
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
