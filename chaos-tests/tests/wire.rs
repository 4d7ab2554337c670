//! Issue 12, what crosses the wire and what rests on disk. A tcpdump
//! capture of the conductor's port during `up` with secrets (one written
//! inline, one read from a file with `@`), a rollout, `logs`, `logs -f`,
//! `secret set` under load and node sync holds no secret value, no
//! manifest text and no API path — while the same capture shows the plain
//! HTTP sent to the ingress's public port, so a capture that saw nothing
//! cannot pass. Afterwards no secret value is found in the conductor's or
//! the node's data directory, nor in any daemon's log, yet the replica's
//! environment holds each value, the rotated one included, and no request
//! failed during the rotation.

use skr8tr_chaos_tests::harness::{Cluster, http_get, wait_for};
use skr8tr_chaos_tests::load::Load;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);
const SECRET: &str = "hunter2-wire-canary";
const FROM_FILE: &str = "token-from-file-canary";
const ROTATED: &str = "rotated-wire-canary";
const MARKER: &str = "manifest-canary-text";

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Every file under `dir`, read whole (`grep -a -r`).
fn files_under(dir: &std::path::Path, out: &mut Vec<(String, Vec<u8>)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            files_under(&path, out);
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path.display().to_string(), bytes));
        }
    }
}

fn environ(pid: u32) -> String {
    String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default())
        .replace('\0', "\n")
}

#[test]
fn secrets_cross_no_wire_and_rest_nowhere_in_clear_and_rotate_under_load() {
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

    c.manifest("token.txt", &format!("{FROM_FILE}\n"));
    let manifest = |v: &str| {
        format!(
            "app web\n  exec {{workload}}\n  args --version {v}\n  env {{ MARKER {MARKER} }}\n  \
             secret {{ DB_PASS {SECRET}; TOKEN @token.txt }}\n  health {{ check GET /healthz 200 }}\n"
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
    let ready = c.wait_ready("web", 1, WAIT);
    let env = environ(ready[0].pid.unwrap());
    assert!(env.contains(&format!("DB_PASS={SECRET}\n")), "{env}");
    assert!(
        env.contains(&format!("TOKEN={FROM_FILE}\n")),
        "read from @token.txt: {env}"
    );

    // Rotation under load through the ingress: no request fails.
    wait_for("the ingress to serve", WAIT, || {
        http_get(&ingress, "/").filter(|(s, _)| *s == 200)
    });
    let load = Load::through(&ingress);
    load.wait_served(20, WAIT);
    let mut set = c
        .command(&["secret", "set", "web", "DB_PASS"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    set.stdin
        .take()
        .unwrap()
        .write_all(format!("{ROTATED}\n").as_bytes())
        .unwrap();
    let out = set.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "secret set: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    load.wait_served(20, WAIT);
    let report = load.stop();
    assert!(
        report.failed.is_empty(),
        "{:?}",
        &report.failed[..report.failed.len().min(5)]
    );
    let ready = c.wait_ready("web", 1, WAIT);
    assert_eq!(ready[0].generation, 3, "a new generation: {ready:?}");
    let env = environ(ready[0].pid.unwrap());
    assert!(env.contains(&format!("DB_PASS={ROTATED}\n")), "{env}");
    assert!(env.contains(&format!("TOKEN={FROM_FILE}\n")), "{env}");
    assert!(c.ok(&["history"]).contains("secret set web DB_PASS"));
    c.ok(&["history", "--verify"]);

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
    for clear in [
        SECRET, FROM_FILE, ROTATED, MARKER, "app web", "/v1/", "DB_PASS",
    ] {
        assert!(
            !contains(&bytes, clear),
            "`{clear}` crossed the wire in clear"
        );
    }

    // At rest: the conductor's and the node's data, and every log.
    let mut files = Vec::new();
    files_under(&c.data(), &mut files);
    files_under(&c.data().with_file_name("node-n1"), &mut files);
    for log in ["conductor.log", "node-n1.log", "ingress.log"] {
        let path = c.data().with_file_name(log);
        files.push((log.to_string(), std::fs::read(&path).unwrap()));
    }
    assert!(
        files.iter().any(|(p, _)| p.ends_with("skr8tr.redb")),
        "the store was searched"
    );
    for (path, bytes) in &files {
        for clear in [SECRET, FROM_FILE, ROTATED] {
            assert!(!contains(bytes, clear), "`{clear}` is in clear in {path}");
        }
    }
}

/// A client that pins another identity than the conductor's — the CLI, a
/// node, an ingress — is refused at the handshake with both fingerprints
/// named; a plain-HTTP client is told how to connect.
#[test]
fn a_wrong_pin_is_refused_by_the_cli_a_node_and_an_ingress_and_plain_http_is_told_why() {
    let mut c = Cluster::start("wrong-pin");
    let wrong = format!("sha256:{}", "ab".repeat(32));
    let right = c.pin().unwrap().to_string();
    let out = c.skr8tr(&["status", "--pin", &wrong]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains(&wrong) && err.contains(&right), "{err}");
    c.start_node_with("n1", &["--pin", &wrong]);
    wait_for("the node to refuse the conductor", WAIT, || {
        let log = c.log("node-n1.log");
        (log.contains(&wrong) && log.contains(&right)).then_some(())
    });
    assert!(!c.ok(&["nodes"]).contains("n1"), "it never joined");
    let ticket = c.data().with_file_name("edge.ticket");
    c.ok(&[
        "ticket",
        "--ingress",
        "edge",
        "--out",
        ticket.to_str().unwrap(),
    ]);
    let addr = format!("127.0.0.1:{}", skr8tr_chaos_tests::harness::free_port());
    let mut ingress = c
        .command(&[
            "ingress",
            "--listen",
            &addr,
            "--route",
            "/:web",
            "--name",
            "edge",
            "--ticket",
            ticket.to_str().unwrap(),
            "--pin",
            &wrong,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = ingress.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let line = loop {
        let line = rx
            .recv_timeout(WAIT)
            .expect("the ingress says why it has no registry");
        if line.contains("registry:") {
            break line;
        }
    };
    let _ = ingress.kill();
    let _ = ingress.wait();
    assert!(line.contains(&wrong) && line.contains(&right), "{line}");

    // Plain HTTP to the conductor: a 400 that says what to do.
    let port = c.url.rsplit(':').next().unwrap().to_string();
    let (status, body) = http_get(&format!("127.0.0.1:{port}"), "/v1/status").unwrap();
    assert_eq!(status, 400);
    assert!(
        body.contains("HTTPS only") && body.contains("--pin"),
        "{body}"
    );
}
