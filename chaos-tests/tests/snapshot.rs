//! Snapshots (issue 15): `snapshot save` under a stream of commands, the
//! file verified offline, damaged or wrong-keyed restores refused with
//! nothing written, and a good restore started in place of the old
//! conductor: same apps, same keys, same replica pids (nothing placed
//! twice), the chain verifying with the restore recorded.

use skr8tr_chaos_tests::harness::{Cluster, wait_for};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

const APPS: &str = "app web
  exec /bin/sleep
  args 1500
  replicas 3
  settle 100ms

app vault
  exec /bin/sh
  args -c 'test -n \"$TOKEN\" && exec sleep 1501'
  settle 100ms
  secret { TOKEN not-in-the-snapshot-in-clear }

app churn
  exec /bin/sleep
  args 1502
  settle 100ms
";

fn pids(c: &Cluster, app: &str) -> BTreeMap<String, u32> {
    c.replicas(app)
        .into_iter()
        .filter_map(|r| Some((r.replica, r.pid?)))
        .collect()
}

#[test]
fn a_snapshot_taken_under_load_restores_into_a_conductor_that_resumes() {
    let mut c = Cluster::start("snapshot");
    c.start_node("n1");
    let m = c.manifest("apps.skr8tr", APPS);
    c.ok(&["up", m.to_str().unwrap(), "--wait"]);
    let web = pids(&c, "web");
    let vault = pids(&c, "vault");
    assert_eq!((web.len(), vault.len()), (3, 1));

    // Commands stream in while the snapshot is taken.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let churn = {
        let (stop, sent) = (stop.clone(), sent.clone());
        let cmd = c.command(&["scale", "churn", "2"]).get_program().to_owned();
        let envs: Vec<(std::ffi::OsString, Option<std::ffi::OsString>)> = c
            .command(&[])
            .get_envs()
            .map(|(k, v)| (k.to_owned(), v.map(|v| v.to_owned())))
            .collect();
        std::thread::spawn(move || {
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) && n < 400 {
                let mut command = std::process::Command::new(&cmd);
                for (k, v) in &envs {
                    match v {
                        Some(v) => command.env(k, v),
                        None => command.env_remove(k),
                    };
                }
                let replicas = if n.is_multiple_of(2) { "2" } else { "1" };
                let _ = command.args(["scale", "churn", replicas]).output();
                n += 1;
                sent.store(n, Ordering::Relaxed);
            }
            n
        })
    };
    wait_for("commands streaming in", WAIT, || {
        (sent.load(Ordering::Relaxed) >= 5).then_some(())
    });
    let snap = c.dir.join("cluster.snap");
    let snap_s = snap.to_str().unwrap().to_string();
    let saved = c.ok(&["snapshot", "save", &snap_s]);
    assert!(saved.contains("written to"), "{saved}");
    stop.store(true, Ordering::Relaxed);
    let commands = churn.join().unwrap();
    assert!(commands > 0);
    // The secret is in the file sealed only.
    let bytes = std::fs::read(&snap).unwrap();
    assert!(
        !bytes
            .windows(b"not-in-the-snapshot-in-clear".len())
            .any(|w| w == b"not-in-the-snapshot-in-clear"),
        "a secret in clear in the snapshot"
    );
    // An existing file is never overwritten.
    let again = c.skr8tr(&["snapshot", "save", &snap_s]);
    assert_eq!(again.status.code(), Some(1));

    // Verified offline, signature included.
    let key = c.data().join("conductor.pub").display().to_string();
    let verified = c.ok(&[
        "history",
        "--verify",
        "--snapshot",
        &snap_s,
        "--conductor-key",
        &key,
    ]);
    assert!(verified.contains("snapshot verified"), "{verified}");
    assert!(
        verified.contains("signed by the conductor key given"),
        "{verified}"
    );

    // A damaged copy fails verification and restore, writing nothing.
    let damaged = c.dir.join("damaged.snap");
    let mut bad = bytes.clone();
    let at = bad.len() / 2;
    bad[at] ^= 0x55;
    std::fs::write(&damaged, &bad).unwrap();
    let out = c.skr8tr(&[
        "history",
        "--verify",
        "--snapshot",
        damaged.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does NOT verify"));
    let target = c.dir.join("restored");
    let keys = c.data().display().to_string();
    let target_s = target.to_str().unwrap().to_string();
    let out = c.skr8tr(&[
        "snapshot",
        "restore",
        damaged.to_str().unwrap(),
        "--data",
        &target_s,
        "--keys",
        &keys,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("damaged"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_dir(&target).map_or(0, |d| d.count()), 0);

    // Key files that cannot open the secrets are refused, and say so.
    let wrong = c.dir.join("wrong-keys");
    std::fs::create_dir_all(&wrong).unwrap();
    for f in skr8tr_conductor::snapshot::KEY_FILES {
        std::fs::copy(c.data().join(f), wrong.join(f)).unwrap();
    }
    let other = skr8tr_proto::sealed::OpeningKey::generate().unwrap();
    std::fs::write(wrong.join("conductor.kem"), other.to_bytes().unwrap()).unwrap();
    let out = c.skr8tr(&[
        "snapshot",
        "restore",
        &snap_s,
        "--data",
        &target_s,
        "--keys",
        wrong.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("secret `TOKEN` of app `vault`") && err.contains("does not open"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(&target).map_or(0, |d| d.count()), 0);

    // The conductor dies; the snapshot takes its place.
    let keys_before = c.ok(&["key", "list"]);
    c.kill_conductor();
    let restored = c.ok(&[
        "snapshot", "restore", &snap_s, "--data", &target_s, "--keys", &keys,
    ]);
    assert!(restored.contains("restored cluster"), "{restored}");
    assert!(
        restored.contains(&format!(
            "start it with: skr8tr conductor --data {target_s}"
        )),
        "{restored}"
    );
    std::fs::remove_dir_all(c.data()).unwrap();
    std::fs::rename(&target, c.data()).unwrap();
    c.start_conductor();
    // Same apps, the same replicas (the node kept them, nothing was
    // placed twice), the same keys, and the chain verifies with the
    // restore in it.
    wait_for("web's replicas reported again", WAIT, || {
        (pids(&c, "web") == web).then_some(())
    });
    assert_eq!(pids(&c, "vault"), vault);
    // To know the reconciler has planned since the restore, give it
    // something to do: a fourth web replica, and nothing else, is placed;
    // the first three still run.
    let last = c.ok(&["history", "--json", "--limit", "1"]);
    c.ok(&["scale", "web", "4"]);
    let four = wait_for("a fourth web replica", WAIT, || {
        Some(pids(&c, "web")).filter(|p| p.len() == 4)
    });
    for (id, pid) in &web {
        assert_eq!(four.get(id), Some(pid), "{id} kept its process");
    }
    let last: Vec<serde_json::Value> = serde_json::from_str(&last).unwrap();
    let from = last[0]["seq"].as_u64().unwrap() + 1;
    let since = c.ok(&["history", "--from", &from.to_string()]);
    assert_eq!(
        since.lines().filter(|l| l.contains("placed ")).count(),
        1,
        "{since}"
    );
    assert!(since.contains("scale web 4"), "{since}");
    let status = c.ok(&["status"]);
    for app in ["web ", "vault ", "churn "] {
        assert!(status.lines().any(|l| l.starts_with(app)), "{status}");
    }
    assert_eq!(c.ok(&["key", "list"]), keys_before, "the same keys");
    let verify = c.ok(&["history", "--verify"]);
    assert!(verify.contains("audit log verified"), "{verify}");
    let history = c.ok(&["history", "--limit", "1000"]);
    assert!(history.contains("restored from a snapshot"), "{history}");
    assert!(history.contains("snapshot save"), "{history}");
    // It still runs commands.
    c.ok(&["scale", "web", "2"]);
    wait_for("web at 2", WAIT, || {
        (pids(&c, "web").len() == 2).then_some(())
    });
}
