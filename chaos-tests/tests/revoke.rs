//! Issue 12's node revocation with real processes: `skr8tr node revoke`
//! refuses the node's key at once and moves its replicas; a new ticket
//! brings a rebuilt machine back under the same name.

use skr8tr_chaos_tests::harness::{Cluster, wait_for};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

#[test]
fn a_revoked_node_is_refused_its_replicas_move_and_a_new_ticket_admits_a_rebuilt_one() {
    let mut c = Cluster::start("revoke");
    c.start_node("n1");
    c.start_node("n2");
    wait_for("two nodes", WAIT, || {
        (c.ok(&["nodes"]).matches(" ready ").count() == 2).then_some(())
    });
    let m = "app web\n  exec /bin/sleep\n  args 600\n  replicas 2\n  settle 100ms\n";
    c.ok(&["up", c.manifest("web.skr8tr", m).to_str().unwrap()]);
    let placed = c.wait_ready("web", 2, WAIT);
    assert!(placed.iter().any(|r| r.node == "n1"), "{placed:?}");

    let out = c.skr8tr(&["node", "revoke", "nope"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no node `nope` is admitted"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = c.ok(&["node", "revoke", "n1"]);
    assert!(said.contains("node `n1` revoked"), "{said}");

    // Its replicas run elsewhere; its requests are refused.
    wait_for("both replicas on n2", WAIT, || {
        let r = c.replicas("web");
        (r.len() == 2
            && r.iter().all(|r| {
                r.node == "n2" && r.state == Some(skr8tr_proto::wire::ReplicaState::Ready)
            }))
        .then_some(())
    });
    wait_for("n1 refused", WAIT, || {
        c.log("node-n1.log")
            .contains("admitted to this cluster")
            .then_some(())
    });
    assert!(!c.ok(&["nodes"]).contains("n1 "), "{}", c.ok(&["nodes"]));
    assert!(c.ok(&["history"]).contains("node revoke n1"));

    // The machine is rebuilt: a new key in a new data directory, admitted
    // under the old name by a new ticket.
    c.kill_node("n1");
    let ticket = c.dir.join("n1-again.ticket").display().to_string();
    c.ok(&["ticket", "n1", "--out", &ticket]);
    c.start_node_labelled("n1-rebuilt", "n1", &["--ticket", &ticket]);
    wait_for("the rebuilt n1 to join", WAIT, || {
        let nodes = c.ok(&["nodes"]);
        (nodes.matches(" ready ").count() == 2 && nodes.contains("n1 ")).then_some(())
    });
}
