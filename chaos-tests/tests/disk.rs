//! Issue 13, a full disk: the conductor's data directory on a 16 MiB
//! tmpfs that fills up under ingress load. Commands are refused with
//! `store-full` and what to do, reads and the ingress go on, nothing
//! acknowledged is lost, the log says it once (not four times a second),
//! and commands work again as soon as space is freed, with no restart. A
//! kill -9 afterwards finds every acknowledged command, and the audit
//! chain verifies.

use skr8tr_chaos_tests::harness::{Cluster, Load, Options, http_get, wait_for};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

#[test]
fn a_full_conductor_disk_refuses_commands_with_store_full_and_resumes_when_freed() {
    let mut c = Cluster::start_with(
        "disk-full",
        Options {
            conductor_disk: Some("16m".into()),
            ..Options::default()
        },
    );
    c.start_node("n1");
    c.start_node("n2");
    let web = "app web\n  exec {workload}\n  replicas 2\n  health { check GET /healthz 200; interval 1s }\n";
    c.ok(&["up", c.manifest("web.skr8tr", web).to_str().unwrap()]);
    c.wait_ready("web", 2, WAIT);
    let ingress = c.start_ingress(&["/:web"]);
    wait_for("the ingress to route", WAIT, || {
        (http_get(&ingress, "/")?.0 == 200).then_some(())
    });
    let load = Load::through(&ingress);
    load.wait_served(50, WAIT);

    let filler = c.conductor_disk().unwrap().fill();
    // Whatever redb had room for in pages it already holds is used up
    // first; then every command is refused, each saying why and what to do.
    let mut acknowledged = Vec::new();
    let mut refusal = None;
    for n in 0..200u32 {
        let count = (2 + n % 2).to_string();
        let out = c.skr8tr(&["scale", "web", &count]);
        if out.status.success() {
            acknowledged.push(count);
            continue;
        }
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            stderr.contains("refused (store-full)")
                && stderr.contains("is full")
                && stderr.contains("Free space"),
            "{stderr}"
        );
        refusal = Some(stderr);
        break;
    }
    assert!(refusal.is_some(), "a command was refused on the full disk");
    // Reopening the file after the failure can hand back a page or two,
    // so a later command may still fit: then it is acknowledged, and must
    // be found afterwards like any other. Every refusal is `store-full`.
    for n in [2, 3, 2, 3, 2] {
        let count = n.to_string();
        let out = c.skr8tr(&["scale", "web", &count]);
        if out.status.success() {
            acknowledged.push(count);
        } else {
            assert!(String::from_utf8_lossy(&out.stderr).contains("store-full"));
        }
    }
    // Reads go on: status, history, and the ingress.
    assert!(c.ok(&["status"]).contains("web"));
    assert!(c.ok(&["history", "--limit", "5"]).contains("web"));
    load.wait_served(50, WAIT);
    // A few seconds of reconcile passes failing on the full disk.
    std::thread::sleep(Duration::from_secs(3));
    let log = c.log("conductor.log");
    let said = log.matches("is full").count();
    assert!(
        (1..=3).contains(&said),
        "the full disk is logged once a minute, not per attempt: {said} lines"
    );
    assert!(!log.contains("panicked"), "{log}");

    // Space freed: the next command is taken, with no restart.
    std::fs::remove_file(filler).unwrap();
    c.ok(&["scale", "web", "3"]);
    acknowledged.push("3".into());
    c.wait_ready("web", 3, WAIT);
    load.wait_served(50, WAIT);
    let report = load.stop();
    assert!(
        report.failed.is_empty(),
        "the ingress served throughout: {:?}",
        report.failed
    );

    // After a kill -9, every acknowledged command is in the history, in
    // order, and nothing refused is; the chain verifies.
    c.kill_conductor();
    c.start_conductor();
    let history = c.ok(&["history", "--app", "web", "--limit", "5000"]);
    let found: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split("scale web ").nth(1))
        .map(|rest| rest.split_whitespace().next().unwrap_or(""))
        .collect();
    let expected: Vec<&str> = acknowledged.iter().map(String::as_str).collect();
    assert_eq!(found, expected, "{history}");
    assert!(c.ok(&["history", "--verify"]).contains("verified"));
    c.wait_ready("web", 3, WAIT);
}
