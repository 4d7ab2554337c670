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
