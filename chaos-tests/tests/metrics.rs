//! Issue 15's `/metrics`: the conductor, a node and the ingress, each
//! started with `--metrics-listen` as an operator would, scraped over
//! HTTP; every page passes `promtool check metrics`, and the counters
//! move as the test acts (a deploy, requests, a refused command, a killed
//! replica).

use skr8tr_chaos_tests::harness::{Cluster, Options, free_port, http_get, kill9, wait_for};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

/// The page at `addr`, checked by `promtool check metrics`. (A page is
/// made at most every 500 ms: after acting, wait for the value with
/// [`wait_value`].)
fn scrape(addr: &str) -> String {
    let (status, page) = http_get(addr, "/metrics").expect("scrape");
    assert_eq!(status, 200, "{page}");
    promtool(&page);
    page
}

fn promtool(page: &str) {
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        // .ci/run installs it (Debian's `prometheus`); a developer
        // machine without it still checks the values below.
        assert!(
            std::env::var_os("CI").is_none(),
            "promtool is missing: apt-get install prometheus"
        );
        eprintln!("promtool not installed: the page's format is not checked");
        return;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n--- page ---\n{page}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The value of the sample named exactly `series` (`name{labels}`).
fn value(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Polls `addr` until `series` has a value `want` accepts; the page that
/// had it, checked by promtool.
fn wait_value(addr: &str, series: &str, want: impl Fn(f64) -> bool) -> String {
    let page = wait_for(&format!("{series} on {addr}"), WAIT, || {
        let page = http_get(addr, "/metrics")?.1;
        value(&page, series).filter(|v| want(*v)).map(|_| page)
    });
    promtool(&page);
    page
}

#[test]
fn every_daemon_serves_metrics_promtool_accepts_and_they_move() {
    let conductor = format!("127.0.0.1:{}", free_port());
    let mut c = Cluster::start_with(
        "metrics",
        Options {
            conductor_args: vec!["--metrics-listen".into(), conductor.clone()],
            ..Options::default()
        },
    );
    let node = format!("127.0.0.1:{}", free_port());
    let ticket = c.dir.join("n1.ticket").display().to_string();
    c.ok(&["ticket", "n1", "--out", &ticket]);
    c.start_node_with("n1", &["--ticket", &ticket, "--metrics-listen", &node]);
    let m = c.manifest(
        "web.skr8tr",
        "app web\n  exec {workload}\n  args --version v1\n  health { check GET /healthz 200; interval 1s }\n",
    );
    c.ok(&["up", m.to_str().unwrap()]);
    let replica = c.wait_ready("web", 1, WAIT).remove(0);
    let ingress_metrics = format!("127.0.0.1:{}", free_port());
    let ingress = c.start_ingress_with(&["/:web"], &["--metrics-listen", &ingress_metrics]);
    wait_for("the ingress to route", WAIT, || {
        (http_get(&ingress, "/")?.0 == 200).then_some(())
    });

    // The conductor: the deploy, a placement, a ready node.
    let page = scrape(&conductor);
    let accepted = r#"skr8tr_conductor_commands_total{kind="up",outcome="accepted"}"#;
    assert_eq!(value(&page, accepted), Some(1.0), "{page}");
    assert_eq!(value(&page, "skr8tr_conductor_placements"), Some(1.0));
    assert_eq!(
        value(&page, r#"skr8tr_conductor_nodes{state="ready"}"#),
        Some(1.0)
    );
    assert!(value(&page, "skr8tr_conductor_commit_duration_seconds_count").unwrap() >= 1.0);
    assert!(value(&page, "skr8tr_conductor_reconciler_passes_total").unwrap() >= 1.0);
    // A command for a missing app is refused, and counted by its code.
    let refused = c.skr8tr(&["scale", "nothing-here", "2"]);
    assert!(!refused.status.success());
    let page = wait_value(
        &conductor,
        r#"skr8tr_conductor_commands_total{kind="scale",outcome="refused"}"#,
        |v| v == 1.0,
    );
    assert!(
        page.lines()
            .any(|l| l.starts_with("skr8tr_conductor_refusals_total{code=") && l.ends_with(" 1")),
        "{page}"
    );

    // The ingress: ten requests through it, all 200, each timed.
    let before = value(
        &scrape(&ingress_metrics),
        r#"skr8tr_ingress_requests_total{route="/",app="web",code="200"}"#,
    )
    .unwrap_or(0.0);
    for _ in 0..10 {
        assert_eq!(http_get(&ingress, "/").unwrap().0, 200);
    }
    let ok = r#"skr8tr_ingress_requests_total{route="/",app="web",code="200"}"#;
    let page = wait_value(&ingress_metrics, ok, |v| v == before + 10.0);
    assert!(value(&page, "skr8tr_ingress_upstream_duration_seconds_count").unwrap() >= 10.0);
    assert!(value(&page, "skr8tr_ingress_open_connections").is_some());

    // The node: one ready replica with its memory; a kill -9 is a restart.
    let page = scrape(&node);
    assert_eq!(
        value(&page, r#"skr8tr_node_replicas{state="ready"}"#),
        Some(1.0)
    );
    let rss = format!(
        r#"skr8tr_node_replica_resident_bytes{{app="web",replica="{}"}}"#,
        replica.replica
    );
    assert!(value(&page, &rss).unwrap() > 0.0, "{page}");
    assert!(
        value(
            &page,
            r#"skr8tr_node_probe_duration_seconds_count{result="pass"}"#
        )
        .unwrap()
            >= 1.0
    );
    assert_eq!(
        value(&page, "skr8tr_node_replica_restarts_total"),
        Some(0.0)
    );
    let pid = replica.pid.expect("a ready replica has a pid");
    kill9(pid);
    wait_value(&node, "skr8tr_node_replica_restarts_total", |v| v == 1.0);
    c.wait_ready("web", 1, WAIT);
    scrape(&node);

    // Nothing but GET /metrics is served there.
    assert_eq!(http_get(&node, "/").unwrap().0, 404);
}
