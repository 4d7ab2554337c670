//! Replica output on disk: every line the in-memory ring takes is also
//! appended to `DATA/logs/<replica hash>/output.log`, rotated at a size
//! (`output.log.1`, `.2`, …: 10 MiB × 3 per replica by default), so a
//! replica's output outlives the node agent and the machine.
//!
//! One writer thread owns every file: the async side only queues a line
//! (a bounded channel; when the disk is slower than the replicas, lines
//! are counted and dropped, and a line says how many). Reads
//! (`logs --previous`, and refilling a ring after a restart) run on the
//! blocking pool and first ask the writer to flush.
//!
//! A file holds one record per line, `AT_MS KIND TEXT`, KIND being `out`,
//! `err` or `run`: a `run` record starts each run of the replica, which is
//! what tells the previous run from the current one across restarts of the
//! agent and reboots.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Lines queued for the writer, and their bytes; past either they are
/// dropped and counted (lines are up to 16 KiB: the count alone would let
/// a flood of long lines queue 256 MiB).
const QUEUE: usize = 16 * 1024;
const QUEUE_BYTES: usize = 8 << 20;
/// Room in the queue that output never takes: run marks and removals are
/// not lost to a replica that floods (a lost mark would merge two runs).
const RESERVED: usize = 256;
/// Files kept open by the writer; past this the least recently written
/// is closed (and reopened on its next line).
const MAX_OPEN: usize = 256;
/// Operations the writer takes before it flushes.
const BATCH: usize = 4096;
/// A tail is first looked for in this much of a file's end.
const TAIL_WINDOW: u64 = 256 * 1024;
/// A read waits this long for the writer's flush, then reads anyway.
const FLUSH_WAIT: Duration = Duration::from_millis(500);
/// Directories not written for this long are removed when the node
/// starts: replicas that never came back (moved while the node was down).
pub const RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// The current file of a replica; older ones are `output.log.N`.
pub const FILE: &str = "output.log";

/// Sizes of the on-disk logs.
#[derive(Clone, Debug)]
pub struct DiskConfig {
    /// Holds one directory per replica (`DATA/logs`).
    pub root: PathBuf,
    /// A file is rotated once it would grow past this.
    pub file_bytes: u64,
    /// Files kept per replica, the current one included.
    pub files: usize,
}

/// What a record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Out,
    Err,
    /// A run of the replica starts here.
    Run,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Out => "out",
            Kind::Err => "err",
            Kind::Run => "run",
        }
    }
}

/// One line read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub at_ms: u64,
    pub kind: Kind,
    pub text: String,
}

/// Which lines to read back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    /// The last lines of output, across runs.
    Tail,
    /// The output of the run before the latest one.
    Previous,
}

enum Op {
    Line {
        key: String,
        at_ms: u64,
        kind: Kind,
        text: String,
    },
    Remove(String),
    Flush(SyncSender<()>),
}

/// Cheap to clone: every clone queues to the same writer.
#[derive(Clone)]
pub struct DiskLogs {
    tx: SyncSender<Op>,
    config: Arc<DiskConfig>,
    shared: Arc<Shared>,
}

/// What the queueing side and the writer share.
#[derive(Default)]
struct Shared {
    /// Lines dropped per replica since the writer last said so.
    dropped: Mutex<HashMap<String, u64>>,
    any_dropped: AtomicBool,
    /// Ops and bytes in the queue.
    ops: AtomicUsize,
    bytes: AtomicUsize,
    /// Held while files are renamed or removed, and while a reader opens
    /// a replica's files: a reader never sees a rotation half-done.
    files: Mutex<()>,
    /// One read at a time: each holds up to `files` x `file_bytes`.
    reading: Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl DiskLogs {
    /// Creates the root (mode 0700: output may hold what replicas should
    /// not show to other users) and starts the writer thread.
    pub fn start(config: DiskConfig) -> io::Result<DiskLogs> {
        create_private_dir(&config.root)?;
        let (tx, rx) = sync_channel(QUEUE);
        let shared = Arc::new(Shared::default());
        let writer = Writer {
            config: config.clone(),
            open: HashMap::new(),
            tick: 0,
            shared: shared.clone(),
            failed: 0,
        };
        std::thread::Builder::new()
            .name("skr8tr-logs".into())
            .spawn(move || writer.run(rx))?;
        Ok(DiskLogs {
            tx,
            config: Arc::new(config),
            shared,
        })
    }

    /// Queues a line of replica `key` (its directory name); never blocks.
    /// Output past the queue's bounds is dropped and counted; a run mark
    /// takes the reserved room.
    pub fn line(&self, key: &str, at_ms: u64, kind: Kind, text: String) {
        let len = text.len();
        let sh = &self.shared;
        let ops = sh.ops.fetch_add(1, Ordering::Relaxed);
        let bytes = sh.bytes.fetch_add(len, Ordering::Relaxed);
        let full = kind != Kind::Run && (ops >= QUEUE - RESERVED || bytes + len > QUEUE_BYTES);
        let op = Op::Line {
            key: key.to_string(),
            at_ms,
            kind,
            text,
        };
        if full || self.tx.try_send(op).is_err() {
            sh.ops.fetch_sub(1, Ordering::Relaxed);
            sh.bytes.fetch_sub(len, Ordering::Relaxed);
            *lock(&sh.dropped).entry(key.to_string()).or_default() += 1;
            sh.any_dropped.store(true, Ordering::Relaxed);
        }
    }

    /// Removes replica `key`'s files (it is no longer assigned here),
    /// after the lines queued before.
    pub fn remove(&self, key: &str) {
        self.shared.ops.fetch_add(1, Ordering::Relaxed);
        if self.tx.try_send(Op::Remove(key.to_string())).is_err() {
            // The reserve is gone too: the periodic sweep removes it.
            self.shared.ops.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Asks the writer to write out what is queued, waiting up to
    /// `timeout` (a full queue is not waited for).
    pub fn flush(&self, timeout: Duration) {
        let (done, wait) = sync_channel(1);
        self.shared.ops.fetch_add(1, Ordering::Relaxed);
        if self.tx.try_send(Op::Flush(done)).is_ok() {
            let _ = wait.recv_timeout(timeout);
        } else {
            self.shared.ops.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Reads back up to `limit` lines of replica `key`, oldest first.
    /// Blocking: call it from the blocking pool.
    pub fn read(&self, key: &str, want: Want, limit: usize) -> io::Result<Vec<Record>> {
        let _one = lock(&self.shared.reading);
        self.flush(FLUSH_WAIT);
        let files = {
            let _files = lock(&self.shared.files);
            open_all(&self.config.root.join(key), self.config.files)?
        };
        read(&self.config, files, want, limit)
    }

    /// Removes the directories of replicas not in `keep` that were not
    /// written for [`RETENTION`] (replicas moved away while the node was
    /// down, or whose removal was lost). Returns how many went.
    pub fn sweep(&self, keep: &std::collections::HashSet<String>) -> usize {
        let Ok(entries) = fs::read_dir(&self.config.root) else {
            return 0;
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            if keep.contains(entry.file_name().to_string_lossy().as_ref()) {
                continue;
            }
            let newest = fs::read_dir(entry.path())
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|f| f.metadata().ok()?.modified().ok())
                .max();
            // A clock set back (a reboot before NTP) makes files look
            // new, never old.
            let old = newest
                .map(|t| t.elapsed().unwrap_or(Duration::ZERO))
                .is_none_or(|age| age > RETENTION);
            let _files = lock(&self.shared.files);
            if old && fs::remove_dir_all(entry.path()).is_ok() {
                removed += 1;
            }
        }
        removed
    }
}

/// The writer thread's state.
struct Writer {
    config: DiskConfig,
    open: HashMap<String, Open>,
    /// Counts writes, to find the least recently written file.
    tick: u64,
    shared: Arc<Shared>,
    /// Lines that could not be written since the last warning.
    failed: u64,
}

struct Open {
    file: BufWriter<File>,
    size: u64,
    last: u64,
}

impl Writer {
    fn run(mut self, rx: Receiver<Op>) {
        while let Ok(op) = rx.recv() {
            self.apply(op);
            for _ in 0..BATCH {
                match rx.try_recv() {
                    Ok(op) => self.apply(op),
                    Err(_) => break,
                }
            }
            self.flush();
        }
        self.flush();
    }

    fn apply(&mut self, op: Op) {
        self.shared.ops.fetch_sub(1, Ordering::Relaxed);
        match op {
            Op::Line {
                key,
                at_ms,
                kind,
                text,
            } => {
                self.shared.bytes.fetch_sub(text.len(), Ordering::Relaxed);
                if self.shared.any_dropped.load(Ordering::Relaxed) {
                    let dropped = {
                        let mut map = lock(&self.shared.dropped);
                        let n = map.remove(&key);
                        self.shared
                            .any_dropped
                            .store(!map.is_empty(), Ordering::Relaxed);
                        n
                    };
                    if let Some(n) = dropped {
                        let note = format!(
                            "skr8tr: {n} lines were not written to disk (the disk is slower than the replicas)"
                        );
                        self.write(&key, at_ms, Kind::Err, &note);
                    }
                }
                self.write(&key, at_ms, kind, &text);
            }
            Op::Remove(key) => {
                self.open.remove(&key);
                let _files = lock(&self.shared.files);
                let _ = fs::remove_dir_all(self.config.root.join(&key));
            }
            Op::Flush(done) => {
                self.flush();
                let _ = done.try_send(());
            }
        }
    }

    fn write(&mut self, key: &str, at_ms: u64, kind: Kind, text: &str) {
        // One record per line, whatever the text holds.
        let text = text.replace(['\n', '\r'], " ");
        let record = format!("{at_ms} {} {text}\n", kind.as_str());
        if let Err(e) = self.append(key, record.as_bytes()) {
            self.open.remove(key);
            self.failed += 1;
            if self.failed == 1 || self.failed.is_multiple_of(10_000) {
                tracing::warn!(
                    "cannot write replica output under {}: {e} ({} lines lost so far)",
                    self.config.root.display(),
                    self.failed
                );
            }
        }
    }

    fn append(&mut self, key: &str, record: &[u8]) -> io::Result<()> {
        self.tick += 1;
        let dir = self.config.root.join(key);
        let len = record.len() as u64;
        let rotate = self
            .open
            .get(key)
            .is_some_and(|o| o.size > 0 && o.size + len > self.config.file_bytes);
        if rotate {
            if let Some(mut o) = self.open.remove(key) {
                o.file.flush()?;
            }
            let _files = lock(&self.shared.files);
            rotate_files(&dir, self.config.files)?;
        }
        if !self.open.contains_key(key) {
            if self.open.len() >= MAX_OPEN
                && let Some(oldest) = self
                    .open
                    .iter()
                    .min_by_key(|(_, o)| o.last)
                    .map(|(k, _)| k.clone())
                && let Some(mut o) = self.open.remove(&oldest)
            {
                let _ = o.file.flush();
            }
            create_private_dir(&dir)?;
            let mut file = private_append(&dir.join(FILE))?;
            let mut size = file.metadata()?.len();
            // A line torn by a crash mid-write ends here, not in the next.
            if size > 0 && !ends_with_newline(&dir.join(FILE))? {
                file.write_all(b"\n")?;
                size += 1;
            }
            self.open.insert(
                key.to_string(),
                Open {
                    file: BufWriter::with_capacity(16 * 1024, file),
                    size,
                    last: 0,
                },
            );
            // An existing file already over the size rotates first.
            if size > 0 && size + len > self.config.file_bytes {
                return self.append(key, record);
            }
        }
        let Some(o) = self.open.get_mut(key) else {
            return Ok(());
        };
        o.file.write_all(record)?;
        o.size += len;
        o.last = self.tick;
        Ok(())
    }

    fn flush(&mut self) {
        let mut failed = Vec::new();
        for (key, o) in &mut self.open {
            if o.file.flush().is_err() {
                failed.push(key.clone());
            }
        }
        for key in failed {
            self.open.remove(&key);
        }
    }
}

/// `output.log` becomes `.1`, `.1` becomes `.2`, …; the oldest beyond
/// `files` is overwritten.
fn rotate_files(dir: &Path, files: usize) -> io::Result<()> {
    if files <= 1 {
        return match fs::remove_file(dir.join(FILE)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    }
    for i in (1..files).rev() {
        match fs::rename(dir.join(name(i - 1)), dir.join(name(i))) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

fn ends_with_newline(path: &Path) -> io::Result<bool> {
    use std::os::unix::fs::FileExt;
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut last = [0u8; 1];
    if len == 0 {
        return Ok(true);
    }
    file.read_exact_at(&mut last, len - 1)?;
    Ok(last[0] == b'\n')
}

fn name(i: usize) -> String {
    if i == 0 {
        FILE.to_string()
    } else {
        format!("{FILE}.{i}")
    }
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

fn private_append(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    File::options()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

/// A replica's files, newest first, opened together (under the rotation
/// lock: renames after this do not change what is read).
fn open_all(dir: &Path, files: usize) -> io::Result<Vec<File>> {
    let mut out = Vec::new();
    for i in 0..files.max(1) {
        match File::open(dir.join(name(i))) {
            Ok(f) => out.push(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => break,
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Reads newest file first and stops once it has what it wants: for a
/// tail usually only the end of the newest (a refill at an agent's start
/// reads a few hundred KiB per replica, not its whole 10 MiB).
fn read(
    config: &DiskConfig,
    files: Vec<File>,
    want: Want,
    limit: usize,
) -> io::Result<Vec<Record>> {
    // Newest record first.
    let mut found: Vec<Record> = Vec::new();
    // For `Previous`: seen the latest run's start, so in the one before.
    let mut in_previous = false;
    let cap = config.file_bytes.saturating_add(64 * 1024);
    'files: for mut file in files {
        let window = match want {
            Want::Tail => TAIL_WINDOW.min(cap),
            Want::Previous => cap,
        };
        let mut bytes = read_end(&mut file, window)?;
        // Not enough lines at the end: the whole file, within its cap.
        let need = limit.saturating_sub(found.len());
        if window < cap && bytes.iter().filter(|b| **b == b'\n').count() <= need {
            bytes = read_end(&mut file, cap)?;
        }
        let text = String::from_utf8_lossy(&bytes);
        for line in text.lines().rev() {
            let Some(record) = parse(line) else {
                continue;
            };
            match (want, record.kind) {
                (Want::Tail, Kind::Run) => continue,
                // A run that wrote nothing: the one before it is shown.
                (Want::Previous, Kind::Run) if in_previous && found.is_empty() => continue,
                (Want::Previous, Kind::Run) if in_previous => break 'files,
                (Want::Previous, Kind::Run) => {
                    in_previous = true;
                    continue;
                }
                (Want::Previous, _) if !in_previous => continue,
                _ => {}
            }
            if found.len() == limit {
                break 'files;
            }
            found.push(record);
        }
    }
    found.reverse();
    Ok(found)
}

/// The last `max` bytes of a file, from a line's start (a cut first line
/// is dropped).
fn read_end(file: &mut File, max: u64) -> io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let len = file.metadata()?.len();
    let cut = len > max;
    file.seek(SeekFrom::Start(len.saturating_sub(max)))?;
    let mut out = Vec::with_capacity(len.min(max) as usize);
    file.take(max).read_to_end(&mut out)?;
    if cut {
        let start = out
            .iter()
            .position(|b| *b == b'\n')
            .map_or(out.len(), |i| i + 1);
        out.drain(..start);
    }
    Ok(out)
}

fn parse(line: &str) -> Option<Record> {
    let (at, rest) = line.split_once(' ')?;
    let (kind, text) = rest.split_once(' ').unwrap_or((rest, ""));
    let kind = match kind {
        "out" => Kind::Out,
        "err" => Kind::Err,
        "run" => Kind::Run,
        _ => return None,
    };
    Some(Record {
        at_ms: at.parse().ok()?,
        kind,
        text: text.to_string(),
    })
}

/// A handle for one replica: its writer and its directory name.
#[derive(Clone)]
pub struct ReplicaDisk {
    pub logs: DiskLogs,
    pub key: String,
}

#[cfg(test)]
#[path = "disk_tests.rs"]
mod tests;
