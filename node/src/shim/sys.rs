//! The shim's system calls on the replica's side: the fork (process
//! group, environment, cgroup join, parent-death signal) and who is at the
//! other end of a control connection.

use super::Plan;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

/// Forks the replica: its own process group, the plan's environment only,
/// stdin from /dev/null, output piped to us; before exec it joins its
/// cgroup and asks to die with the shim.
pub(super) fn spawn(plan: &Plan, procs: &[File]) -> io::Result<std::process::Child> {
    let mut cmd = Command::new(&plan.program);
    cmd.args(&plan.args)
        .env_clear()
        .envs(plan.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(dir) = &plan.cwd {
        cmd.current_dir(dir);
    }
    if let Some(gid) = plan.gid {
        cmd.gid(gid);
    }
    if let Some(uid) = plan.uid {
        cmd.uid(uid);
    }
    let procs: Vec<RawFd> = procs.iter().map(|f| f.as_raw_fd()).collect();
    // SAFETY: getpid has no arguments and cannot fail.
    let shim = unsafe { libc::getpid() };
    // Runs in the forked child before exec (after the uid change, which
    // clears a parent-death signal, so it is set here): only
    // async-signal-safe calls, no allocation (the fd list was built
    // before the fork).
    let before_exec = move || {
        // The shim ignores these; the replica starts with the defaults.
        // SAFETY: signal() is async-signal-safe.
        unsafe {
            libc::signal(libc::SIGHUP, libc::SIG_DFL);
            libc::signal(libc::SIGINT, libc::SIG_DFL);
        }
        for fd in &procs {
            // SAFETY: write of one byte from a static buffer to an open fd.
            if unsafe { libc::write(*fd, b"0".as_ptr().cast(), 1) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // SAFETY: prctl(PR_SET_PDEATHSIG) takes plain integers.
        if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) } == -1 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: getppid has no arguments and cannot fail.
        if unsafe { libc::getppid() } != shim {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        Ok(())
    };
    // SAFETY: the hook only makes the async-signal-safe calls above.
    unsafe { cmd.pre_exec(before_exec) };
    cmd.spawn()
}

/// The pid and uid of a Unix socket's peer (`SO_PEERCRED`).
pub(super) fn peer(stream: &UnixStream) -> Option<(u32, u32)> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`, a live
    // ucred, on a socket we own.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    (rc == 0 && cred.pid > 0).then_some((cred.pid as u32, cred.uid))
}

/// Whether the peer of a connection is still there: not at end of file.
pub(super) fn open(stream: &UnixStream) -> bool {
    let mut byte = [0u8; 1];
    // SAFETY: recv into a one-byte buffer we own; MSG_PEEK leaves the data.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            byte.as_mut_ptr().cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n > 0 || (n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock)
}
