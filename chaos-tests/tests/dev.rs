//! `skr8tr dev`, the README's main command, on a fresh HOME: it creates a
//! key, runs a whole cluster in one process and serves the example app
//! through the ingress; Ctrl-C (SIGTERM here) takes the replicas down.

use skr8tr_chaos_tests::harness::{alive, free_port, http_get, skr8tr_bin, wait_for};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn skr8tr_dev_serves_the_example_through_the_ingress() {
    let home = std::env::temp_dir().join(format!("skr8tr-dev-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(&home).unwrap();
    let (api, web) = (free_port(), free_port());
    let mut dev = Command::new(skr8tr_bin())
        .args([
            "dev",
            "--api",
            &format!("127.0.0.1:{api}"),
            "--listen",
            &format!("127.0.0.1:{web}"),
        ])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .env("HOME", &home)
        .env_remove("SKR8TR_KEY")
        .env_remove("SKR8TR_CONDUCTOR")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = dev.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut printed = Vec::new();
    let url_line = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("dev printed the URL");
        printed.push(line.clone());
        if line.starts_with("open http://") {
            break line;
        }
    };
    assert!(
        printed
            .iter()
            .any(|l| l.starts_with("created operator key")),
        "{printed:?}"
    );
    assert!(
        printed.iter().any(|l| l.contains("hello: created")),
        "{printed:?}"
    );
    assert_eq!(url_line, format!("open http://127.0.0.1:{web}/"));
    let (status, body) = http_get(&format!("127.0.0.1:{web}"), "/").unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("Hello from Skr8tr"), "{body}");

    // The CLI works against it as printed: the lines after "then, in
    // another terminal:", pasted into a shell whose PATH lacks skr8tr
    // (as after `cargo run`), with the `export` lines it printed for the
    // moved address and the binary's directory, and nothing else.
    let mut block = Vec::new();
    let mut after = false;
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("dev printed what to try");
        if line.starts_with("Ctrl-C stops everything") {
            break;
        }
        if after && !line.trim().is_empty() {
            block.push(line.trim().to_string());
        }
        after |= line == "then, in another terminal:";
    }
    let exports: Vec<&str> = block
        .iter()
        .filter_map(|l| l.strip_prefix("export "))
        .map(|kv| kv.split_once('=').unwrap().0)
        .collect();
    assert_eq!(
        exports,
        ["PATH", "SKR8TR_CONDUCTOR"],
        "the binary is not on PATH, the address moved, the pin is found by default: {block:?}"
    );
    let script = format!("set -e\n{}\nskr8tr ps --json\n", block.join("\n"));
    let ran = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .env("HOME", &home)
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env_remove("SKR8TR_PIN")
        .env_remove("SKR8TR_CONDUCTOR")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&ran.stdout);
    assert!(
        ran.status.success(),
        "{script}\n{out}\n{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    assert!(out.contains("hello"), "{out}");
    let json = &out[out.rfind("\n[").map_or(0, |i| i + 1)..];
    let replicas: Vec<skr8tr_proto::wire::ReplicaView> = serde_json::from_str(json).unwrap();
    assert_eq!(replicas.len(), 2);
    let pids: Vec<u32> = replicas.iter().filter_map(|r| r.pid).collect();

    let ok = Command::new("kill")
        .args(["-TERM", &dev.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let status = dev.wait().unwrap();
    assert!(status.success(), "dev exits cleanly on SIGTERM: {status:?}");
    wait_for(
        "the replicas to stop with dev",
        Duration::from_secs(30),
        || pids.iter().all(|p| !alive(*p)).then_some(()),
    );
    let _ = std::fs::remove_dir_all(&home);
}
