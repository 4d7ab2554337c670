//! Issue 13, `disconnect { stop-after }`: an app that must never run
//! twice. Its node frozen (the agent SIGSTOPped: no lease is renewed, as
//! in a partition) stops the replica by itself after `stop-after`, and the
//! conductor starts a replacement only after `stop-after` + `drain` + 4 s
//! of silence. A sampler checks every 20 ms that at no instant do two
//! copies run.

use skr8tr_chaos_tests::harness::{Cluster, processes_with, wait_for, workload_bin};
use skr8tr_proto::wire::ReplicaState;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

/// Counts the copies of the singleton every 20 ms: the most seen at once,
/// and whether a moment with none was seen.
struct Sampler {
    stop: Arc<AtomicBool>,
    most: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start(prefix: String) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let most = Arc::new(AtomicUsize::new(0));
        let (s, m) = (stop.clone(), most.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let n = processes_with(&prefix).len();
                m.fetch_max(n, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Sampler {
            stop,
            most,
            thread: Some(thread),
        }
    }

    fn most(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.most.load(Ordering::Relaxed)
    }
}

#[test]
fn a_stop_after_app_on_a_frozen_node_never_runs_twice() {
    let mut c = Cluster::start("stop-after");
    c.start_node("n1");
    let m = c.manifest(
        "worker.skr8tr",
        "app worker\n  exec {workload}\n  args --version singleton\n  drain 1s\n  disconnect { stop-after 4s }\n  health { check GET /healthz 200; interval 500ms }\n",
    );
    c.ok(&["up", m.to_str().unwrap()]);
    let first = c.wait_ready("worker", 1, WAIT).remove(0);
    assert_eq!(first.node, "n1");
    c.start_node("n2");
    wait_for("n2 ready", WAIT, || {
        (c.ok(&["nodes"]).matches(" ready").count() == 2).then_some(())
    });
    let prefix = format!("{} --version singleton", workload_bin().display());
    assert_eq!(processes_with(&prefix).len(), 1);
    let sampler = Sampler::start(prefix.clone());

    let agent = c.node_pid("n1").unwrap().to_string();
    let signal = |sig: &str| {
        assert!(
            std::process::Command::new("kill")
                .args([sig, &agent])
                .status()
                .unwrap()
                .success()
        );
    };
    signal("-STOP");
    let frozen = Instant::now();
    // The shim stops it once its lease (4 s from the last contact) ends.
    wait_for("the frozen node's copy to stop", WAIT, || {
        (!skr8tr_chaos_tests::harness::alive(first.pid.unwrap())).then_some(())
    });
    let stopped_after = frozen.elapsed();
    assert!(
        stopped_after >= Duration::from_secs(3) && stopped_after < Duration::from_secs(8),
        "stopped {stopped_after:?} into the freeze"
    );
    let moved = wait_for("the replacement on n2, ready", WAIT, || {
        c.replicas("worker")
            .into_iter()
            .find(|r| r.node == "n2" && r.state == Some(ReplicaState::Ready))
    });
    let replaced_after = frozen.elapsed();
    // stop-after 4 s + drain 1 s + 4 s, counted from the last report.
    assert!(
        replaced_after >= Duration::from_secs(8),
        "replaced only {replaced_after:?} into the freeze"
    );
    signal("-CONT");
    // The woken node runs nothing of it again.
    std::thread::sleep(Duration::from_secs(3));
    let now = c.wait_ready("worker", 1, WAIT);
    assert_eq!((now[0].node.as_str(), now[0].pid), ("n2", moved.pid));
    assert_eq!(
        sampler.most(),
        1,
        "two copies of a stop-after app ran at once"
    );
}

/// A plain agent restart (SIGTERM, start again) keeps a `stop-after`
/// replica running, same pid: the new agent sends no lease before its
/// first contact, so the previous agent's lease runs on meanwhile.
#[test]
fn an_agent_restart_keeps_a_stop_after_replica_running() {
    let mut c = Cluster::start("stop-after-restart");
    c.start_node("n1");
    let m = c.manifest(
        "worker.skr8tr",
        "app worker\n  exec {workload}\n  args --version keeper\n  disconnect { stop-after 6s }\n  health { check GET /healthz 200; interval 500ms }\n",
    );
    c.ok(&["up", m.to_str().unwrap()]);
    let before = c.wait_ready("worker", 1, WAIT).remove(0);
    c.stop_node("n1");
    std::thread::sleep(Duration::from_millis(500));
    c.start_node_with("n1", &[]);
    std::thread::sleep(Duration::from_secs(8));
    let after = c.wait_ready("worker", 1, WAIT).remove(0);
    assert_eq!(after.pid, before.pid, "the same process runs on");
    assert_eq!(after.restarts, 0);
}
