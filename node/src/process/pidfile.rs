//! Upgrading from an agent that kept a pid file: the groups it recorded
//! have no shim, so they are killed once, and the file removed.

use std::path::Path;

use super::ProcessGroup;
use super::group::kill_group_now;
use super::procfs::start_time;

/// Name of the pid file agents before the shim kept in the data
/// directory (`boot BOOT_ID`, then `PGID STARTTIME REPLICA` lines).
pub const PID_FILE: &str = "replicas.pids";

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
    let _ = std::fs::remove_file(&path);
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
