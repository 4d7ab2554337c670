//! What one replica runs: its program, arguments, `$PORT` and the
//! environment it gets (the fork + exec itself is its shim's, see
//! [`crate::shim`]).

use skr8tr_proto::manifest::AppSpec;
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
}

impl SpawnError {
    /// The exit code a shell would report for the same failure (127: not
    /// found, 126: found but not runnable), so a failed start is reported
    /// and restarted like an exit.
    pub fn exit_code(&self) -> i32 {
        match self {
            SpawnError::Exec { source, .. } if source.kind() == io::ErrorKind::NotFound => 127,
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
    // `serve { static DIR }`: the node runs its own binary as the static
    // file server — the one file already on every host.
    let (program, args): (String, Vec<String>) = match (&spec.exec, &spec.serve) {
        (Some(exec), _) => (
            exec.clone(),
            spec.args
                .iter()
                .map(|a| expand_port(a, plan.port))
                .collect(),
        ),
        (None, Some(serve)) => {
            let me = std::env::current_exe().map_err(|source| SpawnError::Exec {
                program: "the skr8tr binary (for serve)".into(),
                source,
            })?;
            let args = vec![
                "serve-static".to_string(),
                serve.dir.clone(),
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
            std::os::unix::fs::chown(&volume.path, Some(uid), Some(gid)).map_err(|source| {
                SpawnError::Volume {
                    path: volume.path.clone(),
                    source,
                }
            })?;
        }
    }
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
    Ok(Program { program, args, env })
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
