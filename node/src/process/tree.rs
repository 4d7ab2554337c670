//! A replica's whole process tree: every descendant of its shim (which is
//! a child subreaper, so orphans and `setsid` children stay descendants)
//! and every member of its cgroup, killed until none is left.

use super::procfs;
use crate::cgroup::ReplicaCgroup;
use std::collections::BTreeMap;
use std::time::Duration;

/// Rounds of "list, SIGKILL, reap" before giving up on a tree that keeps
/// forking (each round kills every process it saw, so a fork bomb loses).
const KILL_ROUNDS: usize = 50;

/// Live (not zombie) descendants of `root`, from `/proc`.
pub fn descendants(root: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut children: BTreeMap<u32, Vec<(u32, bool)>> = BTreeMap::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some(stat) = procfs::stat(pid) {
            children
                .entry(stat.ppid)
                .or_default()
                .push((pid, stat.state == 'Z'));
        }
    }
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut queue = vec![root];
    while let Some(parent) = queue.pop() {
        for &(pid, zombie) in children.get(&parent).map(Vec::as_slice).unwrap_or(&[]) {
            if pid == root || !seen.insert(pid) {
                continue;
            }
            queue.push(pid);
            if !zombie {
                out.push(pid);
            }
        }
    }
    out
}

/// SIGKILLs `root`'s descendants and the cgroup's members, reaping what
/// are our children, until none is left. `root` itself is spared (it is
/// the caller: the shim). Returns the children it reaped meanwhile, with
/// their wait status.
pub fn kill_tree(root: u32, cgroup: Option<&ReplicaCgroup>) -> Vec<(u32, i32)> {
    kill_cgroup_at_once(cgroup);
    kill_until_empty(
        || {
            let mut pids = descendants(root);
            if let Some(cg) = cgroup {
                pids.extend(cg.pids());
            }
            pids.retain(|p| *p != root);
            pids
        },
        true,
    )
}

/// SIGKILLs every member of a cgroup until it is empty, for the agent when
/// a replica's shim is gone. Reaps nothing: the agent's children are its
/// runtime's to wait for.
pub fn kill_cgroup(cgroup: &ReplicaCgroup) {
    kill_cgroup_at_once(Some(cgroup));
    kill_until_empty(|| cgroup.pids(), false);
}

fn kill_cgroup_at_once(cgroup: Option<&ReplicaCgroup>) {
    if let Some(kill) = cgroup.and_then(|c| c.kill_file.as_ref())
        && kill.exists()
    {
        // cgroup v2: every member at once, forks racing it included.
        let _ = std::fs::write(kill, "1");
    }
}

fn kill_until_empty(list: impl Fn() -> Vec<u32>, reap: bool) -> Vec<(u32, i32)> {
    let own = std::process::id();
    let mut reaped = Vec::new();
    for _ in 0..KILL_ROUNDS {
        let mut pids = list();
        pids.retain(|p| *p != own && *p > 1 && procfs::is_running(*p));
        pids.sort_unstable();
        pids.dedup();
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            // SAFETY: kill takes plain integers; pid > 1 names one process.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
        if reap {
            reaped.extend(reap_all());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    if reap {
        reaped.extend(reap_all());
    }
    reaped
}

/// SIGKILLs the shim with this pid, if that pid still is the shim of the
/// replica directory `dir` (its command line names it): a shim that lost
/// its agent must not outlive a replacement.
pub fn kill_shim(pid: u32, dir: &std::path::Path) {
    if pid <= 1 || pid == std::process::id() {
        return;
    }
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return;
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let ours = args.get(1) == Some(&b"shim".as_slice())
        && args.get(2) == Some(&dir.as_os_str().as_encoded_bytes());
    if ours {
        // SAFETY: kill takes plain integers; pid > 1 names one process.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    }
}

/// Reaps every child that has exited; returns the ones it reaped with
/// their wait status.
pub fn reap_all() -> Vec<(u32, i32)> {
    let mut reaped = Vec::new();
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: waitpid writes one int through a valid pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return reaped;
        }
        reaped.push((pid as u32, status));
    }
}

/// A wait status as (exit code, signal).
pub fn decode_status(status: i32) -> (Option<i32>, Option<i32>) {
    if libc::WIFEXITED(status) {
        (Some(libc::WEXITSTATUS(status)), None)
    } else if libc::WIFSIGNALED(status) {
        (None, Some(libc::WTERMSIG(status)))
    } else {
        (None, None)
    }
}
