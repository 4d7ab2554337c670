//! The supervisor with real processes (`/bin/sh`, `sleep`, python's
//! http.server): readiness, restarts, backoff, health failures, jobs,
//! draining and shutdown. Every wait is for a condition, with a deadline.

// A test: an unwrap is an assertion (clippy allows it inside #[test]
// functions only; these helpers are part of the tests too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use skr8tr_node::cgroup::Cgroups;
use skr8tr_node::process::{self, ProcessGroup};
use skr8tr_node::supervisor::{
    BACKOFF_FIRST, BACKOFF_RESET_AFTER, Backoff, Supervisor, SupervisorConfig, should_restart,
};
use skr8tr_proto::manifest::{self, Restart};
use skr8tr_proto::wire::{Assignment, ReplicaReport, ReplicaState};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

mod common;

const ID: &str = "web/1/0";
const DEADLINE: Duration = Duration::from_secs(20);

struct Node {
    sup: Supervisor,
    changed: Arc<Notify>,
    dir: PathBuf,
}

/// A supervisor with its own data directory and port range (tests run in
/// parallel, so each gets different ports).
fn node(name: &str, ports: (u16, u16)) -> Node {
    let dir = std::env::temp_dir().join(format!(
        "skr8tr-node-supervisor-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    node_in(&dir, ports)
}

fn node_in(dir: &Path, ports: (u16, u16)) -> Node {
    node_with(dir, ports, Duration::from_secs(5), None)
}

fn node_with(dir: &Path, ports: (u16, u16), grace: Duration, cgroups: Option<Cgroups>) -> Node {
    let changed = Arc::new(Notify::new());
    let sup = Supervisor::new(
        SupervisorConfig {
            address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port_range: ports,
            data_dir: dir.join("data"),
            log_lines: 100,
            shim: common::shim_bin(),
            grace,
            cgroups,
            allow_root: false,
            wasm_runtime: None,
        },
        changed.clone(),
    );
    Node {
        sup,
        changed,
        dir: dir.to_path_buf(),
    }
}

fn assignment(id: &str, manifest_text: &str) -> Assignment {
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
fn python() -> &'static str {
    static PYTHON: OnceLock<String> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let out = std::process::Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .expect("these tests need python3");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    })
}

fn report(sup: &Supervisor, id: &str) -> Option<ReplicaReport> {
    sup.reports().into_iter().find(|r| r.replica == id)
}

fn log_text(sup: &Supervisor, id: &str) -> String {
    sup.logs(id, 1000)
        .unwrap_or_default()
        .into_iter()
        .map(|l| l.text + "\n")
        .collect()
}

/// Waits until the replica's report satisfies `done`.
async fn wait_for(
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

async fn wait_gone(sup: &Supervisor, id: &str) {
    let deadline = Instant::now() + DEADLINE;
    while let Some(r) = report(sup, id) {
        assert!(Instant::now() < deadline, "still reported: {r:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn ready(r: &ReplicaReport) -> bool {
    r.state == ReplicaState::Ready
}

/// Gone, or a zombie nobody reaped yet (PID 1 in a container may not).
fn dead(pid: u32) -> bool {
    !skr8tr_node::process::procfs::is_running(pid)
}

/// The replica directories under the node's data dir: one per live shim.
fn shim_dirs(node: &Node) -> usize {
    std::fs::read_dir(node.dir.join("data").join("replicas"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_replica_becomes_ready_when_its_tcp_check_passes_and_stops_when_unassigned() {
    let n = node("tcp", (21000, 21049));
    let a = assignment(
        ID,
        &format!(
            "app web\n  exec {}\n  args -m http.server $PORT --bind 127.0.0.1\n  health {{\n    check tcp\n    interval 1s\n  }}\n",
            python()
        ),
    );
    n.sup.converge(std::slice::from_ref(&a));
    n.sup.converge(std::slice::from_ref(&a)); // idempotent
    tokio::time::timeout(Duration::from_secs(5), n.changed.notified())
        .await
        .expect("converge reports at once");
    let r = wait_for(&n.sup, ID, "ready", ready).await;
    assert_eq!(n.sup.reports().len(), 1);
    let (pid, port) = (r.pid.unwrap(), r.port.unwrap());
    assert!((21000..=21049).contains(&port));
    assert_eq!((r.app.as_str(), r.generation, r.restarts), ("web", 1, 0));
    assert!(r.started_at_ms > 0 && r.rss_bytes > 0, "{r:?}");
    assert_eq!(shim_dirs(&n), 1);
    // It really serves on the port it was given.
    std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();

    n.sup.converge(&[]);
    wait_gone(&n.sup, ID).await;
    assert!(!process::is_alive(pid) || dead(pid));
    assert_eq!(shim_dirs(&n), 0, "the shim cleaned up after itself");
    assert!(n.sup.logs(ID, 10).is_none());
}

#[tokio::test]
async fn without_a_health_check_a_replica_is_ready_after_settle_and_its_output_is_kept() {
    let n = node("settle", (21050, 21059));
    let a = assignment(
        ID,
        "app web\n  exec /bin/sh\n  args -c 'echo \"replica=$SKR8TR_REPLICA app=$SKR8TR_APP port=$PORT\"; echo oops >&2; exec sleep 60'\n  port 21055\n  settle 400ms\n",
    );
    n.sup.converge(&[a]);
    let began = Instant::now();
    let starting = wait_for(&n.sup, ID, "started", |r| r.pid.is_some()).await;
    assert_eq!(starting.state, ReplicaState::Starting);
    assert_eq!(starting.port, Some(21055));
    wait_for(&n.sup, ID, "ready", ready).await;
    assert!(
        began.elapsed() >= Duration::from_millis(350),
        "ready before settle"
    );
    let deadline = Instant::now() + DEADLINE;
    while !log_text(&n.sup, ID).contains("oops") {
        assert!(Instant::now() < deadline, "logs: {}", log_text(&n.sup, ID));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let lines = n.sup.logs(ID, 10).unwrap();
    let out = lines
        .iter()
        .find(|l| l.text.starts_with("replica="))
        .unwrap();
    assert_eq!(out.text, "replica=web/1/0 app=web port=21055");
    assert_eq!(n.sup.logs(ID, 1).unwrap().len(), 1);
    assert!(n.sup.logs("other/1/0", 10).is_none());
    n.sup.shutdown().await;
}

#[tokio::test]
async fn a_killed_replica_is_restarted() {
    let n = node("killed", (21060, 21069));
    n.sup.converge(&[assignment(
        ID,
        "app web\n  exec /bin/sleep\n  args 60\n  settle 100ms\n",
    )]);
    let first = wait_for(&n.sup, ID, "ready", ready).await;
    let old = first.pid.unwrap();
    ProcessGroup::new(old)
        .unwrap()
        .signal(libc::SIGKILL)
        .unwrap();
    let again = wait_for(&n.sup, ID, "restarted and ready", |r| {
        ready(r) && r.restarts == 1
    })
    .await;
    assert_ne!(again.pid, Some(old));
    assert_eq!(again.port, first.port, "a replica keeps its port");
    assert!(log_text(&n.sup, ID).contains("skr8tr: killed; restarting in 100ms"));
    n.sup.shutdown().await;
}

/// A replica that exits by itself at once (as it does when another process
/// took its port between the node's check and its own bind) gets another
/// auto port on its next start, instead of failing on the same one forever.
#[tokio::test]
async fn a_replica_that_exits_at_once_gets_another_auto_port() {
    let n = node("taken", (21090, 21093));
    let marker = n.dir.join("first-port");
    std::fs::create_dir_all(&n.dir).unwrap();
    // First start: note the port and exit 1 at once; later starts: run.
    let text = format!(
        "app web\n  exec /bin/sh\n  args -c 'if [ ! -e {m} ]; then echo $PORT > {m}; exit 1; fi; exec sleep 60'\n  settle 100ms\n",
        m = marker.display()
    );
    n.sup.converge(&[assignment(ID, &text)]);
    let r = wait_for(&n.sup, ID, "ready after one quick exit", |r| {
        ready(r) && r.restarts == 1
    })
    .await;
    let first: u16 = std::fs::read_to_string(&marker)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_ne!(
        r.port,
        Some(first),
        "the port it could not use was handed out again"
    );
    n.sup.shutdown().await;
}

/// A program that ignores SIGTERM, as does the helper it starts (whose pid
/// it prints).
const STUBBORN: &str = "app web\n  exec /bin/sh\n  args -c 'trap \"\" TERM; sleep 60 & echo $!; wait'\n  settle 100ms\n  drain 300ms\n";

#[tokio::test]
async fn an_unassigned_replica_is_drained_then_killed_with_its_group() {
    let n = node("drain", (21070, 21079));
    n.sup.converge(&[assignment(ID, STUBBORN)]);
    let r = wait_for(&n.sup, ID, "ready", ready).await;
    let pid = r.pid.unwrap();
    let helper: u32 = loop {
        if let Some(line) = n.sup.logs(ID, 10).unwrap().first() {
            break line.text.parse().unwrap();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let began = Instant::now();
    n.sup.converge(&[]);
    let stopping = wait_for(&n.sup, ID, "stopping", |r| {
        r.state == ReplicaState::Stopping
    })
    .await;
    assert_eq!(stopping.pid, Some(pid));
    wait_gone(&n.sup, ID).await;
    assert!(began.elapsed() >= Duration::from_millis(300), "drained");
    assert!(dead(pid) && dead(helper), "the whole group is killed");
    assert_eq!(shim_dirs(&n), 0);
}

#[tokio::test]
async fn a_replica_assigned_again_while_stopping_starts_anew() {
    let n = node("again", (21080, 21089));
    let a = assignment(ID, STUBBORN);
    n.sup.converge(std::slice::from_ref(&a));
    let old = wait_for(&n.sup, ID, "ready", ready).await.pid;
    n.sup.converge(&[]);
    wait_for(&n.sup, ID, "stopping", |r| {
        r.state == ReplicaState::Stopping
    })
    .await;
    n.sup.converge(std::slice::from_ref(&a));
    let r = wait_for(&n.sup, ID, "ready again", |r| ready(r) && r.pid != old).await;
    assert_eq!(r.restarts, 0, "a new start, not a restart");
    n.sup.shutdown().await;
}

#[tokio::test]
async fn a_job_reports_its_exit_code_and_on_failure_restarts_it() {
    let n = node("job", (21150, 21159));
    let marker = n.dir.join("ran-once");
    let once = format!(
        "app retry\n  type job\n  exec /bin/sh\n  args -c 'test -e {m} && exit 0; mkdir -p {d} && touch {m}; exit 1'\n  restart on-failure\n",
        m = marker.display(),
        d = n.dir.display(),
    );
    n.sup.converge(&[
        assignment(
            "exit3/1/0",
            "app exit3\n  type job\n  exec /bin/sh\n  args -c 'exit 3'\n",
        ),
        assignment("retry/1/0", &once),
    ]);
    let r = wait_for(&n.sup, "exit3/1/0", "exited", |r| {
        matches!(r.state, ReplicaState::Exited { .. })
    })
    .await;
    assert_eq!(
        (r.state, r.restarts, r.pid),
        (ReplicaState::Exited { code: Some(3) }, 0, None)
    );
    let r = wait_for(&n.sup, "retry/1/0", "exited", |r| {
        matches!(r.state, ReplicaState::Exited { .. })
    })
    .await;
    assert_eq!(
        (r.state, r.restarts),
        (ReplicaState::Exited { code: Some(0) }, 1)
    );
    n.sup.converge(&[]);
    wait_gone(&n.sup, "exit3/1/0").await;
    wait_gone(&n.sup, "retry/1/0").await;
}

#[tokio::test]
async fn a_program_that_cannot_start_exits_127() {
    let n = node("missing", (21100, 21109));
    n.sup.converge(&[assignment(
        ID,
        "app web\n  exec /nonexistent/skr8tr-test\n  restart never\n",
    )]);
    let r = wait_for(&n.sup, ID, "exited", |r| {
        matches!(r.state, ReplicaState::Exited { .. })
    })
    .await;
    assert_eq!(r.state, ReplicaState::Exited { code: Some(127) });
    assert!(log_text(&n.sup, ID).contains("skr8tr: cannot start /nonexistent/skr8tr-test"));
    n.sup.shutdown().await;
    assert!(n.sup.reports().is_empty());
}

#[tokio::test]
async fn a_crash_loop_backs_off() {
    let n = node("crash", (21110, 21119));
    n.sup.converge(&[assignment(
        ID,
        "app web\n  exec /bin/sh\n  args -c 'exit 1'\n",
    )]);
    let began = Instant::now();
    wait_for(&n.sup, ID, "3 restarts", |r| r.restarts >= 3).await;
    // 100 + 200 ms of backoff at least before the third restart.
    assert!(began.elapsed() >= Duration::from_millis(300));
    let mut saw_backoff = false;
    let mut restarts = 0;
    while began.elapsed() < Duration::from_secs(2) {
        let r = report(&n.sup, ID).unwrap();
        saw_backoff |= r.state == ReplicaState::Backoff;
        restarts = r.restarts;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(saw_backoff);
    // Waits of 100, 200, 400, 800 ms: at most 4 or 5 restarts in 2 s.
    assert!(restarts < 8, "{restarts} restarts in 2 s");
    assert!(log_text(&n.sup, ID).contains("skr8tr: exited with code 1; restarting in 400ms"));
    n.sup.shutdown().await;
}

#[tokio::test]
async fn a_failing_health_check_makes_it_unhealthy_then_restarts_it_after_retries() {
    let n = node("health", (21120, 21129));
    let www = n.dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("ok"), "ok").unwrap();
    n.sup.converge(&[assignment(
        ID,
        &format!(
            "app web\n  exec {}\n  args -m http.server $PORT --bind 127.0.0.1 --directory {}\n  health {{\n    check GET /ok 200\n    interval 200ms\n    timeout 200ms\n    retries 3\n  }}\n",
            python(),
            www.display()
        ),
    )]);
    let first = wait_for(&n.sup, ID, "ready", ready).await;
    std::fs::remove_file(www.join("ok")).unwrap();
    let r = wait_for(&n.sup, ID, "unhealthy", |r| {
        r.state == ReplicaState::Unhealthy
    })
    .await;
    assert_eq!((r.pid, r.restarts), (first.pid, 0));
    let r = wait_for(&n.sup, ID, "restarted", |r| {
        r.restarts == 1 && r.pid.is_some()
    })
    .await;
    assert_ne!(r.pid, first.pid);
    assert!(log_text(&n.sup, ID).contains("skr8tr: health check failed too often"));
    // Until it passes once, a failing check only keeps it starting.
    assert_ne!(r.state, ReplicaState::Ready);
    std::fs::write(www.join("ok"), "ok").unwrap();
    let r = wait_for(&n.sup, ID, "ready again", ready).await;
    assert_eq!(r.restarts, 1);
    n.sup.shutdown().await;
}

#[tokio::test]
async fn shutdown_stops_every_replica_and_auto_ports_differ() {
    let n = node("shutdown", (21130, 21139));
    let sleep = "app web\n  exec /bin/sleep\n  args 60\n  settle 50ms\n";
    n.sup
        .converge(&[assignment("web/1/0", sleep), assignment("web/1/1", sleep)]);
    let a = wait_for(&n.sup, "web/1/0", "ready", ready).await;
    let b = wait_for(&n.sup, "web/1/1", "ready", ready).await;
    assert_ne!(a.port, b.port);
    assert_eq!(shim_dirs(&n), 2);
    n.sup.shutdown().await;
    assert!(n.sup.reports().is_empty());
    assert!(dead(a.pid.unwrap()) && dead(b.pid.unwrap()));
    assert_eq!(shim_dirs(&n), 0);
    n.sup.converge(&[assignment("web/1/0", sleep)]);
    assert!(n.sup.reports().is_empty(), "nothing starts after shutdown");
}

/// A replica that forks helpers, one of them in a session of its own:
/// `sh -c 'sleep 1000 & sleep 1000 & setsid sleep 1001 & wait'`.
const FORKER: &str = "app web\n  exec /bin/sh\n  args -c 'sleep 1000 & sleep 1000 & setsid sleep 1001 & wait'\n  settle 100ms\n  drain 200ms\n";

/// Every live process whose command line starts with `needle`.
fn processes_with(needle: &str) -> Vec<u32> {
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

async fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A forker whose sleeps are told apart from other tests' by their length.
fn forker(secs: u32) -> String {
    FORKER
        .replace("1000", &secs.to_string())
        .replace("1001", &(secs + 1).to_string())
}

#[tokio::test]
async fn stopping_a_replica_leaves_none_of_its_tree_not_even_setsid_children() {
    let n = node("tree", (21140, 21149));
    n.sup.converge(&[assignment(ID, &forker(1310))]);
    wait_for(&n.sup, ID, "ready", ready).await;
    wait_until("three helpers", DEADLINE, || {
        processes_with("sleep 131").len() == 3
    })
    .await;
    n.sup.converge(&[]);
    wait_gone(&n.sup, ID).await;
    let left = processes_with("sleep 131");
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[tokio::test]
async fn a_restarted_agent_adopts_its_replicas_and_kills_what_is_no_longer_assigned() {
    let n = node("adopt", (21150, 21159));
    let keep = assignment(
        "web/1/0",
        "app web\n  exec /bin/sleep\n  args 60\n  settle 50ms\n",
    );
    let drop_it = assignment("old/1/0", &forker(1320).replace("app web", "app old"));
    n.sup.converge(&[keep.clone(), drop_it.clone()]);
    let kept = wait_for(&n.sup, "web/1/0", "ready", ready).await;
    wait_for(&n.sup, "old/1/0", "ready", ready).await;
    wait_until("the helpers", DEADLINE, || {
        processes_with("sleep 132").len() == 3
    })
    .await;
    // The agent exits (an upgrade): replicas keep running.
    n.sup.detach();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!dead(kept.pid.unwrap()), "a detached replica runs on");
    assert_eq!(processes_with("sleep 132").len(), 3);

    // The next agent takes both on as they are: same pid, port, readiness.
    let again = node_in(&n.dir, (21150, 21159));
    assert_eq!(again.sup.adopt().await, 2);
    let r = report(&again.sup, "web/1/0").unwrap();
    assert_eq!(
        (r.pid, r.port, r.state),
        (kept.pid, kept.port, ReplicaState::Ready)
    );
    // The first assignment set no longer holds `old`: its tree goes.
    again.sup.converge(std::slice::from_ref(&keep));
    wait_gone(&again.sup, "old/1/0").await;
    assert!(processes_with("sleep 132").is_empty());
    assert_eq!(report(&again.sup, "web/1/0").unwrap().pid, kept.pid);
    again.sup.shutdown().await;
    assert!(dead(kept.pid.unwrap()));
}

#[tokio::test]
async fn replicas_of_an_agent_that_never_returns_stop_by_themselves_within_the_grace() {
    let dir = std::env::temp_dir().join(format!(
        "skr8tr-node-supervisor-grace-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let n = node_with(&dir, (21160, 21169), Duration::from_millis(500), None);
    n.sup.converge(&[assignment(ID, &forker(1330))]);
    let pid = wait_for(&n.sup, ID, "ready", ready).await.pid.unwrap();
    wait_until("the helpers", DEADLINE, || {
        processes_with("sleep 133").len() == 3
    })
    .await;
    let gone_at = Instant::now();
    n.sup.detach();
    wait_until("the orphaned tree to stop", DEADLINE, || {
        dead(pid) && processes_with("sleep 133").is_empty()
    })
    .await;
    assert!(
        gone_at.elapsed() >= Duration::from_millis(400),
        "not before the grace"
    );
    wait_until("the shim to leave", DEADLINE, || shim_dirs(&n) == 0).await;
}

#[tokio::test]
async fn a_user_replica_runs_with_that_uid_and_root_is_refused() {
    let n = node("user", (21190, 21199));
    let volume = n.dir.join("vol");
    let text = format!(
        "app web\n  exec /bin/sh\n  args -c 'id -u; exec sleep 60'\n  user nobody\n  settle 50ms\n  volume {{ path {} }}\n",
        volume.display()
    );
    n.sup.converge(&[assignment(ID, &text)]);
    let pid = wait_for(&n.sup, ID, "ready", ready).await.pid.unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(uid.contains("65534"), "{uid}");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(&volume).unwrap().uid(),
        65534,
        "the volume is the user's"
    );
    n.sup.converge(&[]);
    wait_gone(&n.sup, ID).await;

    n.sup.converge(&[assignment(
        "root/1/0",
        "app root\n  exec /bin/sleep\n  args 60\n  user root\n",
    )]);
    wait_for(&n.sup, "root/1/0", "refused", |r| r.restarts >= 1).await;
    let log = log_text(&n.sup, "root/1/0");
    assert!(log.contains("does not run replicas as root"), "{log}");
    n.sup.shutdown().await;
}

/// Real cgroups (v1 on the machines this is built on, v2 elsewhere): only
/// root may create them, and CI runs as root.
fn real_cgroups(dir: &Path) -> Option<Cgroups> {
    use std::os::unix::fs::MetadataExt;
    let root = std::fs::metadata("/proc/self").unwrap().uid() == 0;
    match Cgroups::detect(&dir.join("data")) {
        Ok(c) => Some(c),
        Err(e) if root => panic!("running as root, cgroups must work: {e}"),
        Err(e) => {
            eprintln!("skipped: not root ({e})");
            None
        }
    }
}

#[tokio::test]
async fn a_replica_over_its_ram_is_oom_killed_and_restarted() {
    let dir =
        std::env::temp_dir().join(format!("skr8tr-node-supervisor-oom-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let Some(cgroups) = real_cgroups(&dir) else {
        return;
    };
    let n = node_with(&dir, (21170, 21179), Duration::from_secs(5), Some(cgroups));
    // Holds 200 MiB in a shell variable, with a 32 MiB limit.
    let text = format!(
        "app hog\n  exec {}\n  args -c 'import time; b = bytearray(200 << 20); time.sleep(60)'\n  ram 32mb\n  settle 5s\n",
        python()
    );
    n.sup.converge(&[assignment("hog/1/0", &text)]);
    wait_for(&n.sup, "hog/1/0", "oom-killed", |r| {
        r.state == ReplicaState::OomKilled || r.restarts > 0
    })
    .await;
    wait_for(&n.sup, "hog/1/0", "restarted", |r| r.restarts >= 1).await;
    let log = log_text(&n.sup, "hog/1/0");
    assert!(
        log.contains("killed by the kernel: out of memory (ram 32 MiB)"),
        "{log}"
    );
    n.sup.shutdown().await;
}

#[tokio::test]
async fn a_cpus_quota_holds_a_burner_near_its_share() {
    let dir =
        std::env::temp_dir().join(format!("skr8tr-node-supervisor-cpu-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let Some(cgroups) = real_cgroups(&dir) else {
        return;
    };
    let n = node_with(
        &dir,
        (21180, 21189),
        Duration::from_secs(5),
        Some(cgroups.clone()),
    );
    let text =
        "app burn\n  exec /bin/sh\n  args -c 'while :; do :; done'\n  cpus 0.2\n  settle 50ms\n";
    n.sup.converge(&[assignment("burn/1/0", text)]);
    wait_for(&n.sup, "burn/1/0", "ready", ready).await;
    let cg = cgroups.replica("burn/1/0");
    let used = || cpu_usage_ns(&cgroups, &cg);
    let (t0, u0) = (Instant::now(), used());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let share = (used() - u0) as f64 / t0.elapsed().as_nanos() as f64;
    eprintln!(
        "cpus 0.2 burner: {:.1}% of a core, from its cgroup",
        share * 100.0
    );
    assert!(
        (0.10..=0.30).contains(&share),
        "{:.1}% of a core",
        share * 100.0
    );
    n.sup.shutdown().await;
}

/// CPU time of a replica's cgroup, ns: cpuacct.usage (v1) or cpu.stat's
/// usage_usec (v2).
fn cpu_usage_ns(cgroups: &Cgroups, cg: &skr8tr_node::cgroup::ReplicaCgroup) -> u64 {
    use skr8tr_node::cgroup::Kind;
    match &cgroups.kind {
        Kind::V2 { .. } => {
            let stat = std::fs::read_to_string(cg.dirs[0].join("cpu.stat")).unwrap();
            let usec: u64 = stat
                .lines()
                .find_map(|l| l.strip_prefix("usage_usec "))
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            usec * 1000
        }
        Kind::V1 { .. } => {
            let acct = cg.dirs.last().unwrap().join("cpuacct.usage");
            std::fs::read_to_string(acct)
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        }
    }
}

#[test]
fn restart_policy() {
    use Restart::*;
    for code in [Some(0), Some(1), None] {
        assert!(should_restart(Always, code));
        assert!(!should_restart(Never, code));
    }
    assert!(!should_restart(OnFailure, Some(0)));
    assert!(should_restart(OnFailure, Some(3)));
    assert!(should_restart(OnFailure, None));
}

#[test]
fn backoff_doubles_to_a_cap_and_resets_after_a_long_run() {
    let mut b = Backoff::default();
    let short = Duration::from_millis(5);
    let waits: Vec<u128> = (0..10).map(|_| b.next(short).as_millis()).collect();
    assert_eq!(
        waits,
        [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000]
    );
    assert_eq!(b.next(BACKOFF_RESET_AFTER), BACKOFF_FIRST);
    assert_eq!(b.next(short), BACKOFF_FIRST * 2);
}
