//! Issue 13, clocks: a node whose clock runs 60 s ahead of the
//! conductor's (faked with libfaketime, as NTP gone wrong would) still
//! joins and runs its replicas — sessions need no clock — and `skr8tr
//! nodes` and the conductor's log say `clock-skew` with the offset.

use skr8tr_chaos_tests::harness::{Cluster, wait_for};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

#[test]
fn a_node_whose_clock_is_a_minute_ahead_shows_clock_skew() {
    assert!(
        std::path::Path::new(LIBFAKETIME).exists(),
        "libfaketime (apt-get install faketime; .ci/run installs it)"
    );
    let mut c = Cluster::start("clock-skew");
    c.start_node("n1");
    c.options_mut().node_env = vec![
        ("LD_PRELOAD".into(), LIBFAKETIME.into()),
        ("FAKETIME".into(), "+60s".into()),
    ];
    c.start_node("n2");
    let nodes = wait_for("both nodes, one skewed", WAIT, || {
        let out = c.ok(&["nodes"]);
        (out.lines().filter(|l| l.contains(" ready")).count() == 2).then_some(out)
    });
    let n2 = nodes.lines().find(|l| l.starts_with("n2 ")).unwrap();
    assert!(
        n2.contains("clock-skew +60s") || n2.contains("clock-skew +59s"),
        "{nodes}"
    );
    let n1 = nodes.lines().find(|l| l.starts_with("n1 ")).unwrap();
    assert!(!n1.contains("clock-skew"), "{nodes}");
    assert!(c.log("conductor.log").contains("clock-skew"), "logged once");
}
