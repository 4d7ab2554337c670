//! Issue 12, what crosses the wire: a tcpdump capture of the conductor's
//! port during `up` with a secret, a rollout, `logs` and `logs -f`, and
//! node sync holds neither the secret's value nor any manifest text nor
//! any API path — while the same capture shows the plain HTTP sent to the
//! ingress's public port, so a capture that saw nothing cannot pass.

use skr8tr_chaos_tests::harness::{Cluster, http_get, wait_for};
use std::process::{Command, Stdio};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);
const SECRET: &str = "hunter2-wire-canary";
const MARKER: &str = "manifest-canary-text";

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn a_capture_of_the_conductor_port_holds_no_secret_and_no_manifest_text() {
    let mut c = Cluster::start("wire");
    c.start_node("n1");
    let ingress = c.start_ingress(&["/:web"]);
    let ingress_port = ingress.rsplit(':').next().unwrap().to_string();
    let pcap = c.data().with_file_name("wire.pcap");
    let filter = format!("tcp port {} or tcp port {ingress_port}", c.port);
    let mut dump = Command::new("tcpdump")
        .args(["-i", "lo", "-U", "-s", "0", "-w"])
        .arg(&pcap)
        .arg(&filter)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("tcpdump (apt-get install tcpdump; .ci/run installs it)");
    wait_for("tcpdump to start", WAIT, || pcap.exists().then_some(()));
    std::thread::sleep(Duration::from_millis(500));

    let manifest = |v: &str| {
        format!(
            "app web\n  exec {{workload}}\n  args --version {v}\n  env {{ MARKER {MARKER} }}\n  \
             secret {{ DB_PASS {SECRET} }}\n  health {{ check GET /healthz 200 }}\n"
        )
    };
    c.ok(&[
        "up",
        c.manifest("v1.skr8tr", &manifest("v1")).to_str().unwrap(),
    ]);
    c.wait_ready("web", 1, WAIT);
    c.ok(&[
        "rollout",
        c.manifest("v2.skr8tr", &manifest("v2")).to_str().unwrap(),
    ]);
    c.ok(&["logs", "web"]);
    let mut follow = c
        .command(&["logs", "web", "-f"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let _ = follow.kill();
    let _ = follow.wait();
    c.ok(&["status"]);
    c.ok(&["history"]);
    // Node sync and the ingress's registry watch went on throughout; and a
    // request to the ingress, in the clear by design, for the capture to
    // show.
    wait_for("the ingress to serve", WAIT, || {
        http_get(&ingress, "/").filter(|(s, _)| *s == 200)
    });
    std::thread::sleep(Duration::from_secs(1));
    let _ = Command::new("kill")
        .args(["-INT", &dump.id().to_string()])
        .status();
    let _ = dump.wait();
    let bytes = std::fs::read(&pcap).unwrap();
    assert!(
        bytes.len() > 20_000,
        "the capture saw traffic: {} bytes",
        bytes.len()
    );
    assert!(
        contains(&bytes, "GET / HTTP/1.1"),
        "the capture holds payloads"
    );
    for clear in [SECRET, MARKER, "app web", "/v1/", "DB_PASS"] {
        assert!(
            !contains(&bytes, clear),
            "`{clear}` crossed the wire in clear"
        );
    }
}
