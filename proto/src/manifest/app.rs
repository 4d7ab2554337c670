//! Second pass, app level: one `app` entry of the tree to an `AppSpec`, with
//! the checks that span several keys (program source, type, scale bounds).

use super::blocks;
use super::check::{Checker, Keys};
use super::error::Sink;
use super::spec::*;
use super::tree::Entry;
use super::values;
use std::collections::HashMap;

const APP_KEYS: Keys = Keys {
    place: String::new(),
    known: &[
        "type", "exec", "args", "port", "replicas", "ram", "cpu", "gpu", "restart", "drain",
        "settle", "health", "scale", "env", "secret", "volume", "build", "serve", "vm",
    ],
    aliases: &[("bin", "exec"), ("cpus", "cpu")],
    repeatable: &["volume"],
};

/// Every app of a file; duplicate names are reported here.
pub(crate) fn apps(entries: &[Entry], sink: &mut Sink) -> Vec<AppSpec> {
    let mut out = Vec::new();
    let mut names: HashMap<String, u32> = HashMap::new();
    for e in entries {
        if e.key.is_empty() {
            continue;
        }
        if e.key != "app" {
            outside_app(e, sink);
            continue;
        }
        let name = app_name(e, sink);
        if let Some(name) = &name {
            if let Some(first) = names.get(name) {
                sink.error_hint(
                    e.value_at,
                    format!("app `{name}` is defined twice (first on line {first})"),
                    "give each app its own name, or merge the two blocks",
                );
                continue;
            }
            names.insert(name.clone(), e.key_at.line);
        }
        if let Some(spec) = app(e, name, sink) {
            out.push(spec);
        }
    }
    out
}

fn outside_app(e: &Entry, sink: &mut Sink) {
    let mut candidates: Vec<&str> = vec!["app"];
    if e.key.len() > 2 && super::error::nearest(&e.key, &candidates).is_some() {
        sink.error_hint(
            e.key_at,
            format!("unknown key `{}` at the top of the file", e.key),
            "did you mean `app`?",
        );
        return;
    }
    candidates.extend(APP_KEYS.known);
    let hint = if APP_KEYS.known.contains(&e.key.as_str())
        || APP_KEYS.aliases.iter().any(|(a, _)| *a == e.key)
    {
        "start a block with `app NAME` and indent this line under it"
    } else {
        "a manifest is a list of `app NAME` blocks"
    };
    sink.error_hint(
        e.key_at,
        format!("`{}` is outside any app block", e.key),
        hint,
    );
}

/// Checks an app name: it ends up in replica ids (`app/generation/index`),
/// environment variables and URLs, so it stays DNS-label-like.
fn app_name(e: &Entry, sink: &mut Sink) -> Option<String> {
    let name = e.value.as_str();
    if name.is_empty() {
        sink.error_hint(
            e.value_at,
            "`app` needs a name",
            "for example `app api-server`",
        );
        return None;
    }
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !ok_chars || name.starts_with('-') || name.ends_with('-') || name.len() > 63 {
        let suggestion: String = name
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(63)
            .collect();
        let suggestion = suggestion.trim_matches('-');
        let hint = if suggestion.is_empty() {
            "use lowercase letters, digits and `-`, like `api-server`".to_string()
        } else {
            format!("use lowercase letters, digits and `-`, like `{suggestion}`")
        };
        sink.error_hint(
            e.value_at,
            format!("`{name}` is not a valid app name (1 to 63 of a-z, 0-9 and `-`, not starting or ending with `-`)"),
            hint,
        );
        return None;
    }
    Some(name.to_string())
}

fn app(e: &Entry, name: Option<String>, sink: &mut Sink) -> Option<AppSpec> {
    let errors_before = sink.count();
    let Some(block) = &e.block else {
        sink.error_hint(
            e.key_at,
            format!("app `{}` has no settings", e.value),
            "indent its keys under it, starting with `  exec /path/to/binary`",
        );
        return None;
    };
    let name = name?;
    let mut c = Checker { sink };
    let keys = Keys {
        place: format!("app `{name}`"),
        ..APP_KEYS
    };
    let mut spec = AppSpec {
        name: name.clone(),
        kind: AppKind::Service,
        exec: None,
        args: Vec::new(),
        port: Port::Auto,
        replicas: DEFAULT_REPLICAS,
        ram: None,
        cpu_millis: None,
        gpu: false,
        restart: Restart::Always,
        drain: DEFAULT_DRAIN,
        settle: DEFAULT_SETTLE,
        health: None,
        scale: None,
        env: Vec::new(),
        secrets: Vec::new(),
        volumes: Vec::new(),
        build: None,
        serve: None,
        vm: None,
        line: e.key_at.line,
    };
    let mut at: HashMap<&'static str, &Entry> = HashMap::new();
    let mut failed = false;
    let mut serve_port = None;
    for (key, entry) in c.known(&block.entries, &keys) {
        at.insert(key, entry);
        let ok = match key {
            "type" => c
                .choice(
                    entry,
                    &[
                        ("service", AppKind::Service),
                        ("process", AppKind::Service),
                        ("job", AppKind::Job),
                        ("wasm", AppKind::Wasm),
                        ("vm", AppKind::Vm),
                    ],
                )
                .map(|k| spec.kind = k)
                .is_some(),
            "exec" => exec(&mut c, entry).map(|p| spec.exec = Some(p)).is_some(),
            "args" => c
                .parsed(entry, "args --port $PORT", values::words)
                .map(|a| spec.args = a)
                .is_some(),
            "port" => c
                .parsed(entry, "port 8080", port)
                .map(|p| spec.port = p)
                .is_some(),
            "replicas" => replicas(&mut c, entry).map(|n| spec.replicas = n).is_some(),
            "ram" => c
                .parsed(entry, "ram 256mb", values::size)
                .map(|n| spec.ram = Some(n))
                .is_some(),
            "cpu" => c
                .parsed(entry, "cpus 0.5", values::cpus)
                .map(|n| spec.cpu_millis = Some(n))
                .is_some(),
            "gpu" => c
                .parsed(entry, "gpu true", values::boolean)
                .map(|b| spec.gpu = b)
                .is_some(),
            "restart" => c
                .choice(
                    entry,
                    &[
                        ("always", Restart::Always),
                        ("on-failure", Restart::OnFailure),
                        ("never", Restart::Never),
                    ],
                )
                .map(|r| spec.restart = r)
                .is_some(),
            "drain" => c
                .parsed(entry, "drain 5s", values::duration)
                .map(|d| spec.drain = d)
                .is_some(),
            "settle" => c
                .parsed(entry, "settle 3s", values::duration)
                .map(|d| spec.settle = d)
                .is_some(),
            "health" => blocks::health(&mut c, entry)
                .map(|h| spec.health = Some(h))
                .is_some(),
            "scale" => blocks::scale(&mut c, entry)
                .map(|s| spec.scale = Some(s))
                .is_some(),
            "env" => blocks::vars(&mut c, entry).map(|v| spec.env = v).is_some(),
            "secret" => blocks::vars(&mut c, entry)
                .map(|v| spec.secrets = v.into_iter().map(|(k, v)| (k, Secret::new(v))).collect())
                .is_some(),
            "volume" => blocks::volume(&mut c, entry)
                .map(|v| spec.volumes.push(v))
                .is_some(),
            "build" => blocks::build(&mut c, entry)
                .map(|b| spec.build = Some(b))
                .is_some(),
            "serve" => blocks::serve(&mut c, entry)
                .map(|(s, p)| {
                    spec.serve = Some(s);
                    serve_port = p.map(|p| (p, entry));
                })
                .is_some(),
            "vm" => blocks::vm(&mut c, entry)
                .map(|v| spec.vm = Some(v))
                .is_some(),
            _ => unreachable!("every key of APP_KEYS is handled"),
        };
        failed |= !ok;
    }
    if !at.contains_key("restart") && spec.kind == AppKind::Job {
        spec.restart = Restart::Never;
    }
    if let Some((p, serve)) = serve_port {
        match at.get("port") {
            Some(port) => c.sink.error_hint(
                port.key_at,
                format!(
                    "app `{name}` sets its port twice: here and in `serve` (line {})",
                    serve.key_at.line
                ),
                "keep one of them",
            ),
            None => spec.port = p,
        }
    }
    cross_checks(&mut c, e, &spec, &at);
    cross_env(&mut c, &spec, &at);
    if failed || c.sink.count() > errors_before {
        // The spec is only returned when this app is clean; the caller
        // still collects errors from the other apps.
        return None;
    }
    Some(spec)
}

fn exec(c: &mut Checker<'_>, e: &Entry) -> Option<String> {
    let words = c.parsed(e, "exec /usr/local/bin/myapi", values::words)?;
    match words.as_slice() {
        [path] if !path.is_empty() => Some(path.clone()),
        _ => {
            c.sink.error_hint(
                e.value_at,
                format!("`{}` takes one program path, not `{}`", e.key, e.value),
                "put the arguments on their own line: `args --flag value`",
            );
            None
        }
    }
}

fn port(text: &str) -> Result<Port, values::ValueError> {
    if text == "auto" {
        return Ok(Port::Auto);
    }
    values::number(text, 1, 65535)
        .map(|n| Port::Fixed(u16::try_from(n).unwrap_or(u16::MAX)))
        .map_err(|mut e| {
            e.hint = Some("write a port from 1 to 65535, or `auto` to let the node pick".into());
            e
        })
}

fn replicas(c: &mut Checker<'_>, e: &Entry) -> Option<u32> {
    let n = c.parsed(e, "replicas 3", |t| {
        values::number(t, 0, u64::from(MAX_REPLICAS)).map_err(|mut err| {
            err.hint = Some(format!("write a count from 1 to {MAX_REPLICAS}"));
            err
        })
    })?;
    if n == 0 {
        c.sink.error_hint(
            e.value_at,
            format!("`replicas` is 0: out of range (1 to {MAX_REPLICAS})"),
            "an app runs at least one replica; to stop it, run `skr8tr down APP`",
        );
        return None;
    }
    u32::try_from(n).ok()
}

/// Checks between keys: where the program comes from, and what each type allows.
fn cross_checks(c: &mut Checker<'_>, app: &Entry, spec: &AppSpec, at: &HashMap<&str, &Entry>) {
    let name = &spec.name;
    let sources: Vec<&&Entry> = ["exec", "serve", "vm"]
        .iter()
        .filter_map(|k| at.get(k))
        .collect();
    match sources.as_slice() {
        [] => c.sink.error_hint(
            app.key_at,
            format!("app `{name}` has no `exec`"),
            "add `exec /path/to/binary` (or a `serve` block for static files, or a `vm` block)",
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
    if let Some(scale) = &spec.scale
        && !(scale.min..=scale.max).contains(&spec.replicas)
    {
        let pos = at
            .get("replicas")
            .map(|e| e.value_at)
            .unwrap_or_else(|| at.get("scale").map(|e| e.key_at).unwrap_or(app.key_at));
        c.sink.error_hint(
            pos,
            format!(
                "app `{name}` starts {} replicas, outside its scale range {}..{}",
                spec.replicas, scale.min, scale.max
            ),
            "set `replicas` between `scale { min }` and `scale { max }`",
        );
    }
}

/// An environment variable may be set once, by `env`, `secret` or a volume.
fn cross_env(c: &mut Checker<'_>, spec: &AppSpec, at: &HashMap<&str, &Entry>) {
    let mut seen: HashMap<&str, &str> = HashMap::new();
    let env = spec.env.iter().map(|(k, _)| (k.as_str(), "env"));
    let secrets = spec.secrets.iter().map(|(k, _)| (k.as_str(), "secret"));
    let volumes = spec
        .volumes
        .iter()
        .filter_map(|v| v.env.as_deref())
        .map(|k| (k, "volume"));
    for (name, from) in env.chain(secrets).chain(volumes) {
        if let Some(first) = seen.insert(name, from) {
            let pos = at.get(from).map(|e| e.key_at).unwrap_or_default();
            c.sink.error_hint(
                pos,
                format!(
                    "`{name}` is set by both `{first}` and `{from}` in app `{}`",
                    spec.name
                ),
                "set each variable in one place",
            );
        }
    }
}
