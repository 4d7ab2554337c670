//! Fork + exec of one replica in its own process group, with the
//! parent-death signal, `$PORT` and the environment it gets.

use skr8tr_proto::manifest::AppSpec;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::process::Stdio;
use tokio::process::{Child, ChildStderr, ChildStdout, Command};

use super::ProcessGroup;

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
}

/// A started replica. Its stdout and stderr are pipes for the log ring.
#[derive(Debug)]
pub struct Running {
    pub child: Child,
    pub pid: u32,
    pub group: ProcessGroup,
    pub stdout: Option<ChildStdout>,
    pub stderr: Option<ChildStderr>,
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

/// Starts one replica in its own process group, stdin from /dev/null,
/// stdout and stderr piped.
///
/// Must be called from a thread that outlives the replica (a runtime worker
/// or the main thread, never a `spawn_blocking` thread): Linux delivers the
/// parent-death signal when the *thread* that forked exits.
pub fn spawn(plan: &LaunchPlan<'_>) -> Result<Running, SpawnError> {
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
    let program = program.as_str();
    for volume in &spec.volumes {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&volume.path)
            .map_err(|source| SpawnError::Volume {
                path: volume.path.clone(),
                source,
            })?;
    }
    let mut cmd = Command::new(program);
    cmd.args(args);
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(withheld) {
            cmd.env_remove(name);
        }
    }
    for (name, value) in &spec.env {
        cmd.env(name, expand_port(value, plan.port));
    }
    for (name, secret) in &spec.secrets {
        cmd.env(name, secret.expose());
    }
    for volume in &spec.volumes {
        if let Some(name) = &volume.env {
            cmd.env(name, &volume.path);
        }
    }
    cmd.env("PORT", plan.port.to_string())
        .env("SKR8TR_REPLICA", plan.replica)
        .env("SKR8TR_APP", plan.app)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        // A backstop if the supervisor's task is dropped without stopping
        // the replica; the supervisor itself signals the whole group.
        .kill_on_drop(true);
    let parent = std::process::id() as libc::pid_t;
    // Runs in the forked child before exec: only async-signal-safe system
    // calls, no allocation, no locks.
    let die_with_the_node = move || {
        // SAFETY: prctl(PR_SET_PDEATHSIG) takes plain integers.
        if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) } == -1 {
            return Err(io::Error::last_os_error());
        }
        // The node may have died between fork and prctl: then no signal
        // will ever come, so do not exec at all (an error from a raw errno:
        // nothing allocates after fork).
        // SAFETY: getppid has no arguments and cannot fail.
        if unsafe { libc::getppid() } != parent {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        Ok(())
    };
    // SAFETY: the hook only makes the two system calls above, which are
    // async-signal-safe and touch no memory shared with the parent.
    unsafe {
        cmd.pre_exec(die_with_the_node);
    }
    let mut child = cmd.spawn().map_err(|source| SpawnError::Exec {
        program: program.to_string(),
        source,
    })?;
    let pid = child.id().ok_or_else(|| SpawnError::Exec {
        program: program.to_string(),
        source: io::Error::other("the process exited before it could be tracked"),
    })?;
    let group = ProcessGroup::new(pid).ok_or_else(|| SpawnError::Exec {
        program: program.to_string(),
        source: io::Error::other(format!("unexpected pid {pid}")),
    })?;
    Ok(Running {
        stdout: child.stdout.take(),
        stderr: child.stderr.take(),
        child,
        pid,
        group,
    })
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
