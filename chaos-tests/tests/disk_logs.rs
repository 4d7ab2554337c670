//! Replica output kept on disk (issue 15): `logs --previous` shows a
//! crashed run's last words; `logs` after an agent restart, and after the
//! replicas themselves were gone (a reboot: a new process, the same
//! replica), still shows what came before; the files stay within their
//! rotation bound however much a replica writes.

use skr8tr_chaos_tests::harness::{Cluster, alive, wait_for};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

/// Each run numbers itself (a counter file), says so on stdout, and says
/// its last words on stderr before it exits 3.
fn crasher(counter: &std::path::Path) -> String {
    let f = counter.display();
    format!(
        "app crash\n  exec /bin/sh\n  args -c 'n=$(( $(cat {f} 2>/dev/null || echo 0) + 1 )); echo $n > {f}; echo \"run $n starts\"; sleep 1; echo \"last words of run $n\" >&2; exit 3'\n  settle 100ms\n"
    )
}

const TALKER: &str = "app talker
  exec /bin/sh
  args -c 'echo \"hello from $$\"; while true; do sleep 1; done'
  settle 100ms
";

/// The number of each `run N starts` line of `text`.
fn runs(text: &str) -> Vec<u32> {
    text.lines()
        .filter_map(|l| {
            let rest = &l[l.find("run ")? + 4..];
            rest.strip_suffix(" starts")?.parse().ok()
        })
        .collect()
}

#[test]
fn previous_shows_a_crashed_runs_last_words_and_logs_outlive_the_agent_and_the_process() {
    let mut c = Cluster::start("disk-logs");
    // Short files: a crash loop rotates them quickly, within three.
    let flags = ["--grace", "3s", "--log-file-mib", "1", "--log-files", "2"];
    c.start_admitted("n1", &flags);
    let counter = c.dir.join("runs");
    c.ok(&[
        "up",
        c.manifest("crash.skr8tr", &crasher(&counter))
            .to_str()
            .unwrap(),
    ]);
    c.ok(&["up", c.manifest("talker.skr8tr", TALKER).to_str().unwrap()]);

    // A crash loop: the previous run is a whole one, its number once, with
    // its last words; the current ring holds later runs too.
    wait_for("two restarts", WAIT, || {
        c.replicas("crash")
            .first()
            .filter(|r| r.restarts >= 2)
            .map(|_| ())
    });
    let previous = c.ok(&["logs", "crash", "--previous"]);
    eprintln!("crash previous:\n{previous}");
    let numbers = runs(&previous);
    assert_eq!(numbers.len(), 1, "one run: {previous}");
    let n = numbers[0];
    assert!(
        previous.contains(&format!("last words of run {n}")),
        "{previous}"
    );
    // Stderr lines are marked, as in `logs`.
    assert!(
        previous.lines().any(|l| l.contains("! last words")),
        "{previous}"
    );
    let current = c.ok(&["logs", "crash"]);
    assert!(runs(&current).iter().any(|m| *m > n), "{current}");
    // Following a previous run means nothing: refused with the reason.
    let both = c.skr8tr(&["logs", "crash", "--previous", "-f"]);
    assert_eq!(both.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&both.stderr).contains("cannot be used with"));
    // An app without a restart yet has no previous run, and says so.
    let talker = c.wait_ready("talker", 1, WAIT)[0].clone();
    let pid = talker.pid.unwrap();
    let none = c.ok(&["logs", "talker", "--previous"]);
    assert!(none.trim().is_empty(), "{none}");
    let why = c.skr8tr(&["logs", "talker", "--previous"]);
    assert!(
        String::from_utf8_lossy(&why.stderr).contains("no earlier run"),
        "{}",
        String::from_utf8_lossy(&why.stderr)
    );

    // The agent restarts (an upgrade): the replica keeps running, and its
    // output from before is still there, in `logs` and in the audit log.
    let hello = format!("hello from {pid}");
    assert!(c.ok(&["logs", "talker"]).contains(&hello));
    c.stop_node("n1");
    c.start_node_with("n1", &flags);
    wait_for("the new agent to take its replicas on", WAIT, || {
        c.log("node-n1.log")
            .contains("took on replicas left running")
            .then_some(())
    });
    let after = c.ok(&["logs", "talker"]);
    assert!(after.contains(&hello), "after an agent restart: {after}");
    assert!(alive(pid));

    // Killed with its replicas (as in a reboot): the agent is killed and
    // its shims stop the replicas after the grace; the next agent starts
    // the same replica anew and shows both runs.
    c.kill_node("n1");
    wait_for("the replica to be stopped by its shim", WAIT, || {
        (!alive(pid)).then_some(())
    });
    c.start_node_with("n1", &flags);
    let again = wait_for("the talker to run again", WAIT, || {
        c.replicas("talker")
            .into_iter()
            .find(|r| r.pid.is_some_and(|p| p != pid) && r.replica == talker.replica)
    });
    let new_hello = format!("hello from {}", again.pid.unwrap());
    let both = wait_for("the new run's first line", WAIT, || {
        let out = c.ok(&["logs", "talker"]);
        out.contains(&new_hello).then_some(out)
    });
    assert!(both.contains(&hello), "the old run is still shown: {both}");
    let previous = c.ok(&["logs", "talker", "--previous"]);
    eprintln!("both runs:\n{both}\nprevious:\n{previous}");
    assert!(previous.contains(&hello), "{previous}");
    assert!(!previous.contains(&new_hello), "{previous}");

    // However long the crash loop ran, each replica keeps at most
    // `--log-files` files of about `--log-file-mib`.
    let logs = c.dir.join("node-n1").join("logs");
    for dir in std::fs::read_dir(&logs).unwrap() {
        let dir = dir.unwrap().path();
        let files: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert!(files.len() <= 2, "{}: {files:?}", dir.display());
    }
    // Removing an app removes its files.
    let before = std::fs::read_dir(&logs).unwrap().count();
    c.ok(&["down", "crash"]);
    wait_for("the crash app's files to go", WAIT, || {
        (std::fs::read_dir(&logs).unwrap().count() == before - 1).then_some(())
    });
}
