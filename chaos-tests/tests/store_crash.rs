//! Kill -9 the store's writer process at random moments; after each kill the
//! store must open, hold every acknowledged write whole, hold nothing
//! half-written, and its audit chain must verify. `SKR8TR_CRASH_KILLS`
//! sets the number of kills (default 20); `SKR8TR_CRASH_SEED` replays one run.

use skr8tr_chaos_tests::workload;
use skr8tr_store::{AuditEvent, Options, Store};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("skr8tr-chaos-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn create_store(dir: &Path) {
    let key = workload::operator_key();
    let cluster = skr8tr_proto::command::ClusterId([3; 16]);
    Store::create(
        dir,
        cluster,
        "chaos",
        &key.public(),
        workload::now_ms(),
        Options::default(),
    )
    .unwrap();
}

fn writer(dir: &Path, prefix: &str, threads: usize) -> Child {
    Command::new(env!("CARGO_BIN_EXE_store-writer"))
        .arg(dir)
        .arg(prefix)
        .arg(threads.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Lines the child prints, as they come.
fn lines(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn acknowledged_writes_survive_sigkill_at_random_moments() {
    let kills: usize = std::env::var("SKR8TR_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed = std::env::var("SKR8TR_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| workload::now_ms() | 1);
    eprintln!("crash test: {kills} kills, SKR8TR_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let scratch = Scratch::new("crash");
    let dir = scratch.0.clone();
    create_store(&dir);
    let mut total_acks = 0;
    let mut last_seq = 1;

    for round in 0..kills {
        let prefix = format!("r{round}");
        let mut child = writer(&dir, &prefix, 4);
        let rx = lines(&mut child);
        let ready = rx.recv_timeout(Duration::from_secs(60));
        assert_eq!(
            ready.as_deref(),
            Ok("ready"),
            "round {round}: writer did not start"
        );
        // Kill at a random moment: sometimes before the first commit,
        // usually in the middle of a stream of them.
        let delay = Duration::from_millis(rng.below(250));
        let started = Instant::now();
        let mut acks = Vec::new();
        while started.elapsed() < delay {
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(5)) {
                acks.push(line);
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Acknowledgements printed before the kill are still in the pipe.
        acks.extend(rx.iter());

        let store = Store::open(&dir, Options::default())
            .unwrap_or_else(|e| panic!("round {round}: store does not open after kill: {e}"));
        let snap = store.snapshot().unwrap();
        for ack in &acks {
            let mut parts = ack.split(' ');
            let (Some("ack"), Some(app), Some(seq)) = (parts.next(), parts.next(), parts.next())
            else {
                panic!("round {round}: unexpected line {ack:?}");
            };
            assert_eq!(
                workload::app_state(&snap, app).unwrap(),
                Some(true),
                "round {round}: acknowledged {app} is missing or partial"
            );
            let seq: u64 = seq.parse().unwrap();
            let entry = snap.audit(seq, 1).unwrap();
            assert!(
                matches!(&entry[0].event, AuditEvent::Command { summary, .. } if summary.contains(app)),
                "round {round}: audit entry {seq} is not {app}'s"
            );
        }
        // Nothing half-written, acknowledged or not.
        for (app, _) in snap.apps().unwrap() {
            assert_eq!(
                workload::app_state(&snap, &app).unwrap(),
                Some(true),
                "round {round}: {app} is half-written"
            );
        }
        let report = store
            .verify_audit()
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert!(
            report.entries >= last_seq,
            "round {round}: audit log shrank"
        );
        last_seq = report.entries;
        total_acks += acks.len();
        drop(snap);
        drop(store);
    }
    eprintln!("crash test: {total_acks} acknowledged writes checked, {last_seq} audit entries");
    assert!(
        total_acks > 0,
        "the writer never acknowledged anything: the test tested nothing"
    );
}

#[test]
fn a_second_process_cannot_open_a_store_in_use() {
    let scratch = Scratch::new("lock");
    create_store(&scratch.0);
    let holder = Store::open(&scratch.0, Options::default()).unwrap();
    let started = Instant::now();
    let out = writer(&scratch.0, "x", 1).wait_with_output().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "it must fail at once, not wait"
    );
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already in use by another process"), "{err}");
    assert!(err.contains(&scratch.0.display().to_string()), "{err}");
    drop(holder);
    // Once released, it opens.
    let mut child = writer(&scratch.0, "y", 1);
    let rx = lines(&mut child);
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(60)).as_deref(),
        Ok("ready")
    );
    child.kill().unwrap();
    child.wait().unwrap();
}
