//! Tests of the on-disk logs, on real files under the temp dir.

use super::*;

fn test_logs(file_bytes: u64, files: usize) -> (tempdir::Dir, DiskLogs) {
    let dir = tempdir::Dir::new();
    let logs = DiskLogs::start(DiskConfig {
        root: dir.path().join("logs"),
        file_bytes,
        files,
    })
    .unwrap();
    (dir, logs)
}

mod tempdir {
    /// A directory under the system's temp dir, removed when dropped.
    pub struct Dir(std::path::PathBuf);

    impl Dir {
        pub fn new() -> Dir {
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let p = std::env::temp_dir().join(format!("skr8tr-disklog-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }

        pub fn path(&self) -> &std::path::Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn texts(records: &[Record]) -> Vec<&str> {
    records.iter().map(|r| r.text.as_str()).collect()
}

#[test]
fn lines_come_back_by_run_across_rotations() {
    // Small files: every few lines rotate.
    let (_dir, logs) = test_logs(64, 3);
    logs.line("k", 1, Kind::Run, "run 1".into());
    logs.line("k", 2, Kind::Out, "first run says hello".into());
    logs.line("k", 3, Kind::Err, "first run\nfails".into());
    logs.line("k", 4, Kind::Run, "run 2".into());
    logs.line("k", 5, Kind::Out, "second run".into());
    let tail = logs.read("k", Want::Tail, 10).unwrap();
    assert_eq!(
        texts(&tail),
        ["first run says hello", "first run fails", "second run"]
    );
    assert_eq!(tail[1].kind, Kind::Err);
    assert_eq!(tail[1].at_ms, 3);
    let previous = logs.read("k", Want::Previous, 10).unwrap();
    assert_eq!(
        texts(&previous),
        ["first run says hello", "first run fails"]
    );
    assert_eq!(
        texts(&logs.read("k", Want::Previous, 1).unwrap()),
        ["first run fails"],
        "the latest lines of the previous run"
    );
    assert_eq!(
        texts(&logs.read("k", Want::Tail, 1).unwrap()),
        ["second run"]
    );
    // Bounded: never more than `files` files of about `file_bytes`.
    for i in 0..1000 {
        logs.line("k", 10 + i, Kind::Out, format!("line {i}"));
    }
    let tail = logs.read("k", Want::Tail, 10_000).unwrap();
    assert!(tail.len() < 20, "{} lines kept", tail.len());
    assert_eq!(tail.last().unwrap().text, "line 999");
    let dir = logs.config.root.join("k");
    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["output.log", "output.log.1", "output.log.2"]);
    for n in &names {
        assert!(fs::metadata(dir.join(n)).unwrap().len() <= 64);
    }
    // A run older than what rotation kept is simply not there.
    assert!(logs.read("k", Want::Previous, 10).unwrap().is_empty());
    logs.remove("k");
    assert!(logs.read("k", Want::Tail, 10).unwrap().is_empty());
    assert!(!dir.exists());
}

#[test]
fn files_are_private_garbage_is_skipped_and_old_dirs_are_swept() {
    use std::os::unix::fs::PermissionsExt;
    let (_dir, logs) = test_logs(1 << 20, 3);
    logs.line("a", 1, Kind::Out, "kept".into());
    logs.read("a", Want::Tail, 1).unwrap();
    let file = logs.config.root.join("a").join(FILE);
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(&logs.config.root), 0o700);
    // A torn last line (a crash mid-write) ends there; garbage is skipped.
    let b = logs.config.root.join("b");
    fs::create_dir(&b).unwrap();
    fs::write(
        b.join(FILE),
        b"1 out kept\ngarbage\n12 nope x\n\xff\xfe\n99 out torn",
    )
    .unwrap();
    logs.line("b", 100, Kind::Out, "after".into());
    let tail = logs.read("b", Want::Tail, 10).unwrap();
    assert_eq!(texts(&tail), ["kept", "torn", "after"]);
    // Lines dropped under pressure are counted into the file.
    logs.shared.dropped.lock().unwrap().insert("b".into(), 5);
    logs.shared.any_dropped.store(true, Ordering::Relaxed);
    logs.line("b", 101, Kind::Out, "next".into());
    let tail = logs.read("b", Want::Tail, 2).unwrap();
    assert!(
        tail[0].text.contains("5 lines were not written"),
        "{tail:?}"
    );
    assert_eq!(tail[1].text, "next");
    assert_eq!(logs.shared.bytes.load(Ordering::Relaxed), 0);
    assert_eq!(logs.shared.ops.load(Ordering::Relaxed), 0);
    // A fresh directory stays; an old one goes.
    let old = logs.config.root.join("old");
    fs::create_dir(&old).unwrap();
    let f = File::create(old.join(FILE)).unwrap();
    f.set_modified(std::time::SystemTime::now() - RETENTION - Duration::from_secs(60))
        .unwrap();
    let keep = std::collections::HashSet::from(["kept-quiet".to_string()]);
    let quiet = logs.config.root.join("kept-quiet");
    fs::create_dir(&quiet).unwrap();
    let f = File::create(quiet.join(FILE)).unwrap();
    f.set_modified(std::time::SystemTime::now() - RETENTION - Duration::from_secs(60))
        .unwrap();
    // A file from the future (a clock set back) is not old.
    let future = logs.config.root.join("future");
    fs::create_dir(&future).unwrap();
    let f = File::create(future.join(FILE)).unwrap();
    f.set_modified(std::time::SystemTime::now() + Duration::from_secs(3600))
        .unwrap();
    assert_eq!(logs.sweep(&keep), 1);
    assert!(quiet.exists() && future.exists());
    assert!(!old.exists());
    assert!(file.exists());
}

#[test]
fn a_tail_reads_the_end_of_a_big_file_and_the_rest_only_when_needed() {
    let (_dir, logs) = test_logs(4 << 20, 2);
    for i in 0..8000 {
        logs.line("k", i, Kind::Out, format!("{i:0>90}"));
    }
    let few = logs.read("k", Want::Tail, 10).unwrap();
    assert_eq!(few.len(), 10);
    assert_eq!(few[9].text, format!("{:0>90}", 7999));
    assert_eq!(few[0].text, format!("{:0>90}", 7990));
    // More lines than the end window (256 KiB, ~2700 lines) holds.
    let many = logs.read("k", Want::Tail, 6000).unwrap();
    assert_eq!(many.len(), 6000);
    assert_eq!(many[0].text, format!("{:0>90}", 2000));
    assert!(many.windows(2).all(|w| w[0].at_ms + 1 == w[1].at_ms));
}

#[test]
fn a_flood_cannot_take_run_marks_and_an_empty_run_does_not_hide_the_one_before() {
    let (_dir, logs) = test_logs(1 << 20, 2);
    logs.line("k", 1, Kind::Run, "run 1".into());
    logs.line("k", 2, Kind::Out, "first".into());
    logs.flush(Duration::from_secs(5));
    // The queue is as full as output may make it: output is dropped and
    // counted, a run mark still goes in.
    logs.shared
        .ops
        .fetch_add(QUEUE - RESERVED, Ordering::Relaxed);
    logs.line("k", 3, Kind::Out, "dropped".into());
    logs.line("k", 4, Kind::Run, "run 2 (wrote nothing)".into());
    logs.shared
        .ops
        .fetch_sub(QUEUE - RESERVED, Ordering::Relaxed);
    logs.line("k", 5, Kind::Run, "run 3".into());
    logs.line("k", 6, Kind::Out, "third".into());
    // The count is said with the replica's next line (before run 2).
    let note = "skr8tr: 1 lines were not written to disk (the disk is slower than the replicas)";
    let previous = logs.read("k", Want::Previous, 10).unwrap();
    assert_eq!(
        texts(&previous),
        ["first", note],
        "run 2 wrote nothing: run 1 is shown"
    );
    let tail = logs.read("k", Want::Tail, 10).unwrap();
    assert_eq!(texts(&tail), ["first", note, "third"]);
}
