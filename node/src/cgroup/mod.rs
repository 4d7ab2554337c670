//! Per-replica cgroups: `ram` as the memory limit, `cpus` as the CPU quota,
//! and the kernel's word on whether a replica was killed for its memory.
//!
//! Detected once at node start ([`Cgroups::detect`]): cgroup v2 when a
//! cgroup2 mount offers both the `memory` and `cpu` controllers, else
//! cgroup v1 when `memory` and `cpu` hierarchies are mounted (as on the
//! machines this is built on), else none, and the node says so once and
//! runs replicas without limits (`limits: off` in `skr8tr nodes`).
//!
//! Layout under each hierarchy root: `skr8tr/<node scope>/<replica key>`,
//! where the scope is a hash of the node's data directory (two agents on
//! one host never share a cgroup) and the key a hash of the replica id
//! (both fixed-length, so paths stay short). The agent creates and
//! configures the leaf; the replica's shim moves the replica into it
//! before exec, reads its OOM counter, and empties it when the replica
//! stops; the agent removes it after.
//!
//! This module only reads and writes cgroupfs files, so its v2 paths are
//! tested against a plain directory laid out like a cgroup2 mount.

use serde::{Deserialize, Serialize};
use std::io;
use std::path::{Path, PathBuf};

#[cfg(test)]
mod tests;

/// The CPU quota's period: 100 ms, the kernel's default.
pub const CPU_PERIOD_US: u64 = 100_000;
/// The smallest quota the kernel accepts (1 ms per period).
const CPU_MIN_QUOTA_US: u64 = 1_000;

/// Which cgroup interface the node drives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// One unified hierarchy at `root` (usually `/sys/fs/cgroup`).
    V2 { root: PathBuf },
    /// Separate hierarchies: `memory` and `cpu` are required, `cpuacct`
    /// (CPU usage) is read when mounted on its own.
    V1 {
        memory: PathBuf,
        cpu: PathBuf,
        cpuacct: Option<PathBuf>,
    },
}

/// The node's cgroups: the interface and its own scope in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cgroups {
    pub kind: Kind,
    /// `skr8tr/<hash of the data dir>`.
    scope: PathBuf,
}

/// What a replica may use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// `ram`, bytes.
    pub memory: Option<u64>,
    /// `cpus`, thousandths of a core.
    pub cpu_millis: Option<u32>,
}

/// One replica's cgroup: the directories (one per v1 hierarchy, one for
/// v2) and where its OOM kills are counted. Travels to the shim inside its
/// launch plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaCgroup {
    /// Every directory the replica joins (`cgroup.procs` in each).
    pub dirs: Vec<PathBuf>,
    /// `memory.events` (v2) or `memory.oom_control` (v1): both hold an
    /// `oom_kill N` line.
    pub oom_file: PathBuf,
    /// `cgroup.kill` (v2, kernel 5.14+): kills every process at once.
    pub kill_file: Option<PathBuf>,
}

impl Cgroups {
    /// Finds the cgroup interface of this host, for the node whose data
    /// directory is `data_dir`. `Err` says why limits are off.
    pub fn detect(data_dir: &Path) -> Result<Cgroups, String> {
        let mounts = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
        let kind = detect_kind(&mounts, |p| std::fs::read_to_string(p).ok())?;
        let cgroups = Cgroups::new(kind, data_dir);
        cgroups.probe()?;
        Ok(cgroups)
    }

    /// The cgroups of the node of `data_dir` under a known interface.
    pub fn new(kind: Kind, data_dir: &Path) -> Cgroups {
        Cgroups {
            kind,
            scope: Path::new("skr8tr").join(short_hash(&data_dir.to_string_lossy())),
        }
    }

    pub fn label(&self) -> &'static str {
        match self.kind {
            Kind::V2 { .. } => "cgroup v2",
            Kind::V1 { .. } => "cgroup v1",
        }
    }

    /// Creates the node's scope, so a host where we may not write cgroups
    /// (not root, a read-only mount) is found at start, not at the first
    /// replica.
    fn probe(&self) -> Result<(), String> {
        for dir in self.scope_dirs() {
            self.make_dirs(&dir).map_err(|e| {
                format!(
                    "cannot create {}: {e} (run the node as root for limits)",
                    dir.display()
                )
            })?;
        }
        Ok(())
    }

    fn roots(&self) -> Vec<&Path> {
        match &self.kind {
            Kind::V2 { root } => vec![root.as_path()],
            Kind::V1 {
                memory,
                cpu,
                cpuacct,
            } => {
                let mut roots = vec![memory.as_path(), cpu.as_path()];
                roots.extend(cpuacct.as_deref());
                roots
            }
        }
    }

    fn scope_dirs(&self) -> Vec<PathBuf> {
        self.roots().iter().map(|r| r.join(&self.scope)).collect()
    }

    /// Creates `dir` and its missing parents below the hierarchy root. On
    /// v2 each level delegates `memory` and `cpu` to its children first
    /// (`cgroup.subtree_control`), since a leaf can only use controllers
    /// its parent enabled.
    fn make_dirs(&self, dir: &Path) -> io::Result<()> {
        let Kind::V2 { root } = &self.kind else {
            return std::fs::create_dir_all(dir);
        };
        let rel = dir.strip_prefix(root).map_err(io::Error::other)?;
        let mut at = root.clone();
        for part in rel.components() {
            enable_controllers(&at)?;
            at.push(part);
            match std::fs::create_dir(&at) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The cgroup of one replica, by id, without touching the filesystem.
    pub fn replica(&self, replica: &str) -> ReplicaCgroup {
        self.replica_by_key(&short_hash(replica))
    }

    /// The cgroup of the replica whose directory name (its id's hash) is
    /// `key`: what a shim that is gone leaves to clean.
    pub fn replica_by_key(&self, key: &str) -> ReplicaCgroup {
        let dirs: Vec<PathBuf> = self.scope_dirs().iter().map(|d| d.join(key)).collect();
        match &self.kind {
            Kind::V2 { .. } => ReplicaCgroup {
                oom_file: dirs[0].join("memory.events"),
                kill_file: Some(dirs[0].join("cgroup.kill")),
                dirs,
            },
            Kind::V1 { .. } => ReplicaCgroup {
                oom_file: dirs[0].join("memory.oom_control"),
                kill_file: None,
                dirs,
            },
        }
    }

    /// Creates (or reuses) a replica's cgroup and writes its limits; an
    /// unset limit is written as "no limit", so a reused cgroup never
    /// keeps an old one.
    pub fn create(&self, replica: &str, limits: Limits) -> io::Result<ReplicaCgroup> {
        let cg = self.replica(replica);
        for dir in &cg.dirs {
            self.make_dirs(dir)?;
        }
        match &self.kind {
            Kind::V2 { .. } => {
                let dir = &cg.dirs[0];
                let memory = limits.memory.map_or("max".to_string(), |b| b.to_string());
                write(&dir.join("memory.max"), &memory)?;
                // No swap: a replica over its `ram` is killed, not slowed
                // to a crawl. Absent when the kernel has no swap support.
                let swap = dir.join("memory.swap.max");
                if swap.exists() {
                    write(&swap, "0")?;
                }
                let quota = limits
                    .cpu_millis
                    .map_or("max".to_string(), |m| cpu_quota_us(m).to_string());
                write(&dir.join("cpu.max"), &format!("{quota} {CPU_PERIOD_US}"))?;
            }
            Kind::V1 { .. } => {
                let (memory, cpu) = (&cg.dirs[0], &cg.dirs[1]);
                let limit = limits.memory.map_or("-1".to_string(), |b| b.to_string());
                // memsw (memory + swap) must stay >= the memory limit at
                // every step: lift it, set the limit, then pin it to it.
                let memsw = memory.join("memory.memsw.limit_in_bytes");
                let has_memsw = memsw.exists();
                if has_memsw {
                    write(&memsw, "-1")?;
                }
                write(&memory.join("memory.limit_in_bytes"), &limit)?;
                if has_memsw {
                    write(&memsw, &limit)?;
                }
                write(&cpu.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
                let quota = limits
                    .cpu_millis
                    .map_or("-1".to_string(), |m| cpu_quota_us(m).to_string());
                write(&cpu.join("cpu.cfs_quota_us"), &quota)?;
            }
        }
        Ok(cg)
    }

    /// Removes the node's (empty) scope directories, at a clean shutdown.
    pub fn remove_scope(&self) {
        for dir in self.scope_dirs() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

impl ReplicaCgroup {
    /// How many times the kernel's OOM killer has killed a process of this
    /// cgroup (0 when unreadable).
    pub fn oom_kills(&self) -> u64 {
        std::fs::read_to_string(&self.oom_file)
            .ok()
            .and_then(|text| parse_oom_kills(&text))
            .unwrap_or(0)
    }

    /// The `cgroup.procs` file of each directory.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }

    /// Every process in the cgroup, over all its hierarchies.
    pub fn pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self
            .procs_files()
            .iter()
            .filter_map(|f| std::fs::read_to_string(f).ok())
            .flat_map(|t| {
                t.split_ascii_whitespace()
                    .filter_map(|w| w.parse().ok())
                    .collect::<Vec<u32>>()
            })
            .collect();
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// Removes the cgroup's directories (they must be empty of processes);
    /// already gone is fine.
    pub fn remove(&self) -> io::Result<()> {
        for dir in &self.dirs {
            match std::fs::remove_dir(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Picks the interface from `/proc/self/mountinfo` text; `read` reads a
/// file (the controllers a cgroup2 mount offers).
pub fn detect_kind(
    mountinfo: &str,
    read: impl Fn(&Path) -> Option<String>,
) -> Result<Kind, String> {
    let mut v1_memory = None;
    let mut v1_cpu = None;
    let mut v1_cpuacct = None;
    for line in mountinfo.lines() {
        // `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL…] - FSTYPE SOURCE SUPER`
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let Some(mount) = left.split(' ').nth(4) else {
            continue;
        };
        let mut right = right.split(' ');
        let fstype = right.next().unwrap_or("");
        let options = right.nth(1).unwrap_or("");
        let mount = PathBuf::from(mount);
        if fstype == "cgroup2" {
            let controllers = read(&mount.join("cgroup.controllers")).unwrap_or_default();
            let has = |c: &str| controllers.split_ascii_whitespace().any(|w| w == c);
            if has("memory") && has("cpu") {
                return Ok(Kind::V2 { root: mount });
            }
        } else if fstype == "cgroup" {
            let has = |c: &str| options.split(',').any(|w| w == c);
            if has("memory") {
                v1_memory = Some(mount.clone());
            }
            if has("cpu") {
                v1_cpu = Some(mount.clone());
            }
            if has("cpuacct") && !has("cpu") {
                v1_cpuacct = Some(mount);
            }
        }
    }
    match (v1_memory, v1_cpu) {
        (Some(memory), Some(cpu)) => Ok(Kind::V1 {
            memory,
            cpu,
            cpuacct: v1_cpuacct,
        }),
        (None, _) => Err("no cgroup mount offers the memory controller".into()),
        (_, None) => Err("no cgroup mount offers the cpu controller".into()),
    }
}

/// `cpus` as microseconds of CPU per [`CPU_PERIOD_US`].
pub fn cpu_quota_us(cpu_millis: u32) -> u64 {
    (u64::from(cpu_millis) * CPU_PERIOD_US / 1000).max(CPU_MIN_QUOTA_US)
}

/// The `oom_kill N` line of `memory.events` or `memory.oom_control`.
pub fn parse_oom_kills(text: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (key, value) = l.split_once(' ')?;
        (key == "oom_kill").then(|| value.trim().parse().ok())?
    })
}

/// Adds `memory` and `cpu` to what a v2 cgroup delegates to its children.
fn enable_controllers(dir: &Path) -> io::Result<()> {
    let file = dir.join("cgroup.subtree_control");
    let current = std::fs::read_to_string(&file)?;
    let has = |c: &str| current.split_ascii_whitespace().any(|w| w == c);
    if has("memory") && has("cpu") {
        return Ok(());
    }
    write(&file, "+memory +cpu")
}

fn write(path: &Path, value: &str) -> io::Result<()> {
    std::fs::write(path, value)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

/// 16 hex digits of FNV-1a 64 of `text`: a short, fixed-length file name
/// for an id of any length (not a security boundary; the directories that
/// hold these names are the node's own).
pub fn short_hash(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}
