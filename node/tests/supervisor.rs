//! The supervisor with real processes (`/bin/sh`, `sleep`, python's
//! http.server): readiness, restarts, backoff, health failures, jobs,
//! draining and shutdown (the shim and cgroups: `shim.rs`). Every wait is
//! for a condition, with a deadline; helpers in `common/`.

// A test: an unwrap is an assertion (clippy allows it inside #[test]
// functions only; these helpers are part of the tests too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use skr8tr_node::process::{self, ProcessGroup};
use skr8tr_node::supervisor::{BACKOFF_FIRST, BACKOFF_RESET_AFTER, Backoff, should_restart};
use skr8tr_proto::manifest::Restart;
use skr8tr_proto::wire::ReplicaState;
use std::time::{Duration, Instant};

mod common;
use common::*;

#[tokio::test]
async fn a_replica_becomes_ready_when_its_tcp_check_passes_and_stops_when_unassigned() {
    let n = node("tcp", (21000, 21049));
    let a = assignment(
        ID,
        &format!(
            "app web\n  exec {}\n  args -m http.server $PORT --bind 127.0.0.1\n  health {{\n    check tcp\n    interval 1s\n  }}\n",
            python()
        ),
    );
    n.sup.converge(std::slice::from_ref(&a));
    n.sup.converge(std::slice::from_ref(&a)); // idempotent
    tokio::time::timeout(Duration::from_secs(5), n.changed.notified())
        .await
        .expect("converge reports at once");
    let r = wait_for(&n.sup, ID, "ready", ready).await;
    assert_eq!(n.sup.reports().len(), 1);
    let (pid, port) = (r.pid.unwrap(), r.port.unwrap());
    assert!((21000..=21049).contains(&port));
    assert_eq!((r.app.as_str(), r.generation, r.restarts), ("web", 1, 0));
    assert!(r.started_at_ms > 0 && r.rss_bytes > 0, "{r:?}");
    assert_eq!(shim_dirs(&n), 1);
    // It really serves on the port it was given.
    std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();

    n.sup.converge(&[]);
    wait_gone(&n.sup, ID).await;
    assert!(!process::is_alive(pid) || dead(pid));
    assert_eq!(shim_dirs(&n), 0, "the shim cleaned up after itself");
    assert!(n.sup.logs(ID, 10).is_none());
}

#[tokio::test]
async fn without_a_health_check_a_replica_is_ready_after_settle_and_its_output_is_kept() {
    let n = node("settle", (21050, 21059));
    let a = assignment(
        ID,
        "app web\n  exec /bin/sh\n  args -c 'echo \"replica=$SKR8TR_REPLICA app=$SKR8TR_APP port=$PORT\"; echo oops >&2; exec sleep 60'\n  port 21055\n  settle 400ms\n",
    );
    n.sup.converge(&[a]);
    let began = Instant::now();
    let starting = wait_for(&n.sup, ID, "started", |r| r.pid.is_some()).await;
    assert_eq!(starting.state, ReplicaState::Starting);
    assert_eq!(starting.port, Some(21055));
    wait_for(&n.sup, ID, "ready", ready).await;
    assert!(
        began.elapsed() >= Duration::from_millis(350),
        "ready before settle"
    );
    let deadline = Instant::now() + DEADLINE;
    while !log_text(&n.sup, ID).contains("oops") {
        assert!(Instant::now() < deadline, "logs: {}", log_text(&n.sup, ID));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let lines = n.sup.logs(ID, 10).unwrap();
    let out = lines
        .iter()
        .find(|l| l.text.starts_with("replica="))
        .unwrap();
    assert_eq!(out.text, "replica=web/1/0 app=web port=21055");
    assert_eq!(n.sup.logs(ID, 1).unwrap().len(), 1);
    assert!(n.sup.logs("other/1/0", 10).is_none());
    n.sup.shutdown().await;
}

#[tokio::test]
async fn a_killed_replica_is_restarted() {
    let n = node("killed", (21060, 21069));
    n.sup.converge(&[assignment(
        ID,
        "app web\n  exec /bin/sleep\n  args 60\n  settle 100ms\n",
    )]);
    let first = wait_for(&n.sup, ID, "ready", ready).await;
    let old = first.pid.unwrap();
    ProcessGroup::new(old)
        .unwrap()
        .signal(libc::SIGKILL)
        .unwrap();
    let again = wait_for(&n.sup, ID, "restarted and ready", |r| {
        ready(r) && r.restarts == 1
    })
    .await;
    assert_ne!(again.pid, Some(old));
    assert_eq!(again.port, first.port, "a replica keeps its port");
    assert!(log_text(&n.sup, ID).contains("skr8tr: killed; restarting in 100ms"));
    n.sup.shutdown().await;
}

/// A replica that exits by itself at once (as it does when another process
/// took its port between the node's check and its own bind) gets another
/// auto port on its next start, instead of failing on the same one forever.
#[tokio::test]
async fn a_replica_that_exits_at_once_gets_another_auto_port() {
    let n = node("taken", (21090, 21093));
    let marker = n.dir.join("first-port");
    std::fs::create_dir_all(&n.dir).unwrap();
    // First start: note the port and exit 1 at once; later starts: run.
    let text = format!(
        "app web\n  exec /bin/sh\n  args -c 'if [ ! -e {m} ]; then echo $PORT > {m}; exit 1; fi; exec sleep 60'\n  settle 100ms\n",
        m = marker.display()
    );
    n.sup.converge(&[assignment(ID, &text)]);
    let r = wait_for(&n.sup, ID, "ready after one quick exit", |r| {
        ready(r) && r.restarts == 1
    })
    .await;
    let first: u16 = std::fs::read_to_string(&marker)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_ne!(
        r.port,
        Some(first),
        "the port it could not use was handed out again"
    );
    n.sup.shutdown().await;
}

/// A program that ignores SIGTERM, as does the helper it starts (whose pid
/// it prints).
const STUBBORN: &str = "app web\n  exec /bin/sh\n  args -c 'trap \"\" TERM; sleep 60 & echo $!; wait'\n  settle 100ms\n  drain 300ms\n";

#[tokio::test]
async fn an_unassigned_replica_is_drained_then_killed_with_its_group() {
    let n = node("drain", (21070, 21079));
    n.sup.converge(&[assignment(ID, STUBBORN)]);
    let r = wait_for(&n.sup, ID, "ready", ready).await;
    let pid = r.pid.unwrap();
    let helper: u32 = loop {
        if let Some(line) = n.sup.logs(ID, 10).unwrap().first() {
            break line.text.parse().unwrap();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let began = Instant::now();
    n.sup.converge(&[]);
    let stopping = wait_for(&n.sup, ID, "stopping", |r| {
        r.state == ReplicaState::Stopping
    })
    .await;
    assert_eq!(stopping.pid, Some(pid));
    wait_gone(&n.sup, ID).await;
    assert!(began.elapsed() >= Duration::from_millis(300), "drained");
    assert!(dead(pid) && dead(helper), "the whole group is killed");
    assert_eq!(shim_dirs(&n), 0);
}

#[tokio::test]
async fn a_replica_assigned_again_while_stopping_starts_anew() {
    let n = node("again", (21080, 21089));
    let a = assignment(ID, STUBBORN);
    n.sup.converge(std::slice::from_ref(&a));
    let old = wait_for(&n.sup, ID, "ready", ready).await.pid;
    n.sup.converge(&[]);
    wait_for(&n.sup, ID, "stopping", |r| {
        r.state == ReplicaState::Stopping
    })
    .await;
    n.sup.converge(std::slice::from_ref(&a));
    let r = wait_for(&n.sup, ID, "ready again", |r| ready(r) && r.pid != old).await;
    assert_eq!(r.restarts, 0, "a new start, not a restart");
    n.sup.shutdown().await;
}

#[tokio::test]
async fn a_job_reports_its_exit_code_and_on_failure_restarts_it() {
    let n = node("job", (21150, 21159));
    let marker = n.dir.join("ran-once");
    let once = format!(
        "app retry\n  type job\n  exec /bin/sh\n  args -c 'test -e {m} && exit 0; mkdir -p {d} && touch {m}; exit 1'\n  restart on-failure\n",
        m = marker.display(),
        d = n.dir.display(),
    );
    n.sup.converge(&[
        assignment(
            "exit3/1/0",
            "app exit3\n  type job\n  exec /bin/sh\n  args -c 'exit 3'\n",
        ),
        assignment("retry/1/0", &once),
    ]);
    let r = wait_for(&n.sup, "exit3/1/0", "exited", |r| {
        matches!(r.state, ReplicaState::Exited { .. })
    })
    .await;
    assert_eq!(
        (r.state, r.restarts, r.pid),
        (ReplicaState::Exited { code: Some(3) }, 0, None)
    );
    let r = wait_for(&n.sup, "retry/1/0", "exited", |r| {
        matches!(r.state, ReplicaState::Exited { .. })
    })
    .await;
    assert_eq!(
        (r.state, r.restarts),
        (ReplicaState::Exited { code: Some(0) }, 1)
    );
    n.sup.converge(&[]);
    wait_gone(&n.sup, "exit3/1/0").await;
    wait_gone(&n.sup, "retry/1/0").await;
}

#[tokio::test]
async fn a_program_that_cannot_start_exits_127() {
    let n = node("missing", (21100, 21109));
    n.sup.converge(&[assignment(
        ID,
        "app web\n  exec /nonexistent/skr8tr-test\n  restart never\n",
    )]);
    let r = wait_for(&n.sup, ID, "exited", |r| {
        matches!(r.state, ReplicaState::Exited { .. })
    })
    .await;
    assert_eq!(r.state, ReplicaState::Exited { code: Some(127) });
    assert!(log_text(&n.sup, ID).contains("skr8tr: cannot start /nonexistent/skr8tr-test"));
    n.sup.shutdown().await;
    assert!(n.sup.reports().is_empty());
}

#[tokio::test]
async fn a_crash_loop_backs_off() {
    let n = node("crash", (21110, 21119));
    n.sup.converge(&[assignment(
        ID,
        "app web\n  exec /bin/sh\n  args -c 'exit 1'\n",
    )]);
    let began = Instant::now();
    wait_for(&n.sup, ID, "3 restarts", |r| r.restarts >= 3).await;
    // 100 + 200 ms of backoff at least before the third restart.
    assert!(began.elapsed() >= Duration::from_millis(300));
    let mut saw_backoff = false;
    let mut restarts = 0;
    while began.elapsed() < Duration::from_secs(2) {
        let r = report(&n.sup, ID).unwrap();
        saw_backoff |= r.state == ReplicaState::Backoff;
        restarts = r.restarts;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(saw_backoff);
    // Waits of 100, 200, 400, 800 ms: at most 4 or 5 restarts in 2 s.
    assert!(restarts < 8, "{restarts} restarts in 2 s");
    assert!(log_text(&n.sup, ID).contains("skr8tr: exited with code 1; restarting in 400ms"));
    n.sup.shutdown().await;
}

#[tokio::test]
async fn a_failing_health_check_makes_it_unhealthy_then_restarts_it_after_retries() {
    let n = node("health", (21120, 21129));
    let www = n.dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("ok"), "ok").unwrap();
    n.sup.converge(&[assignment(
        ID,
        &format!(
            "app web\n  exec {}\n  args -m http.server $PORT --bind 127.0.0.1 --directory {}\n  health {{\n    check GET /ok 200\n    interval 200ms\n    timeout 200ms\n    retries 3\n  }}\n",
            python(),
            www.display()
        ),
    )]);
    let first = wait_for(&n.sup, ID, "ready", ready).await;
    std::fs::remove_file(www.join("ok")).unwrap();
    let r = wait_for(&n.sup, ID, "unhealthy", |r| {
        r.state == ReplicaState::Unhealthy
    })
    .await;
    assert_eq!((r.pid, r.restarts), (first.pid, 0));
    let r = wait_for(&n.sup, ID, "restarted", |r| {
        r.restarts == 1 && r.pid.is_some()
    })
    .await;
    assert_ne!(r.pid, first.pid);
    assert!(log_text(&n.sup, ID).contains("skr8tr: health check failed too often"));
    // Until it passes once, a failing check only keeps it starting.
    assert_ne!(r.state, ReplicaState::Ready);
    std::fs::write(www.join("ok"), "ok").unwrap();
    let r = wait_for(&n.sup, ID, "ready again", ready).await;
    assert_eq!(r.restarts, 1);
    n.sup.shutdown().await;
}

#[tokio::test]
async fn shutdown_stops_every_replica_and_auto_ports_differ() {
    let n = node("shutdown", (21130, 21139));
    let sleep = "app web\n  exec /bin/sleep\n  args 60\n  settle 50ms\n";
    n.sup
        .converge(&[assignment("web/1/0", sleep), assignment("web/1/1", sleep)]);
    let a = wait_for(&n.sup, "web/1/0", "ready", ready).await;
    let b = wait_for(&n.sup, "web/1/1", "ready", ready).await;
    assert_ne!(a.port, b.port);
    assert_eq!(shim_dirs(&n), 2);
    n.sup.shutdown().await;
    assert!(n.sup.reports().is_empty());
    assert!(dead(a.pid.unwrap()) && dead(b.pid.unwrap()));
    assert_eq!(shim_dirs(&n), 0);
    n.sup.converge(&[assignment("web/1/0", sleep)]);
    assert!(n.sup.reports().is_empty(), "nothing starts after shutdown");
}

#[test]
fn restart_policy() {
    use Restart::*;
    for code in [Some(0), Some(1), None] {
        assert!(should_restart(Always, code));
        assert!(!should_restart(Never, code));
    }
    assert!(!should_restart(OnFailure, Some(0)));
    assert!(should_restart(OnFailure, Some(3)));
    assert!(should_restart(OnFailure, None));
}

#[test]
fn backoff_doubles_to_a_cap_and_resets_after_a_long_run() {
    let mut b = Backoff::default();
    let short = Duration::from_millis(5);
    let waits: Vec<u128> = (0..10).map(|_| b.next(short).as_millis()).collect();
    assert_eq!(
        waits,
        [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000]
    );
    assert_eq!(b.next(BACKOFF_RESET_AFTER), BACKOFF_FIRST);
    assert_eq!(b.next(short), BACKOFF_FIRST * 2);
}
