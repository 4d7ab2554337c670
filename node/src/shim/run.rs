//! The shim process, `skr8tr shim DIR`: one thread, one `poll` loop over
//! the control socket, the listener for a restarted agent, the replica's
//! two output pipes and a pidfd for its exit. See the module above for
//! what it promises.

use super::output::{Away, Pipe};
use super::sys::{open, peer, spawn};
use super::{Exit, FromShim, Hello, Plan, SOCKET, ToShim};
use super::{read_frame, write_frame};
use crate::process::tree;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Set by SIGTERM: stop the tree and leave (a service manager stopping
/// everything, or an operator).
static TERMINATED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigterm(_: libc::c_int) {
    TERMINATED.store(true, Ordering::Relaxed);
}

/// Writes to an agent that stops reading give up after this.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// A frame the agent started must arrive whole within this.
const READ_TIMEOUT: Duration = Duration::from_secs(1);

/// Runs the shim; the process's exit code.
pub fn main(dir: &Path) -> i32 {
    // SAFETY: the agent starts the shim with the control socket as fd 0;
    // nothing else in this process owns fd 0.
    let mut agent = UnixStream::from(unsafe { OwnedFd::from_raw_fd(0) });
    let _ = agent.set_read_timeout(Some(Duration::from_secs(10)));
    let plan = match read_frame::<ToShim>(&mut agent) {
        Ok(ToShim::Plan(plan)) => *plan,
        Ok(_) => return usage("the first message was not a launch plan"),
        Err(e) => return usage(&format!("no launch plan on stdin: {e}")),
    };
    let _ = agent.set_read_timeout(Some(READ_TIMEOUT));
    let _ = agent.set_write_timeout(Some(WRITE_TIMEOUT));
    match Shim::start(dir, plan, agent) {
        Some(shim) => shim.run(),
        None => 0,
    }
}

fn usage(why: &str) -> i32 {
    eprintln!("skr8tr shim: {why} (the node agent starts shims; do not run one by hand)");
    2
}

struct Shim {
    dir: PathBuf,
    plan: Plan,
    listener: UnixListener,
    agent: Option<UnixStream>,
    /// When the last agent went away (`None` while one is connected).
    away_since: Option<Instant>,
    away: Away,
    pid: u32,
    pidfd: Option<OwnedFd>,
    out: Option<Pipe>,
    err: Option<Pipe>,
    started_at_ms: u64,
    oom_before: u64,
    ready: bool,
    stop_by: Option<Instant>,
    /// `ToShim::Lease`: when the replica must stop unless renewed, and its
    /// drain.
    lease: Option<(Instant, Duration)>,
    /// The replica's wait status once reaped.
    status: Option<i32>,
    exited: Option<Exit>,
}

#[derive(Clone, Copy)]
enum Source {
    Listener,
    Agent,
    Out,
    Err,
    Child,
}

impl Shim {
    /// Becomes a session leader and subreaper, listens for later agents,
    /// and starts the replica. `None` when it could not start (the agent
    /// has been told why).
    fn start(dir: &Path, plan: Plan, mut agent: UnixStream) -> Option<Shim> {
        // SAFETY: plain process-attribute calls and signal dispositions;
        // the handler only stores to an atomic.
        unsafe {
            libc::setsid();
            libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
            libc::signal(libc::SIGHUP, libc::SIG_IGN);
            libc::signal(libc::SIGINT, libc::SIG_IGN);
            libc::signal(
                libc::SIGTERM,
                on_sigterm as extern "C" fn(libc::c_int) as libc::sighandler_t,
            );
        }
        let fail = |agent: &mut UnixStream, error: String, code: i32| {
            let _ = write_frame(agent, &FromShim::Failed { error, code });
        };
        let socket = dir.join(SOCKET);
        let _ = std::fs::remove_file(&socket);
        let listener = match UnixListener::bind(&socket).and_then(|l| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))?;
            l.set_nonblocking(true)?;
            Ok(l)
        }) {
            Ok(l) => l,
            Err(e) => {
                fail(
                    &mut agent,
                    format!("cannot listen on {}: {e}", socket.display()),
                    126,
                );
                return None;
            }
        };
        let oom_before = plan.cgroup.as_ref().map_or(0, |c| c.oom_kills());
        let mut procs = Vec::new();
        for file in plan.cgroup.iter().flat_map(|c| c.procs_files()) {
            match File::options().write(true).open(&file) {
                Ok(f) => procs.push(f),
                Err(e) => {
                    fail(
                        &mut agent,
                        format!("cannot join cgroup {}: {e}", file.display()),
                        126,
                    );
                    let _ = std::fs::remove_file(&socket);
                    return None;
                }
            }
        }
        let mut child = match spawn(&plan, &procs) {
            Ok(child) => child,
            Err(e) => {
                let code = if e.kind() == io::ErrorKind::NotFound {
                    127
                } else {
                    126
                };
                fail(
                    &mut agent,
                    format!("cannot start {}: {e}", plan.program),
                    code,
                );
                let _ = std::fs::remove_file(&socket);
                return None;
            }
        };
        drop(procs);
        let pid = child.id();
        // SAFETY: pidfd_open takes a pid and flags; the result, when not
        // negative, is a new descriptor we own.
        let pidfd = unsafe {
            let fd = libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) as RawFd;
            (fd >= 0).then(|| OwnedFd::from_raw_fd(fd))
        };
        let out = child.stdout.take().map(|o| Pipe::new(o.into(), false));
        let err = child.stderr.take().map(|e| Pipe::new(e.into(), true));
        let mut shim = Shim {
            dir: dir.to_path_buf(),
            plan,
            listener,
            agent: Some(agent),
            away_since: None,
            away: Away::default(),
            pid,
            pidfd,
            out,
            err,
            started_at_ms: skr8tr_proto::clock::now_ms(),
            oom_before,
            ready: false,
            stop_by: None,
            lease: None,
            status: None,
            exited: None,
        };
        let hello = FromShim::Hello(shim.hello());
        shim.send(&hello);
        Some(shim)
    }

    fn hello(&self) -> Hello {
        Hello {
            replica: self.plan.replica.clone(),
            app: self.plan.app.clone(),
            generation: self.plan.generation,
            port: self.plan.port,
            restarts: self.plan.restarts,
            assignment: self.plan.assignment.clone(),
            pid: self.pid,
            started_at_ms: self.started_at_ms,
            ready: self.ready,
            exited: self.exited,
            shim_pid: std::process::id(),
        }
    }

    fn run(mut self) -> i32 {
        let grace = Duration::from_millis(self.plan.grace_ms);
        loop {
            self.poll_once();
            for (pid, status) in tree::reap_all() {
                self.reaped(pid, status);
            }
            let now = Instant::now();
            let gone_too_long = self.away_since.is_some_and(|t| now - t >= grace);
            let terminated = TERMINATED.load(Ordering::Relaxed);
            if self.status.is_some() && self.exited.is_none() {
                self.finish_child();
            }
            if let Some(exit) = self.exited {
                // Told, or nobody left to tell.
                if self.send(&FromShim::Exited(exit)) || gone_too_long || terminated {
                    break;
                }
                continue;
            }
            if terminated || self.stop_by.is_some_and(|t| now >= t) {
                self.kill_tree();
            } else if let Some((until, drain)) = self.lease
                && now >= until
                && self.stop_by.is_none()
            {
                self.line((
                    true,
                    "skr8tr: the node has been out of contact with the conductor for its \
                     `stop-after`: stopping the replica"
                        .to_string(),
                ));
                self.terminate(drain);
            } else if gone_too_long {
                self.line((
                    true,
                    format!(
                        "skr8tr: the node agent has been gone for {grace:?}: stopping the replica"
                    ),
                ));
                self.kill_tree();
            }
        }
        let _ = std::fs::remove_file(self.dir.join(SOCKET));
        let _ = std::fs::remove_dir(&self.dir);
        if let Some(cg) = &self.plan.cgroup {
            let _ = cg.remove();
        }
        0
    }

    fn poll_once(&mut self) {
        let mut fds = Vec::with_capacity(5);
        let mut sources = Vec::with_capacity(5);
        let mut add = |fd: RawFd, source: Source| {
            fds.push(libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            });
            sources.push(source);
        };
        add(self.listener.as_raw_fd(), Source::Listener);
        if let Some(a) = &self.agent {
            add(a.as_raw_fd(), Source::Agent);
        }
        if let Some(p) = &self.out {
            add(p.fd.as_raw_fd(), Source::Out);
        }
        if let Some(p) = &self.err {
            add(p.fd.as_raw_fd(), Source::Err);
        }
        if let (Some(fd), None) = (&self.pidfd, self.status) {
            add(fd.as_raw_fd(), Source::Child);
        }
        // Timers (drain, grace) are checked between polls.
        let timeout = if self.stop_by.is_some()
            || self.away_since.is_some()
            || self.lease.is_some()
            || self.pidfd.is_none()
        {
            50
        } else {
            1000
        };
        // SAFETY: `fds` is a live array of `fds.len()` pollfd structs.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if n <= 0 {
            return;
        }
        for (pfd, source) in fds.iter().zip(sources) {
            if pfd.revents != 0 {
                self.ready_source(source);
            }
        }
    }

    fn ready_source(&mut self, source: Source) {
        match source {
            Source::Listener => {
                while let Ok((stream, _)) = self.listener.accept() {
                    self.adopted_by(stream);
                }
            }
            Source::Agent => self.read_agent(),
            Source::Out | Source::Err => {
                let mut lines = Vec::new();
                let pipe = match source {
                    Source::Out => &mut self.out,
                    _ => &mut self.err,
                };
                if let Some(p) = pipe
                    && p.read(&mut lines).is_none()
                {
                    *pipe = None;
                }
                for line in lines {
                    self.line(line);
                }
            }
            // The pidfd is readable: the exit is reaped after the poll.
            Source::Child => {}
        }
    }

    /// A (restarted) agent connected: the newest one is the agent.
    fn adopted_by(&mut self, stream: UnixStream) {
        // Only the node's user, and never a process of the replica itself
        // (which may run as that user too).
        let Some((pid, uid)) = peer(&stream) else {
            return;
        };
        // SAFETY: geteuid has no arguments and cannot fail.
        if uid != unsafe { libc::geteuid() } || tree::descendants(std::process::id()).contains(&pid)
        {
            return;
        }
        // One agent at a time: a second connection is turned away while
        // the first is open (a restarted agent's predecessor is closed).
        if let Some(current) = &self.agent {
            if open(current) {
                return;
            }
            self.lost_agent();
        }
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
        let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
        self.agent = Some(stream);
        self.away_since = None;
        let hello = FromShim::Hello(self.hello());
        if !self.send(&hello) {
            return;
        }
        let away = std::mem::take(&mut self.away);
        if away.dropped > 0 {
            self.line((
                true,
                format!(
                    "skr8tr: {} lines of output were dropped while the node agent was away",
                    away.dropped
                ),
            ));
        }
        for line in away.lines {
            self.line(line);
        }
    }

    fn read_agent(&mut self) {
        let Some(agent) = &mut self.agent else {
            return;
        };
        match read_frame::<ToShim>(agent) {
            Ok(ToShim::Stop { drain_ms }) => self.terminate(capped(drain_ms)),
            Ok(ToShim::Lease { for_ms, drain_ms }) => {
                self.lease = Some((Instant::now() + capped(for_ms), capped(drain_ms)));
            }
            Ok(ToShim::Ready(ready)) => self.ready = ready,
            Ok(ToShim::Plan(_)) => {}
            Err(_) => self.lost_agent(),
        }
    }

    /// SIGTERM to the replica's group, then its tree is killed after `drain`.
    fn terminate(&mut self, drain: Duration) {
        if self.stop_by.is_none() && self.status.is_none() {
            // SAFETY: kill takes plain integers; the replica leads its own
            // group (pgid == pid > 1).
            unsafe { libc::kill(-(self.pid as libc::pid_t), libc::SIGTERM) };
            self.stop_by = Some(Instant::now() + drain);
        }
    }

    fn lost_agent(&mut self) {
        self.agent = None;
        self.away_since.get_or_insert_with(Instant::now);
    }

    /// Sends to the agent; false (and the agent is gone) if it cannot.
    fn send(&mut self, message: &FromShim) -> bool {
        let Some(agent) = &mut self.agent else {
            return false;
        };
        if write_frame(agent, message).is_ok() {
            return true;
        }
        self.lost_agent();
        false
    }

    fn line(&mut self, (stderr, text): (bool, String)) {
        if self.agent.is_some() {
            let message = FromShim::Log {
                stderr,
                text: text.clone(),
            };
            if self.send(&message) {
                return;
            }
        }
        self.away.push((stderr, text));
    }

    fn reaped(&mut self, pid: u32, status: i32) {
        if pid == self.pid && self.status.is_none() {
            self.status = Some(status);
        }
    }

    fn kill_tree(&mut self) {
        for (pid, status) in tree::kill_tree(std::process::id(), self.plan.cgroup.as_ref()) {
            self.reaped(pid, status);
        }
    }

    /// The replica's leader ended: nothing of its tree may outlive it (a
    /// helper would hold its port against the next start). Then its last
    /// output, and how it ended.
    fn finish_child(&mut self) {
        self.kill_tree();
        for _ in 0..40 {
            if self.out.is_none() && self.err.is_none() {
                break;
            }
            self.poll_once();
        }
        let (code, signal) = tree::decode_status(self.status.unwrap_or(0));
        let oom = signal == Some(libc::SIGKILL)
            && self
                .plan
                .cgroup
                .as_ref()
                .is_some_and(|c| c.oom_kills() > self.oom_before);
        self.exited = Some(Exit { code, signal, oom });
    }
}

/// A duration from the agent, at most a day: a drain or lease is seconds,
/// and sums with it must not overflow.
fn capped(ms: u64) -> Duration {
    Duration::from_millis(ms.min(86_400_000))
}
