//! Replicas under their shims with real processes: whole-tree stops
//! (`setsid` children too), adoption by a restarted agent, the grace of a
//! dead one, `user` uids, and with real cgroups an OOM kill and a `cpus`
//! quota measured from the cgroup.

// A test: an unwrap is an assertion (clippy allows it inside #[test]
// functions only; these helpers are part of the tests too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use skr8tr_node::cgroup::Cgroups;
use skr8tr_proto::wire::ReplicaState;
use std::path::Path;
use std::time::{Duration, Instant};

mod common;
use common::*;

#[tokio::test]
async fn stopping_a_replica_leaves_none_of_its_tree_not_even_setsid_children() {
    let n = node("tree", (21140, 21149));
    n.sup.converge(&[assignment(ID, &forker(1310))]);
    wait_for(&n.sup, ID, "ready", ready).await;
    wait_until("three helpers", DEADLINE, || {
        processes_with("sleep 131").len() == 3
    })
    .await;
    n.sup.converge(&[]);
    wait_gone(&n.sup, ID).await;
    let left = processes_with("sleep 131");
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[tokio::test]
async fn a_restarted_agent_adopts_its_replicas_and_kills_what_is_no_longer_assigned() {
    let n = node("adopt", (21150, 21159));
    let keep = assignment(
        "web/1/0",
        "app web\n  exec /bin/sleep\n  args 60\n  settle 50ms\n",
    );
    let drop_it = assignment("old/1/0", &forker(1320).replace("app web", "app old"));
    n.sup.converge(&[keep.clone(), drop_it.clone()]);
    let kept = wait_for(&n.sup, "web/1/0", "ready", ready).await;
    wait_for(&n.sup, "old/1/0", "ready", ready).await;
    wait_until("the helpers", DEADLINE, || {
        processes_with("sleep 132").len() == 3
    })
    .await;
    // The agent exits (an upgrade): replicas keep running.
    n.sup.detach();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!dead(kept.pid.unwrap()), "a detached replica runs on");
    assert_eq!(processes_with("sleep 132").len(), 3);

    // The next agent takes both on as they are: same pid, port, readiness.
    let again = node_in(&n.dir, (21150, 21159));
    assert_eq!(again.sup.adopt().await, 2);
    let r = report(&again.sup, "web/1/0").unwrap();
    assert_eq!(
        (r.pid, r.port, r.state),
        (kept.pid, kept.port, ReplicaState::Ready)
    );
    // The first assignment set no longer holds `old`: its tree goes.
    again.sup.converge(std::slice::from_ref(&keep));
    wait_gone(&again.sup, "old/1/0").await;
    assert!(processes_with("sleep 132").is_empty());
    assert_eq!(report(&again.sup, "web/1/0").unwrap().pid, kept.pid);
    again.sup.shutdown().await;
    assert!(dead(kept.pid.unwrap()));
}

#[tokio::test]
async fn replicas_of_an_agent_that_never_returns_stop_by_themselves_within_the_grace() {
    let dir = std::env::temp_dir().join(format!(
        "skr8tr-node-supervisor-grace-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let n = node_with(&dir, (21160, 21169), Duration::from_millis(500), None);
    n.sup.converge(&[assignment(ID, &forker(1330))]);
    let pid = wait_for(&n.sup, ID, "ready", ready).await.pid.unwrap();
    wait_until("the helpers", DEADLINE, || {
        processes_with("sleep 133").len() == 3
    })
    .await;
    let gone_at = Instant::now();
    n.sup.detach();
    wait_until("the orphaned tree to stop", DEADLINE, || {
        dead(pid) && processes_with("sleep 133").is_empty()
    })
    .await;
    assert!(
        gone_at.elapsed() >= Duration::from_millis(400),
        "not before the grace"
    );
    wait_until("the shim to leave", DEADLINE, || shim_dirs(&n) == 0).await;
}

#[tokio::test]
async fn a_user_replica_runs_with_that_uid_and_root_is_refused() {
    let n = node("user", (21190, 21199));
    let volume = n.dir.join("vol");
    let text = format!(
        "app web\n  exec /bin/sh\n  args -c 'id -u; exec sleep 60'\n  user nobody\n  settle 50ms\n  volume {{ path {} }}\n",
        volume.display()
    );
    n.sup.converge(&[assignment(ID, &text)]);
    let pid = wait_for(&n.sup, ID, "ready", ready).await.pid.unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(uid.contains("65534"), "{uid}");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(&volume).unwrap().uid(),
        65534,
        "the volume is the user's"
    );
    n.sup.converge(&[]);
    wait_gone(&n.sup, ID).await;

    n.sup.converge(&[assignment(
        "root/1/0",
        "app root\n  exec /bin/sleep\n  args 60\n  user root\n",
    )]);
    wait_for(&n.sup, "root/1/0", "refused", |r| r.restarts >= 1).await;
    let log = log_text(&n.sup, "root/1/0");
    assert!(log.contains("does not run replicas as root"), "{log}");
    n.sup.shutdown().await;
}

/// Real cgroups (v1 on the machines this is built on, v2 elsewhere): only
/// root may create them, and CI runs as root.
fn real_cgroups(dir: &Path) -> Option<Cgroups> {
    use std::os::unix::fs::MetadataExt;
    let root = std::fs::metadata("/proc/self").unwrap().uid() == 0;
    match Cgroups::detect(&dir.join("data")) {
        Ok(c) => Some(c),
        Err(e) if root => panic!("running as root, cgroups must work: {e}"),
        Err(e) => {
            eprintln!("skipped: not root ({e})");
            None
        }
    }
}

#[tokio::test]
async fn a_replica_over_its_ram_is_oom_killed_and_restarted() {
    let dir =
        std::env::temp_dir().join(format!("skr8tr-node-supervisor-oom-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let Some(cgroups) = real_cgroups(&dir) else {
        return;
    };
    let n = node_with(&dir, (21170, 21179), Duration::from_secs(5), Some(cgroups));
    // Holds 200 MiB in a shell variable, with a 32 MiB limit.
    let text = format!(
        "app hog\n  exec {}\n  args -c 'import time; b = bytearray(200 << 20); time.sleep(60)'\n  ram 32mb\n  settle 5s\n",
        python()
    );
    n.sup.converge(&[assignment("hog/1/0", &text)]);
    wait_for(&n.sup, "hog/1/0", "oom-killed", |r| {
        r.state == ReplicaState::OomKilled || r.restarts > 0
    })
    .await;
    wait_for(&n.sup, "hog/1/0", "restarted", |r| r.restarts >= 1).await;
    let log = log_text(&n.sup, "hog/1/0");
    assert!(
        log.contains("killed by the kernel: out of memory (ram 32 MiB)"),
        "{log}"
    );
    n.sup.shutdown().await;
}

#[tokio::test]
async fn a_cpus_quota_holds_a_burner_near_its_share() {
    let dir =
        std::env::temp_dir().join(format!("skr8tr-node-supervisor-cpu-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let Some(cgroups) = real_cgroups(&dir) else {
        return;
    };
    let n = node_with(
        &dir,
        (21180, 21189),
        Duration::from_secs(5),
        Some(cgroups.clone()),
    );
    let text =
        "app burn\n  exec /bin/sh\n  args -c 'while :; do :; done'\n  cpus 0.2\n  settle 50ms\n";
    n.sup.converge(&[assignment("burn/1/0", text)]);
    wait_for(&n.sup, "burn/1/0", "ready", ready).await;
    let cg = cgroups.replica("burn/1/0");
    let used = || cpu_usage_ns(&cgroups, &cg);
    let (t0, u0) = (Instant::now(), used());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let share = (used() - u0) as f64 / t0.elapsed().as_nanos() as f64;
    eprintln!(
        "cpus 0.2 burner: {:.1}% of a core, from its cgroup",
        share * 100.0
    );
    assert!(
        (0.10..=0.30).contains(&share),
        "{:.1}% of a core",
        share * 100.0
    );
    n.sup.shutdown().await;
}

/// CPU time of a replica's cgroup, ns: cpuacct.usage (v1) or cpu.stat's
/// usage_usec (v2).
fn cpu_usage_ns(cgroups: &Cgroups, cg: &skr8tr_node::cgroup::ReplicaCgroup) -> u64 {
    use skr8tr_node::cgroup::Kind;
    match &cgroups.kind {
        Kind::V2 { .. } => {
            let stat = std::fs::read_to_string(cg.dirs[0].join("cpu.stat")).unwrap();
            let usec: u64 = stat
                .lines()
                .find_map(|l| l.strip_prefix("usage_usec "))
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            usec * 1000
        }
        Kind::V1 { .. } => {
            let acct = cg.dirs.last().unwrap().join("cpuacct.usage");
            std::fs::read_to_string(acct)
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        }
    }
}

/// Reads up to 64 bytes from a fresh connection to `socket` within 5 s:
/// what a connected agent would be sent first (empty: turned away).
fn first_bytes(socket: &Path) -> Vec<u8> {
    use std::io::Read;
    let mut s = std::os::unix::net::UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap_or(0);
    buf[..n].to_vec()
}

#[tokio::test]
async fn the_control_socket_turns_away_the_replica_itself_and_a_second_agent() {
    let n = node("stranger", (21200, 21209));
    let socket = skr8tr_node::shim::replica_dir(&n.dir.join("data"), ID).join("ctl.sock");
    let (go, verdict) = (n.dir.join("go"), n.dir.join("verdict"));
    // Once told (the agent is gone by then, so a connection is not turned
    // away for being a second one), the replica, with the node's uid but
    // inside its own tree, tries to take over its shim and stop itself
    // with a `Stop { drain_ms: 0 }`.
    let script = format!(
        "import os, socket, time\n\
         while not os.path.exists('{go}'): time.sleep(0.02)\n\
         try:\n\
         \x20   s = socket.socket(socket.AF_UNIX)\n\
         \x20   s.connect('{sock}')\n\
         \x20   s.settimeout(5)\n\
         \x20   s.sendall(bytes([2, 0, 0, 0, 1, 0]))\n\
         \x20   verdict = 'hello' if s.recv(64) else 'closed'\n\
         except (ConnectionResetError, BrokenPipeError):\n\
         \x20   verdict = 'closed'\n\
         except Exception as e:\n\
         \x20   verdict = 'error: ' + repr(e)\n\
         open('{verdict}', 'w').write(verdict)\n\
         time.sleep(600)\n",
        go = go.display(),
        sock = socket.display(),
        verdict = verdict.display()
    );
    let file = n.dir.join("takeover.py");
    std::fs::create_dir_all(&n.dir).unwrap();
    std::fs::write(&file, script).unwrap();
    let text = format!(
        "app web\n  exec {}\n  args {}\n  settle 50ms\n",
        python(),
        file.display()
    );
    n.sup.converge(&[assignment(ID, &text)]);
    let pid = wait_for(&n.sup, ID, "ready", ready).await.pid.unwrap();
    // While the agent is connected, a second one is turned away.
    assert!(first_bytes(&socket).is_empty());

    n.sup.detach();
    std::fs::write(&go, "").unwrap();
    let deadline = Instant::now() + DEADLINE;
    let said = loop {
        if let Ok(v) = std::fs::read_to_string(&verdict)
            && !v.is_empty()
        {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "the replica never got an answer: {}",
            log_text(&n.sup, ID)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(said, "closed", "the replica was let in");
    assert!(!dead(pid), "its Stop was not obeyed");
    // The node's next agent is let in, and finds it as it was.
    let again = node_in(&n.dir, (21200, 21209));
    assert_eq!(again.sup.adopt().await, 1);
    wait_for(&again.sup, ID, "taken on", |r| {
        r.pid == Some(pid) && ready(r)
    })
    .await;
    again.sup.shutdown().await;
}
