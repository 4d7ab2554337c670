//! Issue 6's behaviour with real processes: requests through `skr8tr
//! ingress` reach every replica and survive a killed replica, a rolling
//! update and a conductor killed with SIGKILL.

use skr8tr_chaos_tests::harness::{Cluster, Load, http_get, wait_for};
use std::collections::BTreeSet;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

fn web(version: &str) -> String {
    format!(
        "app web\n  exec {{workload}}\n  args --version {version}\n  replicas 3\n  health {{ check GET /healthz 200; interval 1s }}\n"
    )
}

fn cluster(name: &str) -> (Cluster, String) {
    let mut c = Cluster::start(name);
    c.start_node("n1");
    c.start_node("n2");
    c.ok(&["up", c.manifest("web.skr8tr", &web("v1")).to_str().unwrap()]);
    c.wait_ready("web", 3, WAIT);
    let ingress = c.start_ingress(&["/:web", "/gone:nothing"]);
    wait_for("the ingress to route", WAIT, || {
        (http_get(&ingress, "/")?.0 == 200).then_some(())
    });
    (c, ingress)
}

#[test]
fn requests_reach_every_replica_and_unrouted_or_empty_apps_answer_404_503() {
    let (c, ingress) = cluster("ingress-basic");
    let mut seen = BTreeSet::new();
    for _ in 0..30 {
        let (status, body) = http_get(&ingress, "/").unwrap();
        assert_eq!(status, 200);
        let replica = body
            .split_whitespace()
            .find_map(|w| w.strip_prefix("replica="))
            .unwrap()
            .to_string();
        seen.insert(replica);
    }
    assert_eq!(seen.len(), 3, "round robin reaches every replica: {seen:?}");
    let (status, body) = http_get(&ingress, "/gone/x").unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("app `nothing` has no ready replica"),
        "{body}"
    );
    drop(c);
}

#[test]
fn only_routed_prefixes_are_served() {
    let mut c = Cluster::start("ingress-404");
    let ingress = c.start_ingress(&["/api:web"]);
    let (status, body) = http_get(&ingress, "/apix").unwrap();
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("no route for /apix"));
}

#[test]
fn a_replica_killed_under_load_costs_no_request() {
    let (c, ingress) = cluster("ingress-kill");
    let load = Load::through(&ingress);
    load.wait_served(50, WAIT);
    let victim = c.replicas("web")[0].pid.unwrap();
    let ok = std::process::Command::new("kill")
        .args(["-9", &victim.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    wait_for("the replica to be back", WAIT, || {
        c.replicas("web")
            .iter()
            .any(|r| r.restarts > 0 && r.state == Some(skr8tr_proto::wire::ReplicaState::Ready))
            .then_some(())
    });
    load.wait_served(50, WAIT);
    let report = load.stop();
    assert!(report.ok > 100, "{report:?}");
    assert!(
        report.failed.is_empty(),
        "retries cover a dead replica: {:?}",
        report.failed
    );
}

#[test]
fn a_rollout_and_a_conductor_restart_through_the_ingress_fail_no_request() {
    let (mut c, ingress) = cluster("ingress-roll");
    let load = Load::through(&ingress);
    load.wait_served(50, WAIT);
    c.ok(&[
        "rollout",
        c.manifest("v2.skr8tr", &web("v2")).to_str().unwrap(),
    ]);
    // The ingress keeps its last snapshot while the conductor is gone.
    c.kill_conductor();
    std::thread::sleep(Duration::from_millis(1500));
    c.start_conductor();
    wait_for("re-sync", WAIT, || (!c.ping()?.resyncing).then_some(()));
    // Traffic after the restart: the tail below is all from then.
    load.wait_served(50, WAIT);
    let report = load.stop();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert!(report.versions.iter().any(|v| v == "v1") && report.versions.iter().any(|v| v == "v2"));
    let tail = &report.versions[report.versions.len().saturating_sub(20)..];
    assert!(tail.iter().all(|v| v == "v2"), "{tail:?}");
}

#[test]
fn upgrade_connections_pass_through_both_ways() {
    use std::io::{Read, Write};
    let mut c = Cluster::start("ingress-upgrade");
    c.start_node("n1");
    let m = c.manifest(
        "echo.skr8tr",
        "app echo\n  exec {workload}\n  args --upgrades\n  health { check GET /healthz 200 }\n",
    );
    c.ok(&["up", m.to_str().unwrap()]);
    c.wait_ready("echo", 1, WAIT);
    let ingress = c.start_ingress(&["/:echo"]);
    wait_for("the ingress to route", WAIT, || {
        (http_get(&ingress, "/")?.0 == 200).then_some(())
    });
    // A test client speaking raw HTTP/1.1, as a WebSocket client would.
    let mut s = std::net::TcpStream::connect(&ingress).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(
        b"GET /echo HTTP/1.1\r\nHost: test\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("upgrade: echo"),
        "{head}"
    );
    for msg in [&b"hello"[..], b"through the ingress"] {
        s.write_all(msg).unwrap();
        let mut back = vec![0u8; msg.len()];
        s.read_exact(&mut back).unwrap();
        assert_eq!(back, msg);
    }
}

#[test]
fn tls_is_terminated_with_a_pem_certificate_and_key() {
    let mut c = Cluster::start("ingress-tls");
    c.start_node("n1");
    c.ok(&["up", c.manifest("web.skr8tr", &web("v1")).to_str().unwrap()]);
    c.wait_ready("web", 3, WAIT);
    let (cert, key) =
        skr8tr_chaos_tests::harness::self_signed(&c.dir, "localhost", "DNS:localhost,IP:127.0.0.1");
    let addr = c.start_ingress_with(
        &["/:web"],
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let port = addr.rsplit(':').next().unwrap().to_string();
    let url = format!("https://localhost:{port}/");
    let body = wait_for("an HTTPS answer", WAIT, || {
        let out = std::process::Command::new("curl")
            .args([
                "-s",
                "--cacert",
                cert.to_str().unwrap(),
                "--resolve",
                &format!("localhost:{port}:127.0.0.1"),
                &url,
            ])
            .output()
            .ok()?;
        let body = String::from_utf8_lossy(&out.stdout).into_owned();
        body.contains("version=v1").then_some(body)
    });
    assert!(body.contains("replica=web/"), "{body}");
    // Plain HTTP to the TLS port is not answered as HTTP.
    assert!(http_get(&addr, "/").is_none_or(|(s, _)| s != 200));
    // A bad key file is a clear error at start.
    let out = c.skr8tr(&[
        "ingress",
        "--listen",
        "127.0.0.1:1",
        "--route",
        "/:web",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        cert.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no private key could be read"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
