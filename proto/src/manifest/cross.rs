//! Checks that span several keys of one app: where the program comes from,
//! what each type allows, scale bounds, and environment variables set twice.

use super::blocks;
use super::check::Checker;
use super::error::Pos;
use super::spec::*;
use super::tree::Entry;
use std::collections::HashMap;

/// Checks between keys: where the program comes from, and what each type allows.
pub(crate) fn checks(c: &mut Checker<'_>, app: &Entry, spec: &AppSpec, at: &HashMap<&str, &Entry>) {
    let name = &spec.name;
    let mut sources: Vec<&&Entry> = ["exec", "serve", "vm"]
        .iter()
        .filter_map(|k| at.get(k))
        .collect();
    // Report at the later one, naming the earlier: in file order.
    sources.sort_by_key(|e| e.key_at);
    // `build { out }` alone names the program: what the build produced.
    let built = spec.build.as_ref().is_some_and(|b| b.out.is_some());
    match sources.as_slice() {
        [] if built => {}
        [] => c.sink.error_hint(
            app.key_at,
            format!("app `{name}` has no `exec`"),
            "add `exec /path/to/binary` (or a `serve` block for static files, a `vm` block, or `out` in `build`)",
        ),
        [_] => {}
        [first, second, ..] => c.sink.error_hint(
            second.key_at,
            format!(
                "app `{name}` names its program twice: `{}` (line {}) and `{}`",
                first.key, first.key_at.line, second.key
            ),
            "an app runs one program: keep `exec`, `serve` or `vm`, not several",
        ),
    }
    let kind_at = at.get("type").map(|e| e.key_at).unwrap_or(app.key_at);
    match (spec.kind, at.get("vm")) {
        (AppKind::Vm, None) if at.contains_key("type") => c.sink.error_hint(
            kind_at,
            format!("app `{name}` is `type vm` but has no `vm` block"),
            "describe the machine: `vm { hypervisor firecracker; kernel /path; rootfs /path }`",
        ),
        (kind, Some(vm)) if kind != AppKind::Vm => c.sink.error_hint(
            vm.key_at,
            format!("app `{name}` has a `vm` block but is `type {kind}`"),
            "add `type vm`",
        ),
        _ => {}
    }
    if let Some(serve) = at.get("serve")
        && spec.kind != AppKind::Service
    {
        c.sink.error_hint(
            serve.key_at,
            format!(
                "`serve` runs a static file server, but app `{name}` is `type {}`",
                spec.kind
            ),
            "remove `type`, or set `type service`",
        );
    }
    if spec.kind == AppKind::Job {
        if let Some(r) = at.get("restart")
            && spec.restart == Restart::Always
        {
            c.sink.error_hint(
                r.value_at,
                format!("job `{name}` cannot `restart always`: a job runs to completion"),
                "use `restart on-failure` or `restart never`",
            );
        }
        if let Some(s) = at.get("scale") {
            c.sink.error_hint(
                s.key_at,
                format!("job `{name}` cannot have a `scale` block"),
                "scaling applies to services; set `replicas` for parallel jobs",
            );
        }
    }
    // Without `replicas` the app starts at `scale { min }`, always in range.
    if let (Some(scale), Some(replicas)) = (&spec.scale, at.get("replicas"))
        && !(scale.min..=scale.max).contains(&spec.replicas)
    {
        let n = spec.replicas;
        let noun = if n == 1 { "replica" } else { "replicas" };
        c.sink.error_hint(
            replicas.value_at,
            format!(
                "app `{name}` starts {n} {noun}, outside its scale range {}..{}",
                scale.min, scale.max
            ),
            "set `replicas` between `scale { min }` and `scale { max }`",
        );
    }
}

/// An environment variable, where it is set (`env`, `secret` or `volume`)
/// and the position of its name.
pub(crate) type Defined = (String, &'static str, Pos);

/// The `NAME value` pairs of an `env` or `secret` block; records each name
/// in `vars` for [`env`].
pub(crate) fn named(
    block: Vec<blocks::Var>,
    from: &'static str,
    vars: &mut Vec<Defined>,
) -> Vec<(String, String)> {
    vars.extend(block.iter().map(|v| (v.name.clone(), from, v.at)));
    block.into_iter().map(|v| (v.name, v.value)).collect()
}

/// An environment variable may be set once, by `env`, `secret` or a volume.
/// `vars` is in file order, so the second setting is the one reported.
pub(crate) fn env(c: &mut Checker<'_>, app: &str, vars: &[Defined]) {
    let mut seen: HashMap<&str, (&str, Pos)> = HashMap::new();
    for (name, from, at) in vars {
        let Some((first, first_at)) = seen.get(name.as_str()).copied() else {
            seen.insert(name, (from, *at));
            continue;
        };
        let by = if first == *from {
            format!("two `{from}` blocks")
        } else {
            format!("both `{first}` and `{from}`")
        };
        c.sink.error_hint(
            *at,
            format!(
                "`{name}` is set by {by} in app `{app}` (first on line {})",
                first_at.line
            ),
            "set each variable in one place",
        );
    }
}
