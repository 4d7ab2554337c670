//! Fork + exec of one replica, signals to its process group, the pid file of
//! running groups, and `/proc` sampling. The only module of the node allowed
//! to use `unsafe` (libc calls), each block with its `SAFETY:` reason.
//!
//! A replica is a process group: its first process is the group leader
//! (`pgid == pid`), and stopping a replica signals the whole group, so
//! helpers it forked go too.

#![allow(unsafe_code)]

use skr8tr_proto::manifest::AppSpec;
use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tokio::process::{Child, ChildStderr, ChildStdout, Command};

/// What to start: one replica of one app on one port.
#[derive(Clone, Copy, Debug)]
pub struct LaunchPlan<'a> {
    /// `app/generation/index`, given to the process as `SKR8TR_REPLICA`.
    pub replica: &'a str,
    pub app: &'a str,
    pub spec: &'a AppSpec,
    /// Given to the process as `PORT` and substituted for `$PORT`.
    pub port: u16,
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

/// A process group id that is safe to signal: never 0 or 1 (which would
/// mean "our own group" or "every process"), never the node's own group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProcessGroup(u32);

impl ProcessGroup {
    pub fn new(pgid: u32) -> Option<ProcessGroup> {
        // SAFETY: getpgrp has no arguments and cannot fail.
        let own = unsafe { libc::getpgrp() } as u32;
        let max = libc::pid_t::MAX as u32;
        (pgid > 1 && pgid <= max && pgid != own && pgid != std::process::id())
            .then_some(ProcessGroup(pgid))
    }

    pub fn id(self) -> u32 {
        self.0
    }

    /// Sends `signal` to every process of the group. `Ok(false)`: the group
    /// no longer exists.
    pub fn signal(self, signal: libc::c_int) -> io::Result<bool> {
        // SAFETY: kill takes plain integers; `new` guarantees 1 < pgid <=
        // pid_t::MAX, so the negation names exactly this group.
        if unsafe { libc::kill(-(self.0 as libc::pid_t), signal) } == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::ESRCH) => Ok(false),
            _ => Err(err),
        }
    }

    /// Whether any process of the group still exists.
    pub fn exists(self) -> bool {
        !matches!(self.signal(0), Ok(false))
    }
}

/// SIGKILLs the whole group at once; an already gone group is fine.
pub fn kill_group_now(group: ProcessGroup) {
    if let Err(e) = group.signal(libc::SIGKILL) {
        tracing::warn!(pgid = group.0, "cannot SIGKILL process group: {e}");
    }
}

/// Stops a replica: SIGTERM to its group, up to `drain` for the leader to
/// exit, then SIGKILL to whatever of the group is left (helpers that
/// ignored SIGTERM or outlived the leader). Returns the leader's status.
pub async fn stop(child: &mut Child, group: ProcessGroup, drain: Duration) -> Option<ExitStatus> {
    if let Err(e) = group.signal(libc::SIGTERM) {
        tracing::warn!(pgid = group.0, "cannot SIGTERM process group: {e}");
    }
    let status = match tokio::time::timeout(drain, child.wait()).await {
        Ok(Ok(status)) => Some(status),
        Ok(Err(e)) => {
            tracing::warn!(pgid = group.0, "cannot wait for replica: {e}");
            None
        }
        Err(_) => None,
    };
    kill_group_now(group);
    match status {
        Some(status) => Some(status),
        // Killed just now: reap it so it does not linger as a zombie.
        None => child.wait().await.ok(),
    }
}

/// Whether a process with this pid exists (`kill(pid, 0)`); a zombie counts.
pub fn is_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks for existence and permission; pid > 0
    // names one process.
    if unsafe { libc::kill(pid, 0) } == 0 {
        return true;
    }
    io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// The pid file: `DATA_DIR/replicas.pids`, one line per running replica
/// (`PGID STARTTIME REPLICA`) under a `boot BOOT_ID` line. Rewritten
/// atomically (temp file + rename) on every change; not fsynced, because
/// after a power loss the boot id differs and every recorded group is gone.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    groups: BTreeMap<String, (ProcessGroup, u64)>,
}

/// Name of the pid file inside the data directory.
pub const PID_FILE: &str = "replicas.pids";

impl PidFile {
    /// An empty pid file in `data_dir` (call [`kill_leftovers`] first).
    pub fn new(data_dir: &Path) -> PidFile {
        let pid_file = PidFile {
            path: data_dir.join(PID_FILE),
            groups: BTreeMap::new(),
        };
        pid_file.write();
        pid_file
    }

    pub fn insert(&mut self, replica: &str, group: ProcessGroup) {
        let started = start_time(group.0).unwrap_or(0);
        self.groups.insert(replica.to_string(), (group, started));
        self.write();
    }

    pub fn remove(&mut self, replica: &str) {
        if self.groups.remove(replica).is_some() {
            self.write();
        }
    }

    fn write(&self) {
        let mut text = format!("boot {}\n", boot_id());
        for (replica, (group, started)) in &self.groups {
            text.push_str(&format!("{} {started} {replica}\n", group.0));
        }
        let tmp = self.path.with_extension("pids.tmp");
        let result = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &self.path));
        if let Err(e) = result {
            tracing::warn!(path = %self.path.display(), "cannot write the pid file: {e}");
        }
    }
}

/// SIGKILLs the process groups a previous run of the node recorded in
/// `data_dir` that still exist, so a restarted node starts clean even when
/// the parent-death signal missed a grandchild. A group is skipped when the
/// file is from another boot, or its leader's pid now belongs to a process
/// started at another time (pid reuse). Returns how many groups it killed.
pub fn kill_leftovers(data_dir: &Path) -> usize {
    let path = data_dir.join(PID_FILE);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return 0;
    };
    let mut lines = text.lines();
    if lines.next() != Some(format!("boot {}", boot_id()).as_str()) {
        return 0;
    }
    let mut killed = 0;
    for line in lines {
        let mut words = line.splitn(3, ' ');
        let (Some(pgid), Some(started), replica) = (
            words.next().and_then(|w| w.parse::<u32>().ok()),
            words.next().and_then(|w| w.parse::<u64>().ok()),
            words.next().unwrap_or("?"),
        ) else {
            continue;
        };
        let Some(group) = ProcessGroup::new(pgid) else {
            continue;
        };
        if let Some(now) = start_time(pgid)
            && now != started
        {
            continue;
        }
        if group.exists() {
            tracing::info!(
                pgid,
                replica,
                "killing a replica left by a previous node run"
            );
            kill_group_now(group);
            killed += 1;
        }
    }
    killed
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Fields of `/proc/PID/stat` after the command name (which may itself
/// contain spaces and parentheses): index 0 is field 3, `state`.
fn stat_fields(pid: u32) -> Option<Vec<u64>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    Some(
        rest.split_ascii_whitespace()
            .map(|w| w.parse().unwrap_or(0))
            .collect(),
    )
}

/// Process start time in clock ticks since boot (field 22).
fn start_time(pid: u32) -> Option<u64> {
    stat_fields(pid)?.get(19).copied()
}

/// CPU time used so far (utime + stime, fields 14 and 15), in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let f = stat_fields(pid)?;
    Some(f.get(11)? + f.get(12)?)
}

/// Resident memory in bytes (`/proc/PID/statm` field 2 × page size).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = text.split_ascii_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

fn clock_ticks_per_second() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    // SAFETY: sysconf takes a plain integer and only reads configuration.
    *TICKS.get_or_init(|| match unsafe { libc::sysconf(libc::_SC_CLK_TCK) } {
        n if n > 0 => n as u64,
        _ => 100,
    })
}

fn page_size() -> u64 {
    static PAGE: OnceLock<u64> = OnceLock::new();
    // SAFETY: as above.
    *PAGE.get_or_init(|| match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as u64,
        _ => 4096,
    })
}

/// What a process uses right now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// CPU over the last sampling interval, thousandths of a core.
    pub cpu_millis: u64,
    pub rss_bytes: u64,
}

/// Samples one process's CPU (the difference between two readings of its
/// CPU time, so the first reading of a pid reports 0) and resident memory,
/// at most once per `every`: between readings it repeats the last figures.
#[derive(Debug, Default)]
pub struct Sampler {
    last: Option<(u32, Instant, u64)>,
    usage: Usage,
}

impl Sampler {
    pub fn sample(&mut self, pid: u32, now: Instant, every: Duration) -> Usage {
        if let Some((last_pid, at, _)) = self.last
            && last_pid == pid
            && now.saturating_duration_since(at) < every
        {
            return self.usage;
        }
        let Some(ticks) = cpu_ticks(pid) else {
            return Usage::default();
        };
        let cpu_millis = match self.last {
            Some((last_pid, at, before)) if last_pid == pid => millicores(
                ticks.saturating_sub(before),
                now.saturating_duration_since(at),
            ),
            _ => 0,
        };
        self.usage = Usage {
            cpu_millis,
            rss_bytes: rss_bytes(pid).unwrap_or(0),
        };
        self.last = Some((pid, now, ticks));
        self.usage
    }
}

/// `ticks` of CPU time over `elapsed` wall time, in thousandths of a core.
pub fn millicores(ticks: u64, elapsed: Duration) -> u64 {
    let elapsed_ms = elapsed.as_millis() as u64;
    if elapsed_ms == 0 {
        return 0;
    }
    // ticks / hz seconds of CPU over elapsed_ms / 1000 seconds, × 1000.
    ticks * 1_000_000 / clock_ticks_per_second() / elapsed_ms
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

    #[test]
    fn process_groups_that_would_hit_everything_are_refused() {
        assert!(ProcessGroup::new(0).is_none());
        assert!(ProcessGroup::new(1).is_none());
        assert!(ProcessGroup::new(std::process::id()).is_none());
        assert!(ProcessGroup::new(u32::MAX).is_none());
    }

    #[test]
    fn millicores_converts_ticks() {
        let hz = clock_ticks_per_second();
        assert_eq!(millicores(hz, Duration::from_secs(1)), 1000);
        assert_eq!(millicores(hz / 2, Duration::from_secs(1)), 500);
        assert_eq!(millicores(5, Duration::ZERO), 0);
    }

    #[test]
    fn own_process_has_cpu_and_memory_figures() {
        let me = std::process::id();
        assert!(rss_bytes(me).unwrap() > 0);
        assert!(cpu_ticks(me).is_some());
        assert!(start_time(me).unwrap() > 0);
        assert!(cpu_ticks(u32::MAX).is_none());
    }
}
