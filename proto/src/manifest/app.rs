//! Second pass, app level: one `app` entry of the tree to an `AppSpec`, with
//! the checks that span several keys (program source, type, scale bounds).

use super::blocks;
use super::check::{Checker, Keys};
use super::cross;
use super::error::Sink;
use super::spec::*;
use super::tree::Entry;
use super::values;
use std::collections::HashMap;

const APP_KEYS: Keys = Keys {
    place: String::new(),
    known: &[
        "type",
        "exec",
        "args",
        "port",
        "replicas",
        "ram",
        "cpu",
        "gpu",
        "restart",
        "drain",
        "settle",
        "health",
        "scale",
        "env",
        "secret",
        "volume",
        "build",
        "serve",
        "vm",
        "constraint",
        "spread",
        "user",
        "group",
        "disconnect",
        "route",
        "host",
    ],
    aliases: &[("bin", "exec"), ("cpus", "cpu")],
    repeatable: &["volume", "constraint"],
};

/// Every app of a file, with its routing; duplicate names are reported
/// here, and so is a route or host two apps claim.
pub(crate) fn apps(entries: &[Entry], sink: &mut Sink) -> Vec<(AppSpec, Routing)> {
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
        if one_line(e, sink) {
            continue;
        }
        let mut name = app_name(e, sink);
        if let Some(n) = &name {
            if let Some(first) = names.get(n) {
                sink.error_hint(
                    e.value_at,
                    format!("app `{n}` is defined twice (first on line {first})"),
                    "give each app its own name, or merge the two blocks",
                );
                name = None;
            } else {
                names.insert(n.clone(), e.key_at.line);
            }
        }
        // The body is checked under a bad or repeated name too, so one run
        // shows every error; only a good name yields a spec.
        let shown = match &name {
            Some(n) => n.as_str(),
            None if e.value.is_empty() => "(unnamed)",
            None => e.value.as_str(),
        };
        if let Some(spec) = app(e, shown, sink)
            && name.is_some()
        {
            out.push(spec);
        }
    }
    let mut claimed: HashMap<(Option<String>, String), String> = HashMap::new();
    for (spec, r) in &out {
        if r.route.is_none() && r.host.is_none() {
            continue;
        }
        let key = (
            r.host.clone(),
            r.route.clone().unwrap_or_else(|| "/".into()),
        );
        if let Some(first) = claimed.insert(key.clone(), spec.name.clone()) {
            let what = match &key.0 {
                Some(h) => format!("host `{h}` path `{}`", key.1),
                None => format!("route `{}`", key.1),
            };
            sink.error_hint(
                super::error::Pos::new(spec.line as usize, 1),
                format!("apps `{first}` and `{}` both claim {what}", spec.name),
                "give each app its own `route` or `host`",
            );
        }
    }
    out
}

/// `app a { exec /x; port 80 }`: one-line blocks are for the small blocks
/// inside an app. Says so once, rather than reporting the whole line as a
/// bad name and the app as empty; true when it did.
fn one_line(e: &Entry, sink: &mut Sink) -> bool {
    let Some(brace) = e.value.find('{').filter(|_| e.block.is_none()) else {
        return false;
    };
    sink.error_hint(
        e.value_at.right(e.value[..brace].chars().count()),
        "an app block cannot be written on one line; put each key on its own line",
        "end the line after `{` and indent each key on its own line below it",
    );
    true
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

/// One app, named `name` in messages; `None` if it has any error.
fn app(e: &Entry, name: &str, sink: &mut Sink) -> Option<(AppSpec, Routing)> {
    let errors_before = sink.count();
    let Some(block) = &e.block else {
        sink.error_hint(
            e.key_at,
            format!("app `{}` has no settings", e.value),
            "indent its keys under it, starting with `  exec /path/to/binary`",
        );
        return None;
    };
    let mut c = Checker { sink };
    let keys = Keys {
        place: format!("app `{name}`"),
        ..APP_KEYS
    };
    let mut spec = AppSpec {
        name: name.to_string(),
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
        constraints: Vec::new(),
        spread: None,
        user: None,
        group: None,
        disconnect: None,
    };
    let mut routing = Routing {
        app: name.to_string(),
        route: None,
        host: None,
    };
    let mut at: HashMap<&'static str, &Entry> = HashMap::new();
    let mut failed = false;
    let mut serve_port = None;
    // Environment variables in file order, with where each is named.
    let mut vars: Vec<cross::Defined> = Vec::new();
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
            "disconnect" => blocks::disconnect(&mut c, entry)
                .map(|d| spec.disconnect = Some(d))
                .is_some(),
            "scale" => blocks::scale(&mut c, entry)
                .map(|s| spec.scale = Some(s))
                .is_some(),
            "env" => blocks::vars(&mut c, entry)
                .map(|v| spec.env = cross::named(v, "env", &mut vars))
                .is_some(),
            "secret" => blocks::vars(&mut c, entry)
                .map(|v| {
                    let pairs = cross::named(v, "secret", &mut vars);
                    spec.secrets = pairs
                        .into_iter()
                        .map(|(k, v)| (k, Secret::new(v)))
                        .collect();
                })
                .is_some(),
            "volume" => blocks::volume(&mut c, entry)
                .map(|(v, env_at)| {
                    if let (Some(name), Some(at)) = (&v.env, env_at) {
                        vars.push((name.clone(), "volume", at));
                    }
                    spec.volumes.push(v);
                })
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
            "constraint" => c
                .parsed(entry, "constraint role=db", values::label)
                .map(|l| {
                    if let Some(same) = spec.constraints.iter().find(|(k, _)| *k == l.0) {
                        let same = format!("{}={}", same.0, same.1);
                        c.sink.error_hint(
                            entry.value_at,
                            format!("app `{name}` constrains `{}` twice (`{same}` first)", l.0),
                            "a node has one value per label: keep one `constraint` per key",
                        );
                    }
                    spec.constraints.push(l);
                })
                .is_some(),
            "spread" => c
                .parsed(entry, "spread zone", values::label_key)
                .map(|k| spec.spread = Some(k))
                .is_some(),
            "user" => c
                .parsed(entry, "user www-data", values::account)
                .map(|u| spec.user = Some(u))
                .is_some(),
            "group" => c
                .parsed(entry, "group www-data", values::account)
                .map(|g| spec.group = Some(g))
                .is_some(),
            "route" => c
                .parsed(entry, "route /api", values::route_path)
                .map(|r| routing.route = Some(r))
                .is_some(),
            "host" => c
                .parsed(entry, "host api.example.com", values::host_name)
                .map(|h| routing.host = Some(h))
                .is_some(),
            _ => unreachable!("every key of APP_KEYS is handled"),
        };
        failed |= !ok;
    }
    if !at.contains_key("restart") && spec.kind == AppKind::Job {
        spec.restart = Restart::Never;
    }
    // An autoscaled app starts at the bottom of its range unless told.
    if let Some(scale) = &spec.scale
        && !at.contains_key("replicas")
    {
        spec.replicas = scale.min;
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
    port_in_env(&mut c, &mut spec, &vars);
    if let (Some(group), None) = (at.get("group"), &spec.user) {
        c.sink.error_hint(
            group.key_at,
            format!("app `{name}` sets a `group` but no `user`"),
            "add `user NAME`: the group applies to the user the replica runs as",
        );
    }
    cross::checks(&mut c, e, &spec, &at);
    cross::env(&mut c, &spec.name, &vars);
    if failed || c.sink.count() > errors_before {
        // The spec is only returned when this app is clean; the caller
        // still collects errors from the other apps.
        return None;
    }
    Some((spec, routing))
}

/// Manifests written for the original implementation set `env { PORT N }`
/// beside `port N`: the same value is allowed (and left to the node, which
/// sets `PORT` anyway); any other is an error.
fn port_in_env(c: &mut Checker<'_>, spec: &mut AppSpec, vars: &[cross::Defined]) {
    let Some(i) = spec.env.iter().position(|(k, _)| k == "PORT") else {
        return;
    };
    let (_, value) = spec.env.remove(i);
    let at = vars
        .iter()
        .find(|(n, from, _)| n == "PORT" && *from == "env")
        .map(|(_, _, at)| *at);
    let Some(at) = at else {
        return;
    };
    match spec.port {
        Port::Fixed(p) if value == p.to_string() => {}
        Port::Fixed(p) => c.sink.error_hint(
            at,
            format!(
                "`PORT` in `env` is `{value}` but app `{}` has `port {p}`",
                spec.name
            ),
            "the node sets `PORT` to the app's port: remove it from `env`, or make them equal",
        ),
        Port::Auto => c.sink.error_hint(
            at,
            "`PORT` is set by the node to the replica's port",
            format!("set `port {value}` on the app (then `env {{ PORT {value} }}` may stay), or remove it from `env`"),
        ),
    }
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
    let max = u64::from(MAX_REPLICAS);
    let n = c.parsed(e, "replicas 3", |t| {
        // 0 gets through to its own message below; any other error is
        // reported against the real range, from 1.
        values::number(t, 0, max)
            .or_else(|_| values::number(t, 1, max))
            .map_err(|mut err| {
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
