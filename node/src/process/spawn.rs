//! What one replica runs: its program, arguments, `$PORT` and the
//! environment it gets (the fork + exec itself is its shim's, see
//! [`crate::shim`]).

use skr8tr_proto::manifest::{AppKind, AppSpec};
use std::io;
use std::os::unix::fs::DirBuilderExt;

/// What to start: one replica of one app on one port.
#[derive(Clone, Copy, Debug)]
pub struct LaunchPlan<'a> {
    /// `app/generation/index`, given to the process as `SKR8TR_REPLICA`.
    pub replica: &'a str,
    pub app: &'a str,
    pub spec: &'a AppSpec,
    /// Given to the process as `PORT` and substituted for `$PORT`.
    pub port: u16,
    /// The node's advertised address: where the built-in static server
    /// (`serve { static }`) listens.
    pub address: std::net::IpAddr,
    /// `user`/`group` as uid and gid: volumes are created owned by them.
    pub owner: Option<(u32, u32)>,
    /// The replica's own directory (firecracker's config goes there).
    pub dir: &'a std::path::Path,
    /// What `build` produced: `out` and a relative `exec` are found there.
    pub built: Option<&'a std::path::Path>,
    /// The node's WebAssembly runtime command (`wasmtime run`), if any.
    pub wasm_runtime: Option<&'a [String]>,
}

/// The program a replica runs, with its arguments and its whole
/// environment: what its shim executes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    pub program: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error(
        "app `{app}` has no program to exec (type {kind}); this node runs `exec` programs only"
    )]
    NoProgram { app: String, kind: String },
    #[error("volume {path}: {source}")]
    Volume { path: String, source: io::Error },
    #[error("cannot start {program}: {source}")]
    Exec { program: String, source: io::Error },
    #[error("cannot set up the replica's cgroup: {0}")]
    Cgroup(io::Error),
    #[error(
        "app `{app}` is `type wasm`, but this node has no WebAssembly runtime: install \
         `wasmtime`, or start the node with --wasm-runtime PATH"
    )]
    NoRuntime { app: String },
    #[error("cannot write the vm's config: {0}")]
    Vm(io::Error),
}

impl SpawnError {
    /// The exit code a shell would report for the same failure (127: not
    /// found, 126: found but not runnable), so a failed start is reported
    /// and restarted like an exit.
    pub fn exit_code(&self) -> i32 {
        match self {
            SpawnError::Exec { source, .. } if source.kind() == io::ErrorKind::NotFound => 127,
            SpawnError::NoRuntime { .. } => 127,
            _ => 126,
        }
    }
}

/// Environment variables of the node agent a replica does not inherit.
/// The rest of the node's environment (PATH, HOME, LANG, TZ, proxies…) is
/// inherited: replicas are ordinary programs that expect it, and the
/// operator sets it where the node runs. Removed: `SKR8TR_*` (the node's own
/// configuration is none of the replica's business, and `SKR8TR_REPLICA` /
/// `SKR8TR_APP` must be ours), and systemd's per-process hand-offs, which
/// address the node agent, not its children.
fn withheld(name: &str) -> bool {
    name.starts_with("SKR8TR_")
        || matches!(
            name,
            "NOTIFY_SOCKET"
                | "LISTEN_FDS"
                | "LISTEN_PID"
                | "LISTEN_FDNAMES"
                | "WATCHDOG_PID"
                | "WATCHDOG_USEC"
        )
}

/// What one replica runs: its program (or the node's own binary for
/// `serve { static }`), `$PORT` expanded in args and env, and its
/// environment (the node's, minus [`withheld`] names, plus the app's env,
/// secrets, volume paths, `PORT`, `SKR8TR_REPLICA` and `SKR8TR_APP`).
/// Creates the app's volumes.
pub fn program(plan: &LaunchPlan<'_>) -> Result<Program, SpawnError> {
    let spec = plan.spec;
    let env = environment(plan);
    let expanded = || -> Vec<String> {
        spec.args
            .iter()
            .map(|a| expand_port(a, plan.port))
            .collect()
    };
    // A relative program is found in what `build` produced.
    let located = |p: &str| match plan.built {
        Some(dir) if !p.starts_with('/') => dir.join(p).display().to_string(),
        _ => p.to_string(),
    };
    let built_out = spec.build.as_ref().and_then(|b| b.out.as_deref());
    let (program, args): (String, Vec<String>) = match (spec.kind, &spec.vm) {
        (AppKind::Vm, Some(vm)) => super::vm::command(spec, vm, plan.port, plan.address, plan.dir)
            .map_err(SpawnError::Vm)?,
        (AppKind::Wasm, _) => {
            let runtime = plan.wasm_runtime.filter(|r| !r.is_empty()).ok_or_else(|| {
                SpawnError::NoRuntime {
                    app: plan.app.to_string(),
                }
            })?;
            let module = spec
                .exec
                .as_deref()
                .or(built_out)
                .map(located)
                .ok_or_else(|| SpawnError::NoProgram {
                    app: plan.app.to_string(),
                    kind: spec.kind.to_string(),
                })?;
            // The runtime's own flags, the app's variables (a module sees
            // only what it is given), the module, then its args.
            let mut args: Vec<String> = runtime[1..].to_vec();
            for (k, v) in &env {
                if app_variable(spec, k) {
                    args.extend(["--env".to_string(), format!("{k}={v}")]);
                }
            }
            args.push(module);
            args.extend(expanded());
            (runtime[0].clone(), args)
        }
        // `exec` first; `build { out }` is the program only when nothing
        // else names one (with `serve` it is the built site).
        _ => match (
            spec.exec
                .as_deref()
                .or(built_out.filter(|_| spec.serve.is_none())),
            &spec.serve,
        ) {
            (Some(exec), _) => (located(exec), expanded()),
            // `serve { static DIR }`: the node runs its own binary as the
            // static file server — the one file already on every host.
            (None, Some(serve)) => {
                let me = std::env::current_exe().map_err(|source| SpawnError::Exec {
                    program: "the skr8tr binary (for serve)".into(),
                    source,
                })?;
                let args = vec![
                    "serve-static".to_string(),
                    located(&serve.dir),
                    "--port".into(),
                    plan.port.to_string(),
                    "--host".into(),
                    plan.address.to_string(),
                ];
                (me.display().to_string(), args)
            }
            (None, None) => {
                return Err(SpawnError::NoProgram {
                    app: plan.app.to_string(),
                    kind: spec.kind.to_string(),
                });
            }
        },
    };
    for volume in &spec.volumes {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&volume.path)
            .map_err(|source| SpawnError::Volume {
                path: volume.path.clone(),
                source,
            })?;
        if let Some((uid, gid)) = plan.owner {
            // Never through a symlink: the replica's user owns the volume
            // and could point it at a directory of the node's.
            let volume_err = |source| SpawnError::Volume {
                path: volume.path.clone(),
                source,
            };
            let meta = std::fs::symlink_metadata(&volume.path).map_err(volume_err)?;
            if !meta.is_dir() {
                return Err(volume_err(io::Error::other(
                    "is not a directory (a symlink?); refusing to hand it to the app's user",
                )));
            }
            std::os::unix::fs::lchown(&volume.path, Some(uid), Some(gid)).map_err(volume_err)?;
        }
    }
    Ok(Program { program, args, env })
}

/// Whether `name` is one the app set or the node gives every replica (not
/// one inherited from the node's environment).
fn app_variable(spec: &AppSpec, name: &str) -> bool {
    matches!(name, "PORT" | "SKR8TR_REPLICA" | "SKR8TR_APP")
        || spec.env.iter().any(|(k, _)| k == name)
        || spec.secrets.iter().any(|(k, _)| k == name)
        || spec.volumes.iter().any(|v| v.env.as_deref() == Some(name))
}

/// A replica's whole environment: the node's, minus [`withheld`] names,
/// plus the app's env, secrets, volume paths, `PORT`, `SKR8TR_REPLICA` and
/// `SKR8TR_APP`. Its `build` commands get the same.
pub fn environment(plan: &LaunchPlan<'_>) -> Vec<(String, String)> {
    let spec = plan.spec;
    let mut env: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| !withheld(k))
        .collect();
    let mut set = |name: &str, value: String| {
        env.retain(|(k, _)| k != name);
        env.push((name.to_string(), value));
    };
    for (name, value) in &spec.env {
        set(name, expand_port(value, plan.port));
    }
    for (name, secret) in &spec.secrets {
        set(name, secret.expose().to_string());
    }
    for volume in &spec.volumes {
        if let Some(name) = &volume.env {
            set(name, volume.path.clone());
        }
    }
    set("PORT", plan.port.to_string());
    set("SKR8TR_REPLICA", plan.replica.to_string());
    set("SKR8TR_APP", plan.app.to_string());
    env
}

/// Replaces `$PORT` and `${PORT}` with `port`; every other `$` text (other
/// variables, `$PORTAL`, a lone `$`) is left as written.
pub fn expand_port(s: &str, port: u16) -> String {
    let port = port.to_string();
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix("{PORT}") {
            out.push_str(&port);
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("PORT")
            && !tail.starts_with(|c: char| c == '_' || c.is_ascii_alphanumeric())
        {
            out.push_str(&port);
            rest = tail;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expand_port_replaces_only_port() {
        assert_eq!(expand_port("--port=$PORT", 8080), "--port=8080");
        assert_eq!(expand_port("0.0.0.0:${PORT}/x", 81), "0.0.0.0:81/x");
        assert_eq!(expand_port("$PORT$PORT", 1), "11");
        assert_eq!(
            expand_port("$PORTAL $PORT_X $HOME", 1),
            "$PORTAL $PORT_X $HOME"
        );
        assert_eq!(
            expand_port("${DATA_DIR}/x ${PORT", 1),
            "${DATA_DIR}/x ${PORT"
        );
        assert_eq!(expand_port("cost: 5$ $", 1), "cost: 5$ $");
        assert_eq!(expand_port("$$PORT", 7), "$7");
        assert_eq!(expand_port("", 7), "");
        assert_eq!(expand_port("é$PORT-é", 7), "é7-é");
    }

    #[test]
    fn the_nodes_own_settings_are_withheld() {
        for name in [
            "SKR8TR_CONDUCTOR",
            "SKR8TR_REPLICA",
            "NOTIFY_SOCKET",
            "LISTEN_FDS",
        ] {
            assert!(withheld(name), "{name}");
        }
        for name in ["PATH", "HOME", "LANG", "SKR8TRX", "RUST_LOG"] {
            assert!(!withheld(name), "{name}");
        }
    }
}
