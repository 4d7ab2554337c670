//! Issue 11's node restarts with real processes: an agent stopped
//! (SIGTERM) or killed (SIGKILL) and started again on the same data
//! directory takes its replicas on as they are, under ingress load; an
//! agent that does not come back leaves nothing behind after its grace; and
//! one that does kills what was taken away while it was gone.

use skr8tr_chaos_tests::harness::{Cluster, Load, alive, http_get, processes_with, wait_for};
use skr8tr_proto::wire::ReplicaState;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

const WEB: &str = "app web
  exec {workload}
  args --version v1
  replicas 2
  health {
    check GET /healthz 200
    interval 500ms
    timeout 300ms
    retries 2
  }
";

/// Forks helpers, one in a session of its own; `N` tells tests apart.
fn forker(n: u32) -> String {
    format!(
        "app tree\n  exec /bin/sh\n  args -c 'sleep {n} & sleep {n} & setsid sleep {n} & wait'\n  settle 100ms\n"
    )
}

fn pids(c: &Cluster, app: &str) -> BTreeMap<String, u32> {
    c.replicas(app)
        .into_iter()
        .filter_map(|r| Some((r.replica, r.pid?)))
        .collect()
}

/// Waits until the current agent of `name` has taken its replicas on.
fn wait_adopted(c: &Cluster, name: &str) {
    wait_for("the new agent to take its replicas on", WAIT, || {
        c.log(&format!("node-{name}.log"))
            .contains("took on replicas left running")
            .then_some(())
    });
}

#[test]
fn an_agent_restarted_after_sigterm_or_sigkill_keeps_every_pid_and_every_request() {
    let mut c = Cluster::start("node-restart");
    // Well above a restart on a slow machine.
    let grace = ["--grace", "20s"];
    c.start_admitted("n1", &grace);
    c.ok(&["up", c.manifest("web.skr8tr", WEB).to_str().unwrap()]);
    c.wait_ready("web", 2, WAIT);
    let ingress = c.start_ingress(&["/:web"]);
    wait_for("the ingress to route", WAIT, || {
        (http_get(&ingress, "/")?.0 == 200).then_some(())
    });
    let before = pids(&c, "web");
    assert_eq!(before.len(), 2);
    let load = Load::through(&ingress);
    load.wait_served(50, WAIT);
    for how in ["SIGTERM", "SIGKILL"] {
        match how {
            "SIGTERM" => c.stop_node("n1"),
            _ => c.kill_node("n1"),
        }
        for pid in before.values() {
            assert!(alive(*pid), "{how}: replica {pid} died with the agent");
        }
        // Requests go on while no agent runs.
        load.wait_served(20, WAIT);
        c.start_node_with("n1", &grace);
        wait_adopted(&c, "n1");
        assert_eq!(c.node_exit("n1"), None, "{how}: the new agent exited");
        let after = wait_for("both replicas ready again", WAIT, || {
            let r = c.replicas("web");
            r.iter()
                .all(|r| r.state == Some(ReplicaState::Ready))
                .then(|| pids(&c, "web"))
                .filter(|p| p.len() == 2)
        });
        assert_eq!(after, before, "{how}: every replica keeps its pid");
        load.wait_served(50, WAIT);
    }
    let report = load.stop();
    eprintln!(
        "agent restarts under load: {} requests, {} failed",
        report.ok,
        report.failed.len()
    );
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(
        c.replicas("web").iter().map(|r| r.restarts).sum::<u32>(),
        0,
        "no restart"
    );

    // Health checking resumed: a replica frozen now fails its probes and
    // is restarted by the new agent.
    let (frozen_id, frozen) = before.iter().next().map(|(r, p)| (r.clone(), *p)).unwrap();
    let stop = std::process::Command::new("kill")
        .args(["-STOP", &frozen.to_string()])
        .status()
        .unwrap();
    assert!(stop.success());
    wait_for("the frozen replica to be restarted", WAIT, || {
        c.replicas("web")
            .into_iter()
            .find(|r| r.replica == frozen_id)
            .filter(|r| r.restarts >= 1 && r.pid != Some(frozen))
    });
    assert!(!alive(frozen), "the frozen process was killed");
}

#[test]
fn a_dead_agent_leaves_no_process_of_its_replicas_after_the_grace() {
    let mut c = Cluster::start("node-grace");
    c.start_admitted("n1", &["--grace", "2s"]);
    c.ok(&[
        "up",
        c.manifest("tree.skr8tr", &forker(1401)).to_str().unwrap(),
    ]);
    let leader = c.wait_ready("tree", 1, WAIT)[0].pid.unwrap();
    wait_for("three helpers", WAIT, || {
        (processes_with("sleep 1401").len() == 3).then_some(())
    });
    let killed = Instant::now();
    c.kill_node("n1");
    assert!(alive(leader), "replicas outlive the agent for the grace");
    wait_for("the tree to stop by itself", WAIT, || {
        (!alive(leader) && processes_with("sleep 1401").is_empty()).then_some(())
    });
    let took = killed.elapsed();
    eprintln!("a dead agent's replicas stopped {took:?} after it died (grace 2s)");
    assert!(
        took >= Duration::from_millis(1500),
        "not before the grace: {took:?}"
    );
}

#[test]
fn a_replica_taken_away_while_its_agent_was_down_is_killed_with_its_tree_on_return() {
    let mut c = Cluster::start("node-moved");
    let grace = ["--grace", "30s"];
    c.start_admitted("n1", &grace);
    c.ok(&[
        "up",
        c.manifest("tree.skr8tr", &forker(1402)).to_str().unwrap(),
    ]);
    let leader = c.wait_ready("tree", 1, WAIT)[0].pid.unwrap();
    wait_for("three helpers", WAIT, || {
        (processes_with("sleep 1402").len() == 3).then_some(())
    });
    c.kill_node("n1");
    c.ok(&["down", "tree"]);
    std::thread::sleep(Duration::from_millis(500));
    assert!(alive(leader), "nobody is there to stop it yet");
    assert_eq!(processes_with("sleep 1402").len(), 3);
    c.start_node_with("n1", &grace);
    wait_for("the taken-away tree to be killed", WAIT, || {
        (!alive(leader) && processes_with("sleep 1402").is_empty()).then_some(())
    });
}
