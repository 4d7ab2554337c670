//! The pid file of running replica groups, and killing what a previous
//! run of the node left behind.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::ProcessGroup;
use super::group::kill_group_now;
use super::procfs::start_time;

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
        let started = start_time(group.id()).unwrap_or(0);
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
            text.push_str(&format!("{} {started} {replica}\n", group.id()));
        }
        let tmp = self.path.with_extension("pids.tmp");
        let result =
            write_private(&tmp, text.as_bytes()).and_then(|()| std::fs::rename(&tmp, &self.path));
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

/// Writes `bytes` to a new file readable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?
        .write_all(bytes)
}
