//! The README's walk-through ("A cluster of separate daemons") run as a
//! script by bash, as a new user would paste it: every line as printed,
//! under `set -euo pipefail`, so a command that fails or was renamed fails
//! the test. Three things differ, each by a fixed rewrite the test checks
//! it can make: the release build on its first line becomes the binaries
//! this test was built with, `/tmp/sk` a directory of the test's own, and
//! the conductor's and ingress's fixed ports free ones (other tests run
//! beside it).

use skr8tr_chaos_tests::harness::{free_port, http_get, skr8tr_bin, workload_bin};
use std::process::Command;
use std::time::{Duration, Instant};

const BUILD_LINE: &str = "cargo build --release -p skr8tr -p skr8tr-chaos-tests && export PATH=$PWD/target/release:$PATH";

/// The first `sh` block after `heading`.
fn block(readme: &str, heading: &str) -> String {
    let from = readme.find(heading).expect("the README has the section");
    let rest = &readme[from..];
    let start = rest.find("```sh\n").expect("a sh block") + "```sh\n".len();
    let end = rest[start..].find("```").expect("the block ends");
    rest[start..start + end].to_string()
}

/// `text` with `from` replaced by `to`, which must occur.
fn rewrite(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "the README no longer has `{from}`");
    text.replace(from, to)
}

#[test]
fn the_readme_walkthrough_runs_as_printed() {
    let readme = include_str!("../../README.md");
    let printed = block(readme, "## A cluster of separate daemons");
    let dir = std::env::temp_dir().join(format!("skr8tr-readme-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("home")).unwrap();
    let bins = skr8tr_bin().parent().unwrap().display().to_string();
    let (api, edge) = (free_port(), free_port());
    let mut script = rewrite(&printed, BUILD_LINE, &format!("export PATH={bins}:$PATH"));
    script = rewrite(
        &script,
        "$PWD/target/release/skr8tr-workload",
        &workload_bin().display().to_string(),
    );
    script = rewrite(&script, "/tmp/sk", &dir.display().to_string());
    script = rewrite(
        &script,
        "skr8tr conductor --data",
        &format!("skr8tr conductor --listen 127.0.0.1:{api} --data"),
    );
    script = rewrite(&script, "127.0.0.1:8080", &format!("127.0.0.1:{edge}"));
    // The replicas must be serving through the ingress before the
    // walk-through goes on to logs, scale and the rollout.
    script = rewrite(
        &script,
        "skr8tr logs web ",
        &format!(
            "for i in $(seq 150); do curl -sf http://127.0.0.1:{edge}/ >/dev/null && break; sleep 0.2; done\n\
             curl -sf http://127.0.0.1:{edge}/ >/dev/null\nskr8tr logs web "
        ),
    );
    let script = format!("set -euo pipefail\nmkdir -p {}\n{script}", dir.display());
    let mut child = Command::new("setsid")
        .args(["bash", "-c", &script])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .env("HOME", dir.join("home"))
        .env("SKR8TR_CONDUCTOR", format!("https://127.0.0.1:{api}"))
        .env_remove("SKR8TR_PIN")
        .env_remove("SKR8TR_KEY")
        .stdout(std::fs::File::create(dir.join("out.log")).unwrap())
        .stderr(std::fs::File::create(dir.join("err.log")).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if started.elapsed() > Duration::from_secs(240) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let out = std::fs::read_to_string(dir.join("out.log")).unwrap_or_default();
    let err = std::fs::read_to_string(dir.join("err.log")).unwrap_or_default();
    // `down web` was the last line: its replicas stop within their drain;
    // then the daemons the script left running go with its process group.
    let stopped = wait_down(edge);
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .status();
    let _ = child.wait();
    assert!(
        status.is_some_and(|s| s.success()),
        "the README's walk-through failed ({status:?}):\n--- stdout\n{out}\n--- stderr\n{err}"
    );
    for said in ["created, generation 1", "done in", "audit log verified"] {
        assert!(out.contains(said), "no `{said}` in:\n{out}\n{err}");
    }
    assert!(stopped, "web still served after `skr8tr down web`");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Whether the ingress stops serving `web` within 30 s.
fn wait_down(edge: u16) -> bool {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        match http_get(&format!("127.0.0.1:{edge}"), "/") {
            Some((200, _)) => std::thread::sleep(Duration::from_millis(200)),
            _ => return true,
        }
    }
    false
}
