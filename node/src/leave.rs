//! `skr8tr node leave`: asks the agent running on a data directory to
//! shut down with its replicas (see `agent::Exit::Leave`) and waits for it
//! to finish. This is what a host shutdown runs; a plain SIGTERM (an
//! agent restart) leaves the replicas running.

use crate::agent::PID_FILE;
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum LeaveError {
    #[error(
        "no node agent runs on {dir} ({file} is missing or unreadable: {why}); \
         pass the agent's --data directory"
    )]
    NoPidFile {
        dir: String,
        file: String,
        why: String,
    },
    #[error("{file} does not hold a pid: {text:?}")]
    BadPid { file: String, text: String },
    #[error(
        "process {pid} (from {file}) is not the skr8tr node agent of this data directory; \
         the agent is gone and left a stale pid file"
    )]
    NotAnAgent { pid: u32, file: String },
    #[error("cannot signal the agent (pid {pid}): {source}")]
    Signal { pid: u32, source: std::io::Error },
    #[error("the agent (pid {pid}) is still running after {waited:?}; see its log")]
    Timeout { pid: u32, waited: Duration },
}

/// Signals the agent of `data_dir` and waits up to `wait` for it to exit.
/// Returns its pid.
pub fn leave(data_dir: &Path, wait: Duration) -> Result<u32, LeaveError> {
    let file = data_dir.join(PID_FILE);
    let shown = file.display().to_string();
    let mut head = Vec::with_capacity(32);
    std::fs::File::open(&file)
        .and_then(|f| std::io::Read::read_to_end(&mut std::io::Read::take(f, 32), &mut head))
        .map_err(|e| LeaveError::NoPidFile {
            dir: data_dir.display().to_string(),
            file: shown.clone(),
            why: e.to_string(),
        })?;
    let text = String::from_utf8_lossy(&head).into_owned();
    let pid: u32 = text.trim().parse().map_err(|_| LeaveError::BadPid {
        file: shown.clone(),
        text: text.clone(),
    })?;
    // A pid file outlives a killed agent, and the pid may be reused: only
    // a `skr8tr … node` process, and one given this data directory when
    // it names one, is signalled.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let words: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let same_dir = |arg: &[u8]| {
        use std::os::unix::ffi::OsStrExt;
        let theirs = Path::new(std::ffi::OsStr::from_bytes(arg));
        let theirs = match std::fs::read_link(format!("/proc/{pid}/cwd")) {
            Ok(cwd) if theirs.is_relative() => cwd.join(theirs),
            _ => theirs.to_path_buf(),
        };
        match (theirs.canonicalize(), data_dir.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => theirs == data_dir,
        }
    };
    let is_agent = words.first().is_some_and(|w| w.ends_with(b"skr8tr"))
        && words.iter().any(|w| *w == b"node")
        && words
            .windows(2)
            .find(|w| w[0] == b"--data")
            .is_none_or(|w| same_dir(w[1]));
    if !is_agent {
        if cmdline.is_empty() {
            // No such process: the pid file is stale.
            let _ = std::fs::remove_file(&file);
        }
        return Err(LeaveError::NotAnAgent { pid, file: shown });
    }
    crate::process::group::ask_to_leave(pid)
        .map_err(|source| LeaveError::Signal { pid, source })?;
    let started = Instant::now();
    while crate::process::procfs::is_running(pid) {
        if started.elapsed() > wait {
            return Err(LeaveError::Timeout { pid, waited: wait });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(pid)
}
