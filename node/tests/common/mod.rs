//! Helpers shared by the node's integration tests.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use skr8tr_node::cgroup::Cgroups;
use skr8tr_node::logs::disk::{DiskConfig, DiskLogs};
use skr8tr_node::supervisor::{Supervisor, SupervisorConfig};
use skr8tr_proto::manifest;
use skr8tr_proto::wire::{Assignment, ReplicaReport, ReplicaState};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// The `skr8tr` binary, whose `shim` subcommand runs under each replica.
pub fn shim_bin() -> PathBuf {
    let mut dir = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join("skr8tr");
    assert!(
        bin.exists(),
        "{} is missing: build it first with `cargo build -p skr8tr` (cargo test --workspace does)",
        bin.display()
    );
    bin
}

pub const ID: &str = "web/1/0";
pub const DEADLINE: Duration = Duration::from_secs(20);

pub struct Node {
    pub sup: Supervisor,
    pub changed: Arc<Notify>,
    pub dir: PathBuf,
}

/// A supervisor with its own data directory and port range (tests run in
/// parallel, so each gets different ports).
pub fn node(name: &str, ports: (u16, u16)) -> Node {
    let dir = std::env::temp_dir().join(format!(
        "skr8tr-node-supervisor-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    node_in(&dir, ports)
}

pub fn node_in(dir: &Path, ports: (u16, u16)) -> Node {
    node_with(dir, ports, Duration::from_secs(5), None)
}

pub fn node_with(dir: &Path, ports: (u16, u16), grace: Duration, cgroups: Option<Cgroups>) -> Node {
    let changed = Arc::new(Notify::new());
    let sup = Supervisor::new(
        SupervisorConfig {
            address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port_range: ports,
            data_dir: dir.join("data"),
            log_lines: 100,
            shim: shim_bin(),
            grace,
            cgroups,
            allow_root: false,
            wasm_runtime: None,
            disk_logs: Some(
                DiskLogs::start(DiskConfig {
                    root: dir.join("data").join("logs"),
                    file_bytes: 1 << 20,
                    files: 3,
                })
                .expect("the logs directory"),
            ),
        },
        changed.clone(),
    );
    Node {
        sup,
        changed,
        dir: dir.to_path_buf(),
    }
}

pub fn assignment(id: &str, manifest_text: &str) -> Assignment {
    let spec = manifest::parse("test.skr8tr", manifest_text)
        .unwrap_or_else(|e| panic!("{e}"))
        .remove(0);
    Assignment {
        replica: id.to_string(),
        app: spec.name.clone(),
        generation: 1,
        spec,
    }
}

/// The real python3 (not a pyenv shim script), found once.
pub fn python() -> &'static str {
    static PYTHON: OnceLock<String> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let out = std::process::Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .expect("these tests need python3");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    })
}

pub fn report(sup: &Supervisor, id: &str) -> Option<ReplicaReport> {
    sup.reports().into_iter().find(|r| r.replica == id)
}

pub fn log_text(sup: &Supervisor, id: &str) -> String {
    sup.logs(id, 1000)
        .unwrap_or_default()
        .into_iter()
        .map(|l| l.text + "\n")
        .collect()
}

/// Waits until the replica's report satisfies `done`.
pub async fn wait_for(
    sup: &Supervisor,
    id: &str,
    what: &str,
    done: impl Fn(&ReplicaReport) -> bool,
) -> ReplicaReport {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let r = report(sup, id);
        if let Some(r) = r.as_ref().filter(|r| done(r)) {
            return r.clone();
        }
        if Instant::now() > deadline {
            panic!(
                "timed out waiting for {what}; last report {r:?}; logs:\n{}",
                log_text(sup, id)
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub async fn wait_gone(sup: &Supervisor, id: &str) {
    let deadline = Instant::now() + DEADLINE;
    while let Some(r) = report(sup, id) {
        assert!(Instant::now() < deadline, "still reported: {r:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub fn ready(r: &ReplicaReport) -> bool {
    r.state == ReplicaState::Ready
}

/// Gone, or a zombie nobody reaped yet (PID 1 in a container may not).
pub fn dead(pid: u32) -> bool {
    !skr8tr_node::process::procfs::is_running(pid)
}

/// The replica directories under the node's data dir: one per live shim.
pub fn shim_dirs(node: &Node) -> usize {
    std::fs::read_dir(node.dir.join("data").join("replicas"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// A replica that forks helpers, one of them in a session of its own:
/// `sh -c 'sleep 1000 & sleep 1000 & setsid sleep 1001 & wait'`.
pub const FORKER: &str = "app web\n  exec /bin/sh\n  args -c 'sleep 1000 & sleep 1000 & setsid sleep 1001 & wait'\n  settle 100ms\n  drain 200ms\n";

/// Every live process whose command line starts with `needle`.
pub fn processes_with(needle: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                String::from_utf8_lossy(&c)
                    .replace('\0', " ")
                    .starts_with(needle)
            })
        })
        .filter(|pid| !dead(*pid))
        .collect()
}

pub async fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A forker whose sleeps are told apart from other tests' by their length.
pub fn forker(secs: u32) -> String {
    FORKER
        .replace("1000", &secs.to_string())
        .replace("1001", &(secs + 1).to_string())
}
