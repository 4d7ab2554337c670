//! Issue 13, restarts: a conductor started while a predecessor — killed,
//! but still exiting — holds the data directory's lock waits for it
//! instead of failing with "already in use", then starts and takes the
//! cluster back as it was (same replica, same pid).

use skr8tr_chaos_tests::harness::{Cluster, wait_for};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

#[test]
fn a_conductor_restarted_while_the_lock_is_still_held_waits_for_it_and_starts() {
    let mut c = Cluster::start("lock-wait");
    c.start_node("n1");
    let m = c.manifest(
        "web.skr8tr",
        "app web\n  exec /bin/sleep\n  args 600\n  settle 100ms\n",
    );
    c.ok(&["up", m.to_str().unwrap()]);
    let before = c.wait_ready("web", 1, WAIT).remove(0);
    c.kill_conductor();

    // The predecessor's lock, still held for 2 s after the restart begins
    // (here by this test, which opens the file as any redb process would).
    let db = redb::Database::open(c.data().join(skr8tr_store::DB_FILE)).unwrap();
    let started = Instant::now();
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(2));
        drop(db);
    });
    c.start_conductor();
    releaser.join().unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "it answered only once the lock was free"
    );
    wait_for("the wait to be logged", WAIT, || {
        c.log("conductor.log")
            .contains("is locked by another process")
            .then_some(())
    });
    let after = c.wait_ready("web", 1, WAIT).remove(0);
    assert_eq!(
        (after.replica, after.pid),
        (before.replica, before.pid),
        "the same replica runs on"
    );
}
