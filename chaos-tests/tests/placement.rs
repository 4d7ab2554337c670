//! Issue 11's placement with real nodes: labels, `constraint`, `spread`,
//! and an app with a volume that waits for its lost node instead of
//! starting empty elsewhere.

use skr8tr_chaos_tests::harness::{Cluster, wait_for};
use std::collections::BTreeMap;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

/// Starts `name` admitted, with `labels`.
fn node(c: &mut Cluster, name: &str, labels: &[&str]) {
    let ticket = c.dir.join(format!("{name}.ticket")).display().to_string();
    c.ok(&["ticket", name, "--out", &ticket]);
    let mut args = vec!["--ticket", ticket.as_str()];
    for l in labels {
        args.extend(["--label", l]);
    }
    c.start_node_with(name, &args);
}

fn nodes_of(c: &Cluster, app: &str) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    for r in c.replicas(app) {
        *out.entry(r.node).or_default() += 1;
    }
    out
}

#[test]
fn constraint_and_spread_place_as_asked_and_a_volume_app_waits_for_its_node() {
    let mut c = Cluster::start("placement");
    node(&mut c, "n1", &["zone=a", "role=db"]);
    node(&mut c, "n2", &["zone=a"]);
    node(&mut c, "n3", &["zone=b"]);
    wait_for("three nodes", WAIT, || {
        (c.ok(&["nodes"]).matches(" ready ").count() == 3).then_some(())
    });
    let nodes = c.ok(&["nodes"]);
    assert!(nodes.contains("role=db,zone=a"), "{nodes}");
    let data = c.dir.join("db-data").display().to_string();
    let manifest = format!(
        "app db\n  exec /bin/sleep\n  args 600\n  settle 100ms\n  replicas 2\n  constraint role=db\n\n\
         app web\n  exec /bin/sleep\n  args 600\n  settle 100ms\n  replicas 2\n  spread zone\n\n\
         app keep\n  exec /bin/sleep\n  args 600\n  settle 100ms\n  volume {{ path {data} }}\n\n\
         app nowhere\n  exec /bin/sleep\n  args 600\n  constraint role=gpu\n"
    );
    c.ok(&["up", c.manifest("apps.skr8tr", &manifest).to_str().unwrap()]);
    c.wait_ready("db", 2, WAIT);
    c.wait_ready("web", 2, WAIT);
    c.wait_ready("keep", 1, WAIT);
    assert_eq!(nodes_of(&c, "db"), BTreeMap::from([("n1".to_string(), 2)]));
    let web = nodes_of(&c, "web");
    assert_eq!(web.get("n3"), Some(&1), "one replica in zone b: {web:?}");
    let status = c.ok(&["status"]);
    assert!(
        status.contains("no live node has the labels role=gpu"),
        "{status}"
    );

    // The volume app's node is lost: it waits there, with the reason.
    let home = c.replicas("keep")[0].node.clone();
    c.kill_node(&home);
    let status = wait_for("keep to be unschedulable", WAIT, || {
        let s = c.ok(&["status"]);
        s.contains("unschedulable: keep/1/0 keeps its volume")
            .then_some(s)
    });
    assert!(status.contains(&format!("on node {home}")), "{status}");
    std::thread::sleep(Duration::from_secs(2));
    let keep = c.replicas("keep");
    assert!(
        keep.iter().all(|r| r.node == home),
        "not started empty elsewhere: {keep:?}"
    );
}
