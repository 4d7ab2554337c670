//! The replica's output in the shim: its two pipes read without blocking
//! and split into lines of at most `MAX_LINE_BYTES`, and the bounded
//! buffer kept while no agent is connected.

use super::{AWAY_BYTES, AWAY_LINES};
use crate::logs::MAX_LINE_BYTES;
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

/// One replica's output pipe and the line being read from it.
pub(super) struct Pipe {
    pub(super) fd: OwnedFd,
    stderr: bool,
    line: Vec<u8>,
    cut: usize,
}

impl Pipe {
    pub(super) fn new(fd: OwnedFd, stderr: bool) -> Pipe {
        // SAFETY: fcntl on a descriptor we own.
        unsafe {
            let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
            libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
        Pipe {
            fd,
            stderr,
            line: Vec::new(),
            cut: 0,
        }
    }

    /// Reads what is there; `None` at end of file.
    pub(super) fn read(&mut self, lines: &mut Vec<(bool, String)>) -> Option<()> {
        let mut buf = [0u8; 16 * 1024];
        // SAFETY: read into a buffer we own, at most its length.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n == 0 {
            self.flush(lines);
            return None;
        }
        if n < 0 {
            let err = io::Error::last_os_error();
            return matches!(
                err.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            )
            .then_some(());
        }
        let mut data = &buf[..n as usize];
        while let Some(i) = data.iter().position(|b| *b == b'\n') {
            self.take(&data[..i]);
            self.flush(lines);
            data = &data[i + 1..];
        }
        self.take(data);
        Some(())
    }

    fn take(&mut self, bytes: &[u8]) {
        let room = MAX_LINE_BYTES.saturating_sub(self.line.len());
        let keep = bytes.len().min(room);
        self.line.extend_from_slice(&bytes[..keep]);
        self.cut += bytes.len() - keep;
    }

    fn flush(&mut self, lines: &mut Vec<(bool, String)>) {
        if self.line.is_empty() && self.cut == 0 {
            return;
        }
        if self.line.last() == Some(&b'\r') {
            self.line.pop();
        }
        let mut text = String::from_utf8_lossy(&self.line).into_owned();
        if self.cut > 0 {
            text.push_str(&format!(" …[{} bytes truncated]", self.cut));
        }
        lines.push((self.stderr, text));
        self.line.clear();
        self.cut = 0;
    }
}

/// Output kept while no agent is connected: the newest lines, bounded.
#[derive(Default)]
pub(super) struct Away {
    pub(super) lines: VecDeque<(bool, String)>,
    bytes: usize,
    pub(super) dropped: u64,
}

impl Away {
    pub(super) fn push(&mut self, line: (bool, String)) {
        self.bytes += line.1.len();
        self.lines.push_back(line);
        while self.lines.len() > AWAY_LINES || self.bytes > AWAY_BYTES {
            if let Some((_, old)) = self.lines.pop_front() {
                self.bytes -= old.len();
                self.dropped += 1;
            }
        }
    }
}
