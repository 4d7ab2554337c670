//! Issue 11's autoscaler with real processes: an app whose replicas burn
//! CPU per request grows under load through the ingress and shrinks back
//! to its `min` after; every change is in `history` with what was seen,
//! and a conductor kill -9 in between changes nothing.

use skr8tr_chaos_tests::harness::{Cluster, Load, Options, http_get, wait_for};
use skr8tr_proto::wire::AppView;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(90);

const WEB: &str = "app web
  exec {workload}
  args --burn 20ms
  health { check GET /healthz 200; interval 1s }
  scale {
    min 1
    max 4
    cpu-above 50
  }
";

fn app(c: &Cluster) -> AppView {
    let apps: Vec<AppView> = serde_json::from_str(&c.ok(&["--json", "status"])).unwrap();
    apps.into_iter().find(|a| a.name == "web").unwrap()
}

#[test]
fn an_app_grows_under_load_shrinks_after_it_and_a_conductor_kill_changes_nothing() {
    let mut c = Cluster::start_with(
        "autoscale",
        Options {
            conductor_args: ["--scale-out-after", "2s", "--scale-in-after", "4s"]
                .into_iter()
                .chain(["--scale-cooldown", "3s"])
                .map(String::from)
                .collect(),
            ..Options::default()
        },
    );
    c.start_node("n1");
    c.ok(&["up", c.manifest("web.skr8tr", WEB).to_str().unwrap()]);
    c.wait_ready("web", 1, WAIT);
    let ingress = c.start_ingress(&["/:web"]);
    wait_for("the ingress to route", WAIT, || {
        (http_get(&ingress, "/")?.0 == 200).then_some(())
    });
    assert_eq!(app(&c).scale, Some((1, 4)));

    // Outside the range, `scale` is refused; inside, it is the operator's.
    let out = c.skr8tr(&["scale", "web", "9"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("autoscales between 1 and 4"), "{err}");

    let load = Load::through(&ingress);
    let grown = wait_for("more than one replica under load", WAIT, || {
        let a = app(&c);
        (a.desired > 1).then_some(a)
    });
    eprintln!(
        "under load: {} replicas; decision: {:?}; last: {:?}",
        grown.desired, grown.autoscale, grown.last_scale
    );
    let report = load.stop();
    assert!(report.ok > 50, "{report:?}");

    // A conductor kill -9 and restart: the count stays, nothing is
    // decided from the restart itself.
    c.kill_conductor();
    c.start_conductor();
    wait_for("the conductor to re-sync", WAIT, || {
        (!c.ok(&["status"]).contains("re-syncing")).then_some(())
    });
    let after = app(&c);
    assert!(after.desired >= grown.desired, "{after:?} vs {grown:?}");
    let status = c.ok(&["status"]);
    assert!(status.contains("web: autoscales 1-4"), "{status}");

    wait_for("back to one replica without load", WAIT, || {
        (app(&c).desired == 1).then_some(())
    });
    let history = c.ok(&["history", "--app", "web"]);
    assert!(
        history.contains("autoscale web 1 -> ") && history.contains("> 50% for 2s"),
        "{history}"
    );
    assert!(
        history.contains("-> 1: cpu ") && history.contains("< 20% for 4s"),
        "{history}"
    );
    c.wait_ready("web", 1, WAIT);
}
