//! A process group: signalling it safely (the pid-file era's leftovers
//! are killed by group).

use std::io;

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

/// Asks the node agent `pid` to leave with its replicas (SIGUSR1).
/// `Ok(false)`: no such process.
pub fn ask_to_leave(pid: u32) -> io::Result<bool> {
    let pid = libc::pid_t::try_from(pid)
        .ok()
        .filter(|p| *p > 1)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not an agent's pid"))?;
    // SAFETY: kill takes plain integers; pid > 1 names exactly one process.
    if unsafe { libc::kill(pid, libc::SIGUSR1) } == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::ESRCH) => Ok(false),
        _ => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_groups_that_would_hit_everything_are_refused() {
        assert!(ProcessGroup::new(0).is_none());
        assert!(ProcessGroup::new(1).is_none());
        assert!(ProcessGroup::new(std::process::id()).is_none());
        assert!(ProcessGroup::new(u32::MAX).is_none());
    }
}
