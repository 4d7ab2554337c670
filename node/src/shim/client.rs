//! The agent's side of a shim: start one for a new replica ([`launch`]),
//! or connect to one a previous agent started ([`connect`]); then forward
//! its output into the replica's log ring and learn how the replica ended.

use super::{Exit, FromShim, Hello, MAX_FRAME, Plan, SOCKET, ToShim, decode};
use crate::logs::{SharedLog, Stream};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::net::unix::OwnedWriteHalf;
use tokio::process::Child;
use tokio::sync::oneshot;

/// A shim answers its agent within this (it starts the replica first).
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Connecting to a shim left by a previous agent.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("cannot start the replica's shim: {0}")]
    Shim(String),
    /// The shim ran, the program did not start; `code` is a shell's.
    #[error("{error}")]
    Failed { error: String, code: i32 },
}

/// A connected shim, before its output is attached.
pub struct Shim {
    pub hello: Hello,
    stream: UnixStream,
    /// The shim process, when this agent started it (and must reap it).
    child: Option<Child>,
}

/// Drives an attached shim.
pub struct Control {
    writer: OwnedWriteHalf,
    child: Option<Child>,
}

/// Starts `exe shim DIR` for `plan` and waits for its hello (the replica
/// has been forked by then).
pub async fn launch(exe: &Path, dir: &Path, plan: &Plan) -> Result<Shim, LaunchError> {
    let shim_err = |e: io::Error| LaunchError::Shim(e.to_string());
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .and_then(|()| {
            use std::os::unix::fs::PermissionsExt;
            // Also when it already existed (a restart, a vm config).
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        })
        .map_err(|e| LaunchError::Shim(format!("{}: {e}", dir.display())))?;
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().map_err(shim_err)?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("shim")
        .arg(dir)
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        // Not the agent's stderr: the shim outlives it, and a file there
        // would be written at a stale offset after the agent's restart.
        // What the shim has to say goes to the replica's log ring.
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // The whole point: the shim outlives the agent.
        .kill_on_drop(false);
    let mut child = cmd
        .spawn()
        .map_err(|e| LaunchError::Shim(format!("{}: {e}", exe.display())))?;
    drop(cmd);
    ours.set_nonblocking(true).map_err(shim_err)?;
    let mut stream = UnixStream::from_std(ours).map_err(shim_err)?;
    let hello = async {
        write_frame(&mut stream, &ToShim::Plan(Box::new(plan.clone()))).await?;
        read_frame::<FromShim>(&mut stream).await
    };
    let answer = tokio::time::timeout(HELLO_TIMEOUT, hello).await;
    match answer {
        Ok(Ok(FromShim::Hello(hello))) => Ok(Shim {
            hello,
            stream,
            child: Some(child),
        }),
        Ok(Ok(FromShim::Failed { error, code })) => {
            let _ = child.wait().await;
            Err(LaunchError::Failed { error, code })
        }
        other => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            Err(LaunchError::Shim(match other {
                Ok(Ok(m)) => format!("unexpected first message {m:?}"),
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no answer within {HELLO_TIMEOUT:?}"),
            }))
        }
    }
}

/// Connects to the shim in `dir`, left running by a previous agent.
pub async fn connect(dir: &Path) -> io::Result<Shim> {
    let timed_out = || io::Error::new(io::ErrorKind::TimedOut, "the shim did not answer");
    let hello = async {
        let mut stream = UnixStream::connect(dir.join(SOCKET)).await?;
        match read_frame::<FromShim>(&mut stream).await? {
            FromShim::Hello(hello) => Ok((hello, stream)),
            other => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unexpected first message {other:?}"),
            )),
        }
    };
    let (hello, stream) = tokio::time::timeout(CONNECT_TIMEOUT, hello)
        .await
        .map_err(|_| timed_out())??;
    Ok(Shim {
        hello,
        stream,
        child: None,
    })
}

impl Shim {
    /// Forwards the shim's output into `log` from here on; the receiver
    /// yields how the replica ended, `None` if the shim vanished without
    /// saying.
    pub fn attach(self, log: SharedLog) -> (Control, oneshot::Receiver<Option<Exit>>) {
        let (mut reader, writer) = self.stream.into_split();
        let (tx, rx) = oneshot::channel();
        tokio::spawn(async move {
            let ended = loop {
                match read_frame::<FromShim>(&mut reader).await {
                    Ok(FromShim::Log { stderr, text }) => {
                        let stream = if stderr {
                            Stream::Stderr
                        } else {
                            Stream::Stdout
                        };
                        log.push(stream, &text);
                    }
                    Ok(FromShim::Exited(exit)) => break Some(exit),
                    Ok(FromShim::Hello(_) | FromShim::Failed { .. }) => {}
                    Err(_) => break None,
                }
            };
            let _ = tx.send(ended);
        });
        (
            Control {
                writer,
                child: self.child,
            },
            rx,
        )
    }
}

impl Control {
    pub async fn send(&mut self, message: &ToShim) -> io::Result<()> {
        write_frame(&mut self.writer, message).await
    }

    /// Waits for the shim process itself, when this agent started it, so
    /// it leaves no zombie.
    pub async fn reap(mut self) {
        if let Some(child) = &mut self.child
            && tokio::time::timeout(Duration::from_secs(5), child.wait())
                .await
                .is_err()
        {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// The shim's pid, when this agent started it.
    pub fn shim_pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }
}

async fn write_frame<T: serde::Serialize>(
    w: &mut (impl AsyncWrite + Unpin),
    value: &T,
) -> io::Result<()> {
    let mut frame = Vec::new();
    super::write_frame(&mut frame, value)?;
    w.write_all(&frame).await
}

async fn read_frame<T: serde::de::DeserializeOwned>(
    r: &mut (impl AsyncRead + Unpin),
) -> io::Result<T> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a {len}-byte frame is over the {MAX_FRAME}-byte limit"),
        ));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    decode(&body)
}
