//! Second pass, blocks: `health`, `scale`, `env`/`secret`, `volume`,
//! `build`, `serve` and `vm`.

use super::check::{Checker, Keys};
use super::error::Pos;
use super::spec::*;
use super::tree::Entry;
use super::values::{self, ValueError};
use std::collections::HashMap;

fn keys(place: &str, known: &'static [&'static str], repeatable: &'static [&'static str]) -> Keys {
    Keys {
        place: format!("the `{place}` block"),
        known,
        aliases: &[],
        repeatable,
    }
}

fn missing(c: &mut Checker<'_>, block: &Entry, key: &str, example: &str) {
    c.sink.error_hint(
        block.key_at,
        format!("the `{}` block has no `{key}`", block.key),
        format!("add `{example}` inside it"),
    );
}

pub(crate) fn health(c: &mut Checker<'_>, e: &Entry) -> Option<Health> {
    let entries = c.block(e, "health { check GET /healthz 200 }")?;
    let mut check = None;
    let mut interval = (DEFAULT_HEALTH_INTERVAL, None);
    let mut timeout = (DEFAULT_HEALTH_TIMEOUT, None);
    let mut retries = DEFAULT_HEALTH_RETRIES;
    let mut ok = true;
    let known = keys("health", &["check", "interval", "timeout", "retries"], &[]);
    for (key, entry) in c.known(entries, &known) {
        let done = match key {
            "check" => c
                .parsed(entry, "check GET /healthz 200", probe)
                .map(|p| check = Some(p)),
            "interval" => c
                .parsed(entry, "interval 10s", positive_duration)
                .map(|d| interval = (d, Some(entry))),
            "timeout" => c
                .parsed(entry, "timeout 2s", positive_duration)
                .map(|d| timeout = (d, Some(entry))),
            "retries" => c
                .parsed(entry, "retries 3", |t| values::number(t, 1, 100))
                .map(|n| retries = u32::try_from(n).unwrap_or(100)),
            _ => unreachable!("the health keys are all handled"),
        };
        ok &= done.is_some();
    }
    if let (Some(t_entry), true) = (timeout.1, timeout.0 > interval.0) {
        c.sink.error_hint(
            t_entry.value_at,
            format!(
                "health `timeout` ({}) is longer than its `interval` ({})",
                t_entry.value,
                interval.1.map_or("the default 10s", |i| i.value.as_str())
            ),
            "a probe must end before the next one starts: shorten `timeout` or lengthen `interval`",
        );
        ok = false;
    }
    let Some(check) = check else {
        if ok {
            missing(c, e, "check", "check GET /healthz 200` or `check tcp");
        }
        return None;
    };
    ok.then_some(Health {
        check,
        interval: interval.0,
        timeout: timeout.0,
        retries,
    })
}

fn positive_duration(text: &str) -> Result<std::time::Duration, ValueError> {
    let d = values::duration(text)?;
    if d.is_zero() {
        return Err(ValueError {
            offset: 0,
            message: "must be longer than zero".into(),
            hint: Some("for example `500ms` or `10s`".into()),
        });
    }
    Ok(d)
}

/// `GET /path [status]`, `HEAD /path [status]` or `tcp`.
fn probe(text: &str) -> Result<Check, ValueError> {
    let hint = "write `check GET /healthz 200` (status defaults to 200) or `check tcp`";
    let err = |offset: usize, message: String| ValueError {
        offset,
        message,
        hint: Some(hint.into()),
    };
    let words = spans(text);
    let Some(&(_, first)) = words.first() else {
        return Err(err(0, "the check is empty".into()));
    };
    let method = match first.to_ascii_uppercase().as_str() {
        "TCP" if words.len() == 1 => return Ok(Check::Tcp),
        "TCP" => return Err(err(words[1].0, "`check tcp` takes nothing after it".into())),
        "GET" => HttpMethod::Get,
        "HEAD" => HttpMethod::Head,
        other => {
            return Err(err(
                0,
                format!("`{other}` is not a check (GET, HEAD or tcp)"),
            ));
        }
    };
    let path = match words.get(1) {
        Some((_, p)) if p.starts_with('/') => p.to_string(),
        Some((at, p)) => {
            return Err(err(
                *at,
                format!("`{p}` is not a path: it must start with `/`"),
            ));
        }
        None => {
            let end = text.chars().count();
            return Err(err(end, "the HTTP check needs a path".into()));
        }
    };
    let status = match words.get(2) {
        None => 200,
        Some((at, s)) => {
            let n = values::number(s, 100, 599)
                .map_err(|e| err(*at, format!("status {}", e.message)))?;
            u16::try_from(n).unwrap_or(200)
        }
    };
    if let Some((at, _)) = words.get(3) {
        return Err(err(*at, "the check has extra words at the end".into()));
    }
    Ok(Check::Http {
        method,
        path,
        status,
    })
}

/// The blank-separated words of `text`, each with its character offset
/// (`ValueError::offset` counts characters, not bytes).
fn spans(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    // Byte and character offsets of the word being read.
    let mut start = None;
    for (chars, (i, c)) in text.char_indices().enumerate() {
        match (c.is_whitespace(), start) {
            (true, Some((from, at))) => {
                out.push((at, &text[from..i]));
                start = None;
            }
            (false, None) => start = Some((i, chars)),
            _ => {}
        }
    }
    if let Some((from, at)) = start {
        out.push((at, &text[from..]));
    }
    out
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

/// One `NAME value` line of an `env` or `secret` block.
pub(crate) struct Var {
    pub name: String,
    pub value: String,
    /// Where the name is written, to report a variable also set elsewhere.
    pub at: Pos,
}

/// `env` and `secret` blocks: `NAME value` lines. A value may be quoted to
/// keep blanks or be empty (`NAME ""`); otherwise it is taken as written.
pub(crate) fn vars(c: &mut Checker<'_>, e: &Entry) -> Option<Vec<Var>> {
    let example = format!("{} {{ RUST_LOG info }}", e.key);
    let entries = c.block(e, &example)?;
    let mut out = Vec::new();
    let mut seen: HashMap<&str, u32> = HashMap::new();
    let mut ok = true;
    for v in entries {
        if !is_env_name(&v.key) {
            c.sink.error_hint(
                v.key_at,
                format!("`{}` is not a valid environment variable name", v.key),
                "use letters, digits and `_`, not starting with a digit, like `DATABASE_URL`",
            );
            ok = false;
            continue;
        }
        if v.key == "PORT" {
            c.sink.error_hint(v.key_at, PORT_TAKEN, PORT_HINT);
            ok = false;
            continue;
        }
        if let Some(first) = seen.insert(&v.key, v.key_at.line) {
            c.sink.error_hint(
                v.key_at,
                format!(
                    "`{}` is set twice in this `{}` block (first on line {first})",
                    v.key, e.key
                ),
                "keep one of them",
            );
            ok = false;
            continue;
        }
        // Not `c.value`: its hint has room for one example, and the empty
        // value deserves its own. Literal blocks hold no sub-blocks.
        if v.value.is_empty() {
            c.sink.error_hint(
                v.value_at,
                format!("`{}` needs a value", v.key),
                format!(
                    "for example `{0} value`, or `{0} \"\"` for an empty value",
                    v.key
                ),
            );
            ok = false;
            continue;
        }
        let raw = v.value.as_str();
        let value = if raw.starts_with(['"', '\'']) {
            match values::words(raw) {
                Ok(w) if w.len() == 1 => w.into_iter().next().unwrap_or_default(),
                Ok(_) => {
                    c.sink.error_hint(
                        v.value_at,
                        format!("the value of `{}` has text after its closing quote", v.key),
                        "quote the whole value",
                    );
                    ok = false;
                    continue;
                }
                Err(err) => {
                    c.value_error(v, err);
                    ok = false;
                    continue;
                }
            }
        } else {
            raw.to_string()
        };
        out.push(Var {
            name: v.key.clone(),
            value,
            at: v.key_at,
        });
    }
    ok.then_some(out)
}

/// `PORT` is the one variable the node sets for every replica.
const PORT_TAKEN: &str = "`PORT` is set by the node to the replica's port";
const PORT_HINT: &str = "set the app's `port` instead, and read `$PORT` in the program";

fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A path operand: one word, absolute when `absolute`.
fn path(text: &str, absolute: bool) -> Result<String, ValueError> {
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

pub(crate) fn vm(c: &mut Checker<'_>, e: &Entry) -> Option<Vm> {
    let entries = c.block(
        e,
        "vm { hypervisor firecracker; kernel /vm/vmlinux; rootfs /vm/rootfs.ext4 }",
    )?;
    let known = keys(
        "vm",
        &[
            "hypervisor",
            "kernel",
            "rootfs",
            "vcpus",
            "memory",
            "net",
            "args",
        ],
        &[],
    );
    let mut hypervisor = None;
    let mut kernel = None;
    let mut rootfs = None;
    let mut vcpus = DEFAULT_VM_VCPUS;
    let mut memory = DEFAULT_VM_MEMORY;
    let mut net = None;
    let mut args = Vec::new();
    let mut ok = true;
    for (key, entry) in c.known(entries, &known) {
        let done = match key {
            "hypervisor" => c
                .choice(
                    entry,
                    &[
                        ("firecracker", Hypervisor::Firecracker),
                        ("qemu", Hypervisor::Qemu),
                        ("cloud-hypervisor", Hypervisor::CloudHypervisor),
                    ],
                )
                .map(|h| hypervisor = Some(h)),
            "kernel" => c
                .parsed(entry, "kernel /vm/vmlinux", |t| path(t, false))
                .map(|p| kernel = Some(p)),
            "rootfs" => c
                .parsed(entry, "rootfs /vm/rootfs.ext4", |t| path(t, false))
                .map(|p| rootfs = Some(p)),
            "vcpus" => c
                .parsed(entry, "vcpus 2", |t| values::number(t, 1, 256))
                .map(|n| vcpus = n as u32),
            "memory" => c
                .parsed(entry, "memory 512mb", values::size)
                .map(|n| memory = n),
            "net" => c
                .value(entry, "net tap0")
                .map(|n| net = Some(n.to_string())),
            "args" => c
                .parsed(entry, "args --console ttyS0", values::words)
                .map(|a| args = a),
            _ => unreachable!("the vm keys are all handled"),
        };
        ok &= done.is_some();
    }
    if !ok {
        return None;
    }
    for (value, key, example) in [
        (hypervisor.is_none(), "hypervisor", "hypervisor firecracker"),
        (kernel.is_none(), "kernel", "kernel /vm/vmlinux"),
        (rootfs.is_none(), "rootfs", "rootfs /vm/rootfs.ext4"),
    ] {
        if value {
            missing(c, e, key, example);
        }
    }
    Some(Vm {
        hypervisor: hypervisor?,
        kernel: kernel?,
        rootfs: rootfs?,
        vcpus,
        memory,
        net,
        args,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes() {
        assert_eq!(probe("tcp"), Ok(Check::Tcp));
        assert_eq!(
            probe("GET /healthz 200"),
            Ok(Check::Http {
                method: HttpMethod::Get,
                path: "/healthz".into(),
                status: 200
            })
        );
        assert_eq!(
            probe("head /"),
            Ok(Check::Http {
                method: HttpMethod::Head,
                path: "/".into(),
                status: 200
            })
        );
        let e = probe("GET healthz").unwrap_err();
        assert_eq!(e.offset, 4);
        assert!(e.message.contains("must start with `/`"));
        let e = probe("GET /h 99").unwrap_err();
        assert_eq!(e.offset, 7);
        assert!(probe("POST /x").is_err());
        assert!(probe("tcp 80").is_err());
        assert_eq!(probe("GET /a 200 x").unwrap_err().offset, 11);
        // Offsets are per word and in characters.
        assert_eq!(probe("GET E").unwrap_err().offset, 4);
        let e = probe("GET /ü 99").unwrap_err();
        assert_eq!(
            (e.offset, e.message.as_str()),
            (7, "status 99 is out of range (100 to 599)")
        );
        let e = probe("GET /x abc").unwrap_err();
        assert_eq!(e.message, "status `abc` is not a whole number");
        assert_eq!(probe("GET").unwrap_err().offset, 3);
    }
}
