//! Issue 13, maintenance without failed requests: `skr8tr node drain`
//! moves a node's replicas surge-first under ingress load (0 failed),
//! shows the node cordoned, places nothing new there until `uncordon`.

use skr8tr_chaos_tests::harness::{Cluster, Load, http_get, wait_for};
use skr8tr_proto::wire::ReplicaState;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

const WEB: &str = "app web\n  exec {workload}\n  replicas 3\n  health { check GET /healthz 200; interval 500ms }\n";

/// Two nodes, `web` spread over them and routed by an ingress under load.
fn serving(name: &str) -> (Cluster, String, Load) {
    let mut c = Cluster::start(name);
    c.start_node("n1");
    c.start_node("n2");
    wait_for("both nodes ready", WAIT, || {
        (c.ok(&["nodes"]).matches(" ready").count() == 2).then_some(())
    });
    c.ok(&["up", c.manifest("web.skr8tr", WEB).to_str().unwrap()]);
    c.wait_ready("web", 3, WAIT);
    let ingress = c.start_ingress(&["/:web"]);
    wait_for("the ingress to route", WAIT, || {
        (http_get(&ingress, "/")?.0 == 200).then_some(())
    });
    let load = Load::through(&ingress);
    load.wait_served(50, WAIT);
    (c, ingress, load)
}

#[test]
fn node_drain_moves_every_replica_surge_first_with_no_failed_request() {
    let (c, _ingress, load) = serving("drain");
    let before = c.replicas("web");
    assert!(before.iter().any(|r| r.node == "n1"), "{before:?}");
    let out = c.ok(&["node", "drain", "n1"]);
    assert!(out.contains("cordoned"), "{out}");
    let moved = wait_for("every replica on n2, ready", WAIT, || {
        let r = c.replicas("web");
        (r.len() == 3
            && r.iter()
                .all(|r| r.node == "n2" && r.state == Some(ReplicaState::Ready)))
        .then_some(r)
    });
    assert!(
        moved.iter().any(|r| r.replica.contains('.')),
        "the moved ones are successors of their index: {moved:?}"
    );
    let nodes = c.ok(&["nodes"]);
    assert!(
        nodes
            .lines()
            .any(|l| l.starts_with("n1") && l.contains("ready, cordoned")),
        "{nodes}"
    );
    // Nothing new goes to n1 while it is cordoned.
    c.ok(&["scale", "web", "4"]);
    c.wait_ready("web", 4, WAIT);
    assert!(c.replicas("web").iter().all(|r| r.node == "n2"));
    load.wait_served(50, WAIT);
    let report = load.stop();
    assert!(
        report.failed.is_empty(),
        "a drain fails no request: {:?}",
        report.failed
    );
    // Signed and audited, both ways; uncordoned, n1 takes replicas again.
    c.ok(&["node", "uncordon", "n1"]);
    c.ok(&["scale", "web", "6"]);
    wait_for("a replica on n1 again", WAIT, || {
        c.replicas("web")
            .iter()
            .any(|r| r.node == "n1")
            .then_some(())
    });
    let history = c.ok(&["history", "--limit", "100"]);
    assert!(
        history.contains("node drain n1") && history.contains("node uncordon n1"),
        "{history}"
    );
    let err = c.skr8tr(&["node", "drain", "nosuch"]);
    assert!(!err.status.success());
    assert!(String::from_utf8_lossy(&err.stderr).contains("no node `nosuch` is admitted"));
}

/// A host shutdown: `skr8tr node leave` (what the systemd unit runs at
/// shutdown) reports the node leaving, its replicas move away surge-first
/// and leave the registry, the ingress is seen to drop them, and only then
/// are they stopped: 0 failed requests, and nothing of n1 left running.
#[test]
fn a_node_leaving_with_its_replicas_fails_no_request() {
    let (mut c, _ingress, load) = serving("leave");
    let on_n1: Vec<u32> = c
        .replicas("web")
        .iter()
        .filter(|r| r.node == "n1")
        .filter_map(|r| r.pid)
        .collect();
    assert!(!on_n1.is_empty());
    let agent = c.node_pid("n1").unwrap();
    let data = c.dir.join("node-n1").display().to_string();
    let out = c.ok(&["node", "leave", "--data", &data]);
    assert!(out.contains("left"), "{out}");
    assert!(
        !skr8tr_chaos_tests::harness::alive(agent),
        "the agent has exited when `leave` returns"
    );
    assert_eq!(c.node_exit("n1").map(|s| s.success()), Some(true));
    for pid in &on_n1 {
        assert!(
            !skr8tr_chaos_tests::harness::alive(*pid),
            "replica {pid} of n1 was stopped"
        );
    }
    let log = c.log("node-n1.log");
    assert!(
        log.contains("nothing of this node is routed any more"),
        "it waited for the routers, not for its timeout: {log}"
    );
    let r = c.wait_ready("web", 3, WAIT);
    assert!(r.iter().all(|r| r.node == "n2"), "{r:?}");
    load.wait_served(50, WAIT);
    let report = load.stop();
    assert!(
        report.failed.is_empty(),
        "a node leaving fails no request: {:?}",
        report.failed
    );
    // A stale pid file names no agent: a clear error, nothing signalled.
    std::fs::write(c.dir.join("node-n1/agent.pid"), "1\n").unwrap();
    let err = c.skr8tr(&["node", "leave", "--data", &data]);
    assert!(!err.status.success());
    assert!(
        String::from_utf8_lossy(&err.stderr).contains("is not the skr8tr node agent"),
        "{}",
        String::from_utf8_lossy(&err.stderr)
    );
}
