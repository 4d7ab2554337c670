//! Second pass, blocks: each block entry to its typed part of the spec.
//!
//! Layout:
//! - this file: shared helpers; `scale`, `volume`, `build`, `serve`.
//! - `health`: the `health` block and its `check` probe syntax.
//! - `vars`: `env` and `secret` blocks (`NAME value` lines).
//! - `vm`: the `vm` block.

mod disconnect;
mod health;
mod vars;
mod vm;

pub(crate) use disconnect::disconnect;
pub(crate) use health::health;
pub(crate) use vars::{Var, vars};
pub(crate) use vm::vm;

use super::check::{Checker, Keys};
use super::error::Pos;
use super::spec::*;
use super::tree::Entry;
use super::values::{self, ValueError};

pub(super) fn keys(
    place: &str,
    known: &'static [&'static str],
    repeatable: &'static [&'static str],
) -> Keys {
    Keys {
        place: format!("the `{place}` block"),
        known,
        aliases: &[],
        repeatable,
    }
}

pub(super) fn missing(c: &mut Checker<'_>, block: &Entry, key: &str, example: &str) {
    c.sink.error_hint(
        block.key_at,
        format!("the `{}` block has no `{key}`", block.key),
        format!("add `{example}` inside it"),
    );
}

pub(crate) fn scale(c: &mut Checker<'_>, e: &Entry) -> Option<Scale> {
    let entries = c.block(e, "scale { min 1; max 8 }")?;
    let known = keys("scale", &["min", "max", "cpu-above", "cpu-below"], &[]);
    let mut min = (DEFAULT_SCALE_MIN, None);
    let mut max = None;
    let mut above = (DEFAULT_CPU_ABOVE, None);
    let mut below = (DEFAULT_CPU_BELOW, None);
    let mut ok = true;
    let count = |t: &str| values::number(t, 1, u64::from(MAX_REPLICAS)).map(|n| n as u32);
    for (key, entry) in c.known(entries, &known) {
        let done = match key {
            "min" => c
                .parsed(entry, "min 1", count)
                .map(|n| min = (n, Some(entry))),
            "max" => c
                .parsed(entry, "max 8", count)
                .map(|n| max = Some((n, entry))),
            "cpu-above" => c
                .parsed(entry, "cpu-above 80%", values::percent)
                .map(|n| above = (n, Some(entry))),
            "cpu-below" => c
                .parsed(entry, "cpu-below 20%", values::percent)
                .map(|n| below = (n, Some(entry))),
            _ => unreachable!("the scale keys are all handled"),
        };
        ok &= done.is_some();
    }
    if !ok {
        return None;
    }
    let Some((max, max_entry)) = max else {
        missing(c, e, "max", "max 8");
        return None;
    };
    if min.0 > max {
        let at = min.1.map_or(max_entry.value_at, |m| m.value_at);
        c.sink.error_hint(
            at,
            format!("scale `min` ({}) is greater than `max` ({max})", min.0),
            "make `min` at most `max`",
        );
        return None;
    }
    if below.0 >= above.0 {
        let at = below.1.or(above.1).map_or(e.key_at, |x| x.value_at);
        c.sink.error_hint(
            at,
            format!(
                "scale `cpu-below` ({}%) must be lower than `cpu-above` ({}%)",
                below.0, above.0
            ),
            "leave a gap between them so the app does not flap, like 20% and 80%",
        );
        return None;
    }
    Some(Scale {
        min: min.0,
        max,
        cpu_above: above.0,
        cpu_below: below.0,
    })
}

/// `PORT` is the one variable the node sets for every replica.
pub(super) const PORT_TAKEN: &str = "`PORT` is set by the node to the replica's port";
pub(super) const PORT_HINT: &str = "set the app's `port` instead, and read `$PORT` in the program";

fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A path operand: one word, absolute when `absolute`.
pub(super) fn path(text: &str, absolute: bool) -> Result<String, ValueError> {
    let words = values::words(text)?;
    match words.as_slice() {
        [p] if !absolute || p.starts_with('/') => Ok(p.clone()),
        [p] => Err(ValueError {
            offset: 0,
            message: format!("`{p}` is not an absolute path"),
            hint: Some("start it with `/`, like `/var/lib/myapp`".into()),
        }),
        _ => Err(ValueError {
            offset: 0,
            message: "expected one path".into(),
            hint: Some("quote a path that has spaces in it".into()),
        }),
    }
}

fn env_name(text: &str) -> Result<String, ValueError> {
    if text == "PORT" {
        Err(ValueError {
            offset: 0,
            message: PORT_TAKEN.into(),
            hint: Some(PORT_HINT.into()),
        })
    } else if is_env_name(text) {
        Ok(text.to_string())
    } else {
        Err(ValueError {
            offset: 0,
            message: format!("`{text}` is not a valid environment variable name"),
            hint: Some("use letters, digits and `_`, like `DATA_DIR`".into()),
        })
    }
}

/// Returns the volume and where its `env` variable is named, if it has one.
pub(crate) fn volume(c: &mut Checker<'_>, e: &Entry) -> Option<(Volume, Option<Pos>)> {
    let entries = c.block(e, "volume { path /var/lib/myapp; env DATA_DIR }")?;
    let known = keys("volume", &["path", "env"], &[]);
    let mut dir = None;
    let mut env = None;
    let mut ok = true;
    for (key, entry) in c.known(entries, &known) {
        let done = match key {
            "path" => c
                .parsed(entry, "path /var/lib/myapp", |t| path(t, true))
                .map(|p| dir = Some(p)),
            "env" => c
                .parsed(entry, "env DATA_DIR", env_name)
                .map(|n| env = Some((n, entry.value_at))),
            _ => unreachable!("the volume keys are all handled"),
        };
        ok &= done.is_some();
    }
    if ok && dir.is_none() {
        missing(c, e, "path", "path /var/lib/myapp");
    }
    let (env, env_at) = env.unzip();
    Some((Volume { path: dir?, env }, env_at)).filter(|_| ok)
}

pub(crate) fn build(c: &mut Checker<'_>, e: &Entry) -> Option<Build> {
    let entries = c.block(
        e,
        "build { run cargo build --release; out target/release/app }",
    )?;
    let known = keys("build", &["run", "out"], &["run"]);
    let mut run = Vec::new();
    let mut out = None;
    let mut ok = true;
    for (key, entry) in c.known(entries, &known) {
        let done = match key {
            "run" => c
                .value(entry, "run make")
                .map(|cmd| run.push(cmd.to_string())),
            "out" => c
                .parsed(entry, "out target/release/app", |t| path(t, false))
                .map(|p| out = Some(p)),
            _ => unreachable!("the build keys are all handled"),
        };
        ok &= done.is_some();
    }
    if ok && run.is_empty() {
        missing(c, e, "run", "run make");
        return None;
    }
    ok.then_some(Build { run, out })
}

/// Returns the serve block and the port it names, if any.
pub(crate) fn serve(c: &mut Checker<'_>, e: &Entry) -> Option<(Serve, Option<Port>)> {
    let entries = c.block(e, "serve { static ./public; port 8080 }")?;
    let known = keys("serve", &["static", "port"], &[]);
    let mut dir = None;
    let mut port = None;
    let mut ok = true;
    for (key, entry) in c.known(entries, &known) {
        let done = match key {
            "static" => c
                .parsed(entry, "static ./public", |t| path(t, false))
                .map(|p| dir = Some(p)),
            "port" => c
                .parsed(entry, "port 8080", |t| {
                    if t == "auto" {
                        return Ok(Port::Auto);
                    }
                    values::number(t, 1, 65535).map(|n| Port::Fixed(n as u16))
                })
                .map(|p| port = Some(p)),
            _ => unreachable!("the serve keys are all handled"),
        };
        ok &= done.is_some();
    }
    if ok && dir.is_none() {
        missing(c, e, "static", "static ./public");
    }
    Some((Serve { dir: dir? }, port)).filter(|_| ok)
}
