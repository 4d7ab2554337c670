//! The store on a real, small tmpfs that fills up: writes are refused as
//! `Full`, reads go on, nothing acknowledged is lost, and writes resume
//! when space is freed, without reopening the store by hand.
//!
//! Needs root (it mounts a tmpfs), as every CI machine of this project is.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod util;

use skr8tr_store::*;
use std::path::{Path, PathBuf};
use std::process::Command as Cmd;
use util::*;

/// A tmpfs of `size` mounted on a scratch directory, unmounted on drop.
struct SmallDisk {
    scratch: Scratch,
}

impl SmallDisk {
    fn new(name: &str, size: &str) -> SmallDisk {
        let scratch = Scratch::new(name);
        std::fs::create_dir_all(scratch.path()).unwrap();
        let ok = Cmd::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(scratch.path())
            .status()
            .unwrap()
            .success();
        assert!(ok, "mounting a tmpfs needs root (these tests run as root)");
        SmallDisk { scratch }
    }

    fn path(&self) -> &Path {
        self.scratch.path()
    }

    /// Fills what is left with one file, which is returned.
    fn fill(&self) -> PathBuf {
        let filler = self.path().join("filler");
        let _ = Cmd::new("dd")
            .args(["if=/dev/zero", "bs=4k", "status=none"])
            .arg(format!("of={}", filler.display()))
            .stderr(std::process::Stdio::null())
            .status();
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Cmd::new("umount").arg("-l").arg(self.path()).status();
    }
}

/// Commits `scale a N` for each N, returning the seq of each acknowledged.
fn try_scale(store: &Store, n: u32) -> Result<u64, StoreError> {
    match store.command(entry(&key(1), scale("a", n), T0 + u64::from(n)), |_| Ok(()))? {
        Outcome::Accepted { seq, .. } => Ok(seq),
        Outcome::Rejected { refusal, .. } => panic!("refused: {refusal:?}"),
    }
}

#[test]
fn a_full_disk_refuses_writes_keeps_reads_and_resumes_when_freed() {
    let disk = SmallDisk::new("full", "8m");
    let dir = disk.path().join("data");
    let store = create(&dir);
    let mut acked = Vec::new();
    for n in 0..20 {
        acked.push((n, try_scale(&store, n).unwrap()));
    }
    let filler = disk.fill();

    // Writes now fail, each with the clear error; none panics.
    let mut full = 0;
    for n in 20..60 {
        match try_scale(&store, n) {
            Ok(seq) => acked.push((n, seq)),
            Err(StoreError::Full { file }) => {
                assert_eq!(file, dir.join(DB_FILE));
                full += 1;
            }
            Err(e) => panic!("expected Full, got {e}"),
        }
    }
    assert!(full > 0, "no write was refused on a full disk");
    let message = StoreError::Full {
        file: dir.join(DB_FILE),
    }
    .to_string();
    assert!(message.contains("is full") && message.contains("Free space"));

    // Reads go on, and see everything acknowledged.
    let snap = store.snapshot().unwrap();
    let (head, _) = snap.audit_head().unwrap();
    assert_eq!(head, acked.last().unwrap().1);
    drop(snap);

    // Space freed: the next write succeeds on the same Store.
    std::fs::remove_file(&filler).unwrap();
    acked.push((100, try_scale(&store, 100).unwrap()));
    drop(store);

    // Everything acknowledged is there, in order, and the chain verifies.
    let store = Store::open(&dir, Options::default()).unwrap();
    let report = store.verify_audit().unwrap();
    assert_eq!(report.rejected, 0);
    let snap = store.snapshot().unwrap();
    for (n, seq) in &acked {
        let entry = &snap.audit(*seq, 1).unwrap()[0];
        assert_eq!(entry.seq, *seq);
        let AuditEvent::Command { summary, .. } = &entry.event else {
            panic!("entry {seq} is not a command");
        };
        assert!(summary.ends_with(&format!(" {n}")), "{seq}: {summary}");
    }
}

#[test]
fn a_snapshot_held_across_the_failure_does_not_stop_recovery() {
    let disk = SmallDisk::new("full-reader", "8m");
    let dir = disk.path().join("data");
    let store = create(&dir);
    let before = try_scale(&store, 1).unwrap();
    let held = store.snapshot().unwrap();
    let filler = disk.fill();
    let mut refused = false;
    for n in 2..40 {
        match try_scale(&store, n) {
            Ok(_) => {}
            // The reopen waited for `held`, gave up, and says so.
            Err(StoreError::Full { .. } | StoreError::Reopening) => {
                refused = true;
                break;
            }
            Err(e) => panic!("unexpected: {e}"),
        }
    }
    assert!(refused);
    drop(held);
    std::fs::remove_file(&filler).unwrap();
    let after = try_scale(&store, 99).unwrap();
    assert!(after > before);
    assert_eq!(store.snapshot().unwrap().audit_head().unwrap().0, after);
}
