//! `build { run …; out … }`: before the first start of a generation, the
//! node runs the build's commands in order (`sh -c`), in a directory of its
//! own under `DATA/builds/`, with the app's environment, their output in
//! the replica's log ring. The product is cached by a digest of the app's
//! name and build block: a restart, a second replica or an agent restart
//! finds it built (`.built` is written last) and runs nothing. A failed
//! build names the command and its exit code; the replica then waits its
//! backoff before the next try, as after any failed start.

use crate::logs::{self, SharedLog, Stream};
use skr8tr_proto::manifest::Build;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Longest one build command may run.
pub const BUILD_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Written into a build directory once every command succeeded.
const DONE: &str = ".built";

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("build failed: `{command}` exited with {code}")]
    Failed { command: String, code: i32 },
    #[error("build failed: `{command}` was killed by signal {signal}")]
    Killed { command: String, signal: i32 },
    #[error("build failed: `{command}` ran longer than {BUILD_TIMEOUT:?}")]
    TimedOut { command: String },
    #[error("build failed: {0}")]
    Io(String),
}

/// The node's builds: one directory per app and build block.
pub struct Builds {
    root: PathBuf,
    /// One lock per build directory: replicas of one app share a build.
    running: Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
}

impl Builds {
    pub fn new(data_dir: &Path) -> Builds {
        Builds {
            root: data_dir.join("builds"),
            running: Mutex::new(HashMap::new()),
        }
    }

    /// Where `app`'s `build` lands.
    pub fn dir(&self, app: &str, build: &Build) -> PathBuf {
        let digest = crate::cgroup::short_hash(&format!("{app}\0{:?}\0{:?}", build.run, build.out));
        self.root.join(format!("{app}-{digest}"))
    }

    /// The build directory of `app`, built now if it is not yet.
    pub async fn ensure(
        &self,
        app: &str,
        build: &Build,
        env: &[(String, String)],
        log: &SharedLog,
    ) -> Result<PathBuf, BuildError> {
        let dir = self.dir(app, build);
        let lock = {
            let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            running.entry(dir.clone()).or_default().clone()
        };
        let _held = lock.lock().await;
        if dir.join(DONE).exists() {
            return Ok(dir);
        }
        let io = |e: std::io::Error| BuildError::Io(format!("{}: {e}", dir.display()));
        if dir.exists() {
            // What a failed or interrupted build left.
            std::fs::remove_dir_all(&dir).map_err(io)?;
        }
        std::fs::create_dir_all(&dir).map_err(io)?;
        for command in &build.run {
            log.push(Stream::Stderr, &format!("skr8tr: build: {command}"));
            run(command, &dir, env, log).await?;
        }
        std::fs::write(dir.join(DONE), b"").map_err(io)?;
        log.push(Stream::Stderr, "skr8tr: build done");
        Ok(dir)
    }
}

async fn run(
    command: &str,
    dir: &Path,
    env: &[(String, String)],
    log: &SharedLog,
) -> Result<(), BuildError> {
    let mut child = tokio::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .current_dir(dir)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| BuildError::Io(format!("cannot run /bin/sh: {e}")))?;
    let out = child
        .stdout
        .take()
        .map(|o| tokio::spawn(logs::capture(o, Stream::Stdout, log.clone())));
    let err = child
        .stderr
        .take()
        .map(|e| tokio::spawn(logs::capture(e, Stream::Stderr, log.clone())));
    let status = match tokio::time::timeout(BUILD_TIMEOUT, child.wait()).await {
        Ok(status) => status.map_err(|e| BuildError::Io(e.to_string()))?,
        Err(_) => {
            // The command's whole process group, not only `sh`.
            if let Some(pgid) = child.id().and_then(crate::process::ProcessGroup::new) {
                crate::process::kill_group_now(pgid);
            }
            let _ = child.start_kill();
            return Err(BuildError::TimedOut {
                command: command.to_string(),
            });
        }
    };
    // A background process the command left may hold the pipes open.
    for task in [out, err].into_iter().flatten() {
        let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
    }
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(0), _) => Ok(()),
        (Some(code), _) => Err(BuildError::Failed {
            command: command.to_string(),
            code,
        }),
        (None, signal) => Err(BuildError::Killed {
            command: command.to_string(),
            signal: signal.unwrap_or(0),
        }),
    }
}
