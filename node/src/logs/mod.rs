//! Per-replica log ring: the last N lines of a replica's stdout and stderr,
//! each numbered and timestamped, so `skr8tr logs` can show a tail and a
//! later `logs -f` can ask for what came after the last line it saw.
//!
//! Memory is bounded: at most `capacity` lines of at most [`MAX_LINE_BYTES`]
//! each (1000 × 16 KiB = 16 MiB in the worst case, a few hundred KiB for
//! ordinary logs), however much a replica writes and whether or not it
//! ever writes a newline.
//!
//! The ring is the fast path; `disk` keeps the same lines in rotated files
//! that outlive the agent (and says where each run started).

pub mod disk;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// Default number of lines kept per replica.
pub const DEFAULT_LOG_LINES: usize = 1000;
/// Longest line kept; the rest of a longer line is dropped and counted.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// 1 for the first line of a replica, then +1 per line: a gap between
    /// two lines a reader saw means lines were dropped from the ring.
    pub seq: u64,
    /// When the node read the line (Unix ms).
    pub at_ms: u64,
    pub stream: Stream,
    /// Without its line ending; invalid UTF-8 replaced by U+FFFD.
    pub text: String,
}

/// The last `capacity` lines of one replica.
#[derive(Debug)]
pub struct LogRing {
    lines: VecDeque<LogLine>,
    capacity: usize,
    next_seq: u64,
}

impl LogRing {
    pub fn new(capacity: usize) -> LogRing {
        let capacity = capacity.max(1);
        LogRing {
            lines: VecDeque::with_capacity(capacity.min(64)),
            capacity,
            next_seq: 1,
        }
    }

    /// Appends a line (truncated to [`MAX_LINE_BYTES`]), dropping the oldest
    /// when full. Returns its sequence number.
    pub fn push(&mut self, stream: Stream, text: &str, at_ms: u64) -> u64 {
        self.push_cut(stream, text, 0, at_ms)
    }

    /// Appends a line read back from disk as it was kept (already cut to
    /// the limit, its note included), bounded all the same.
    fn restore(&mut self, stream: Stream, text: &str, at_ms: u64) {
        let cut = boundary(text, MAX_LINE_BYTES + 64);
        self.append(stream, text[..cut].to_string(), at_ms);
    }

    /// Appends a line of which `dropped` bytes were already cut off.
    fn push_cut(&mut self, stream: Stream, text: &str, dropped: usize, at_ms: u64) -> u64 {
        let cut = boundary(text, MAX_LINE_BYTES);
        let dropped = dropped + (text.len() - cut);
        let text = if dropped > 0 {
            format!("{} …[{dropped} bytes truncated]", &text[..cut])
        } else {
            text.to_string()
        };
        self.append(stream, text, at_ms)
    }

    /// Appends a line as given, dropping the oldest when full.
    fn append(&mut self, stream: Stream, text: String, at_ms: u64) -> u64 {
        if self.lines.len() == self.capacity {
            self.lines.pop_front();
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.lines.push_back(LogLine {
            seq,
            at_ms,
            stream,
            text,
        });
        seq
    }

    /// The last `n` lines, oldest first.
    pub fn tail(&self, n: usize) -> Vec<LogLine> {
        let skip = self.lines.len().saturating_sub(n);
        self.lines.iter().skip(skip).cloned().collect()
    }

    /// The lines after sequence number `after` (0: every line kept), oldest
    /// first.
    pub fn since(&self, after: u64) -> Vec<LogLine> {
        let Some(first) = self.lines.front().map(|l| l.seq) else {
            return Vec::new();
        };
        let skip = after.saturating_add(1).saturating_sub(first);
        let skip = usize::try_from(skip).unwrap_or(usize::MAX);
        self.lines.iter().skip(skip).cloned().collect()
    }

    /// The sequence number the next line will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
}

/// The longest prefix of `text` within `max` bytes that ends on a char
/// boundary.
fn boundary(text: &str, max: usize) -> usize {
    let mut cut = text.len().min(max);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    cut
}

/// A [`LogRing`] shared between the tasks that read a replica's output and
/// whoever asks for its lines, and, when the node keeps logs on disk, the
/// replica's files. A std `Mutex`, not Tokio's: nothing awaits while
/// holding it, and every critical section is a push or a copy.
#[derive(Clone)]
pub struct SharedLog(Arc<Shared>);

struct Shared {
    ring: Mutex<LogRing>,
    disk: Option<disk::ReplicaDisk>,
}

impl std::fmt::Debug for SharedLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedLog")
            .field("lines", &self.lock().len())
            .field("disk", &self.0.disk.as_ref().map(|d| &d.key))
            .finish()
    }
}

impl SharedLog {
    pub fn new(capacity: usize) -> SharedLog {
        SharedLog::with_disk(capacity, None)
    }

    /// A ring whose lines also go to `disk`.
    pub fn with_disk(capacity: usize, disk: Option<disk::ReplicaDisk>) -> SharedLog {
        SharedLog(Arc::new(Shared {
            ring: Mutex::new(LogRing::new(capacity)),
            disk,
        }))
    }

    fn lock(&self) -> MutexGuard<'_, LogRing> {
        // A panic while holding the lock cannot leave the ring half-updated
        // in a way that matters (at worst one line is missing): keep going.
        self.0
            .ring
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn push(&self, stream: Stream, text: &str) -> u64 {
        self.push_cut(stream, text, 0)
    }

    fn push_cut(&self, stream: Stream, text: &str, dropped: usize) -> u64 {
        let at_ms = skr8tr_proto::clock::now_ms();
        let (seq, copy) = {
            let mut ring = self.lock();
            let seq = ring.push_cut(stream, text, dropped, at_ms);
            // The ring's copy is the one cut to the line limit.
            let copy = self
                .0
                .disk
                .as_ref()
                .and_then(|_| ring.lines.back().map(|l| l.text.clone()));
            (seq, copy)
        };
        if let (Some(d), Some(text)) = (&self.0.disk, copy) {
            let kind = match stream {
                Stream::Stdout => disk::Kind::Out,
                Stream::Stderr => disk::Kind::Err,
            };
            d.logs.line(&d.key, at_ms, kind, text);
        }
        seq
    }

    /// Marks on disk that a run of the replica starts now (`logs
    /// --previous` reads the run before the latest mark).
    pub fn run_started(&self, what: &str) {
        if let Some(d) = &self.0.disk {
            d.logs.line(
                &d.key,
                skr8tr_proto::clock::now_ms(),
                disk::Kind::Run,
                what.to_string(),
            );
        }
    }

    /// Fills an empty ring with the replica's last lines on disk: what a
    /// restarted agent or a rebooted machine shows before new output.
    /// Blocking (reads files): call it from the blocking pool.
    pub fn refill(&self) {
        let Some(d) = &self.0.disk else {
            return;
        };
        let capacity = self.lock().capacity;
        let records = match d.logs.read(&d.key, disk::Want::Tail, capacity) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("cannot read replica output back from disk: {e}");
                return;
            }
        };
        let mut ring = self.lock();
        if !ring.is_empty() {
            return;
        }
        for r in records {
            let stream = if r.kind == disk::Kind::Err {
                Stream::Stderr
            } else {
                Stream::Stdout
            };
            ring.restore(stream, &r.text, r.at_ms);
        }
    }

    /// Where this replica's files are, if the node keeps any.
    pub fn disk(&self) -> Option<&disk::ReplicaDisk> {
        self.0.disk.as_ref()
    }

    pub fn tail(&self, n: usize) -> Vec<LogLine> {
        self.lock().tail(n)
    }

    pub fn since(&self, after: u64) -> Vec<LogLine> {
        self.lock().since(after)
    }
}

/// Records read back, numbered from 1 like a ring's lines.
pub fn from_disk(records: Vec<disk::Record>) -> Vec<LogLine> {
    records
        .into_iter()
        .zip(1..)
        .map(|(r, seq)| LogLine {
            seq,
            at_ms: r.at_ms,
            stream: if r.kind == disk::Kind::Err {
                Stream::Stderr
            } else {
                Stream::Stdout
            },
            text: r.text,
        })
        .collect()
}

/// Reads `reader` (a child's stdout or stderr) line by line into `log`
/// until end of file or a read error. Never holds more than
/// [`MAX_LINE_BYTES`] of one line: the rest of a longer line is counted and
/// dropped. A last line without a newline is kept too.
pub async fn capture<R: AsyncRead + Unpin>(reader: R, stream: Stream, log: SharedLog) {
    let mut reader = BufReader::with_capacity(8 * 1024, reader);
    let mut line: Vec<u8> = Vec::new();
    let mut dropped = 0usize;
    loop {
        let buf = match reader.fill_buf().await {
            Ok(buf) => buf,
            Err(e) => {
                tracing::debug!("replica {} closed: {e}", stream.as_str());
                break;
            }
        };
        if buf.is_empty() {
            break;
        }
        let (chunk, end_of_line) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (&buf[..i], true),
            None => (buf, false),
        };
        let room = MAX_LINE_BYTES - line.len();
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        dropped += chunk.len().saturating_sub(room);
        let used = chunk.len() + usize::from(end_of_line);
        reader.consume(used);
        if end_of_line {
            emit(&log, stream, &mut line, &mut dropped);
        }
    }
    if !line.is_empty() || dropped > 0 {
        emit(&log, stream, &mut line, &mut dropped);
    }
}

fn emit(log: &SharedLog, stream: Stream, line: &mut Vec<u8>, dropped: &mut usize) {
    if line.last() == Some(&b'\r') && *dropped == 0 {
        line.pop();
    }
    let text = String::from_utf8_lossy(line);
    log.push_cut(stream, &text, *dropped);
    line.clear();
    *dropped = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(lines: &[LogLine]) -> Vec<&str> {
        lines.iter().map(|l| l.text.as_str()).collect()
    }

    #[test]
    fn ring_keeps_the_last_lines_with_sequence_numbers() {
        let mut ring = LogRing::new(3);
        assert!(ring.is_empty());
        assert!(ring.since(0).is_empty());
        for (i, t) in ["a", "b", "c", "d", "e"].iter().enumerate() {
            let stream = if i % 2 == 0 {
                Stream::Stdout
            } else {
                Stream::Stderr
            };
            assert_eq!(ring.push(stream, t, 100 + i as u64), i as u64 + 1);
        }
        assert_eq!(ring.len(), 3);
        assert_eq!(texts(&ring.tail(10)), ["c", "d", "e"]);
        assert_eq!(texts(&ring.tail(2)), ["d", "e"]);
        assert!(ring.tail(0).is_empty());
        let last = ring.tail(1).remove(0);
        assert_eq!(
            (last.seq, last.at_ms, last.stream),
            (5, 104, Stream::Stdout)
        );
        assert_eq!(texts(&ring.since(0)), ["c", "d", "e"]);
        assert_eq!(texts(&ring.since(3)), ["d", "e"]);
        assert!(ring.since(5).is_empty());
        assert!(ring.since(u64::MAX).is_empty());
        assert_eq!(ring.next_seq(), 6);
    }

    #[test]
    fn long_lines_are_truncated_on_a_char_boundary() {
        let mut ring = LogRing::new(2);
        let long = "é".repeat(MAX_LINE_BYTES); // 2 bytes each
        ring.push(Stream::Stdout, &long, 0);
        let kept = &ring.tail(1)[0].text;
        assert!(kept.ends_with(&format!("…[{} bytes truncated]", MAX_LINE_BYTES)));
        assert!(kept.len() < MAX_LINE_BYTES + 64);
        assert!(LogRing::new(0).push(Stream::Stdout, "x", 0) == 1);
    }

    #[tokio::test]
    async fn capture_splits_lines_and_bounds_long_ones() {
        let mut input = b"one\r\ntwo\n\nbad \xff utf8\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', MAX_LINE_BYTES + 10_000));
        input.extend(b"\nlast without newline");
        let log = SharedLog::new(100);
        capture(&input[..], Stream::Stderr, log.clone()).await;
        let lines = log.tail(100);
        let t = texts(&lines);
        assert_eq!(t[..4], ["one", "two", "", "bad \u{fffd} utf8"]);
        assert_eq!(
            t[4].len(),
            MAX_LINE_BYTES + " …[10000 bytes truncated]".len()
        );
        assert!(t[4].ends_with("…[10000 bytes truncated]"));
        assert_eq!(t[5], "last without newline");
        assert_eq!(lines.len(), 6);
        assert!(
            lines
                .iter()
                .all(|l| l.stream == Stream::Stderr && l.at_ms > 0)
        );
        assert_eq!(texts(&log.since(5)), ["last without newline"]);
    }

    #[tokio::test]
    async fn capture_reads_a_real_process() {
        let mut child = tokio::process::Command::new("/bin/sh")
            .args(["-c", "echo out; echo err >&2; printf 'a\\nb'"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let log = SharedLog::new(10);
        let out = tokio::spawn(capture(
            child.stdout.take().unwrap(),
            Stream::Stdout,
            log.clone(),
        ));
        let err = tokio::spawn(capture(
            child.stderr.take().unwrap(),
            Stream::Stderr,
            log.clone(),
        ));
        child.wait().await.unwrap();
        out.await.unwrap();
        err.await.unwrap();
        let mut lines: Vec<(Stream, String)> = log
            .tail(10)
            .into_iter()
            .map(|l| (l.stream, l.text))
            .collect();
        lines.sort_by_key(|(s, t)| (s.as_str(), t.clone()));
        assert_eq!(
            lines,
            [
                (Stream::Stderr, "err".to_string()),
                (Stream::Stdout, "a".to_string()),
                (Stream::Stdout, "b".to_string()),
                (Stream::Stdout, "out".to_string()),
            ]
        );
    }
}
