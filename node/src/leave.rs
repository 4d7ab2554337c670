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
        "process {pid} (from {file}) is not a skr8tr node agent; the agent is gone \
         and left a stale pid file, which is now removed"
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
    let text = std::fs::read_to_string(&file).map_err(|e| LeaveError::NoPidFile {
        dir: data_dir.display().to_string(),
        file: shown.clone(),
        why: e.to_string(),
    })?;
    let text = text.chars().take(32).collect::<String>();
    let pid: u32 = text.trim().parse().map_err(|_| LeaveError::BadPid {
        file: shown.clone(),
        text: text.clone(),
    })?;
    // A pid file outlives a killed agent, and the pid may be reused: only
    // a process that is this binary's `node` agent is signalled.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let words: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let is_agent = words.first().is_some_and(|w| w.ends_with(b"skr8tr"))
        && words.get(1).is_some_and(|w| *w == b"node");
    if !is_agent {
        let _ = std::fs::remove_file(&file);
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
