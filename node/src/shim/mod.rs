//! The per-replica shim: `skr8tr shim DIR`, a small process between the
//! node agent and one replica process, as Nomad's executor and
//! containerd's shim are. It is what lets the agent restart (an upgrade:
//! stop, replace the binary, start) without touching replicas, and what
//! makes sure a dead agent leaves nothing behind.
//!
//! The shim:
//! - is started by the agent in a session of its own, with no parent-death
//!   signal, so it outlives the agent; its stdin is one end of a socket
//!   pair that carries the launch [`Plan`] (secrets included: they never
//!   touch the disk) and then stays the control connection;
//! - marks itself a child subreaper, so every orphan of the replica's tree,
//!   `setsid` children included, becomes its child and is found again;
//! - forks the replica into its own process group and cgroup (joined
//!   before exec), with a parent-death signal pointing at the shim;
//! - reads the replica's stdout and stderr, splits lines and forwards them;
//!   while no agent is connected it keeps the last [`AWAY_LINES`] lines and
//!   hands them over when one connects again (older ones are dropped, and
//!   a line says how many);
//! - listens on `DIR/ctl.sock` (the directory is the node's, mode 0700) for
//!   a restarted agent, which gets a [`Hello`] with everything it needs to
//!   adopt the replica: the assignment, pid, port, restarts and readiness;
//! - when no agent has been connected for the plan's grace, kills the
//!   whole tree and exits: nothing outlives a dead agent for longer;
//! - on `Stop`, sends SIGTERM to the replica's group, waits up to the drain
//!   for the leader, then SIGKILLs the whole tree (descendants and cgroup
//!   members) until none is left, and reports the [`Exit`], OOM kills
//!   included.
//!
//! Memory: one single-threaded process with no async runtime; see
//! ARCHITECTURE.md for the measured cost per replica.
//!
//! Layout: this file, the protocol (frames of postcard, length-prefixed);
//! `run`: the shim process's loop; `output`: its pipes and away buffer;
//! `sys`: the fork and the peer check; `client`: the agent's side.

use crate::cgroup::ReplicaCgroup;
use serde::{Deserialize, Serialize};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

pub mod client;
mod output;
mod run;
mod sys;

pub use run::main;

/// Lines kept while no agent is connected.
pub const AWAY_LINES: usize = 1000;
/// Bytes kept while no agent is connected.
pub const AWAY_BYTES: usize = 1 << 20;
/// Largest frame either side accepts: a launch plan holds a spec, its env
/// and secrets (a manifest is at most 1 MiB).
pub const MAX_FRAME: usize = 4 << 20;
/// The control socket in a replica's directory.
pub const SOCKET: &str = "ctl.sock";
/// Longest path a Unix socket address can hold (`sun_path`, with its NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// What the shim runs, and how.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub replica: String,
    pub app: String,
    pub generation: u64,
    pub port: u16,
    /// Restarts so far, kept for a restarted agent.
    pub restarts: u32,
    /// The assignment (postcard) this replica runs, echoed to a restarted
    /// agent, which needs the spec before the conductor answers.
    #[serde(with = "serde_bytes")]
    pub assignment: Vec<u8>,
    pub program: String,
    pub args: Vec<String>,
    /// The whole environment: the shim starts from an empty one.
    pub env: Vec<(String, String)>,
    pub cwd: Option<PathBuf>,
    /// `user` / `group`, resolved by the agent.
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub cgroup: Option<ReplicaCgroup>,
    /// How long the replica outlives a disconnected agent, ms.
    pub grace_ms: u64,
}

/// What the shim tells an agent that connects.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub replica: String,
    pub app: String,
    pub generation: u64,
    pub port: u16,
    pub restarts: u32,
    #[serde(with = "serde_bytes")]
    pub assignment: Vec<u8>,
    pub pid: u32,
    pub started_at_ms: u64,
    /// The readiness the last agent told it.
    pub ready: bool,
    /// Set when the replica ended while no agent was connected.
    pub exited: Option<Exit>,
    /// The shim's own pid.
    pub shim_pid: u32,
}

/// How a replica process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// Killed by the kernel for exceeding its cgroup's memory limit.
    pub oom: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToShim {
    Plan(Box<Plan>),
    /// SIGTERM, up to `drain_ms` for the leader, then SIGKILL the tree.
    Stop {
        drain_ms: u64,
    },
    /// The agent's view of readiness, kept for the next agent.
    Ready(bool),
    /// For an app with `disconnect { stop-after }`: the replica may run
    /// `for_ms` more, as far as the conductor's contact goes. Renewed
    /// every second while the node hears from the conductor; once it runs
    /// out (a partition, a frozen or dead agent) the shim stops the
    /// replica (SIGTERM, `drain_ms`, SIGKILL of the tree) by itself.
    Lease {
        for_ms: u64,
        drain_ms: u64,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FromShim {
    Hello(Hello),
    Log {
        stderr: bool,
        text: String,
    },
    Exited(Exit),
    /// The program could not be started; `code` is a shell's (126, 127).
    Failed {
        error: String,
        code: i32,
    },
}

/// A replica's directory under the node's data dir: a fixed-length name,
/// so the control socket's path stays short.
pub fn replica_dir(data_dir: &Path, replica: &str) -> PathBuf {
    data_dir
        .join("replicas")
        .join(crate::cgroup::short_hash(replica))
}

/// Refuses a data directory whose replica sockets would not fit in a Unix
/// socket address.
pub fn check_data_dir(data_dir: &Path) -> Result<(), String> {
    let longest = replica_dir(data_dir, "").join(SOCKET);
    let len = longest.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(format!(
            "the data directory {} is too long for the replicas' control sockets \
             ({len} bytes, at most {MAX_SOCKET_PATH} with `/replicas/<16 hex>/ctl.sock`): \
             choose a shorter --data",
            data_dir.display()
        ));
    }
    Ok(())
}

/// Writes one frame: a little-endian u32 length, then postcard.
pub fn write_frame<T: Serialize>(w: &mut impl Write, value: &T) -> io::Result<()> {
    let body = skr8tr_proto::wire::encode(value);
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
    frame.extend_from_slice(&body);
    w.write_all(&frame)
}

/// Reads one frame written by [`write_frame`], refusing one over
/// [`MAX_FRAME`]. End of stream is `UnexpectedEof`.
pub fn read_frame<T: serde::de::DeserializeOwned>(r: &mut impl Read) -> io::Result<T> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let body = read_body(r, u32::from_le_bytes(len) as usize)?;
    decode(&body)
}

fn read_body(r: &mut impl Read, len: usize) -> io::Result<Vec<u8>> {
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a {len}-byte frame is over the {MAX_FRAME}-byte limit"),
        ));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    Ok(body)
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(body: &[u8]) -> io::Result<T> {
    skr8tr_proto::wire::decode(body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_big_ones_are_refused() {
        let mut buf = Vec::new();
        let msg = ToShim::Stop { drain_ms: 2000 };
        write_frame(&mut buf, &msg).unwrap();
        write_frame(&mut buf, &ToShim::Ready(true)).unwrap();
        let mut r = buf.as_slice();
        assert_eq!(read_frame::<ToShim>(&mut r).unwrap(), msg);
        assert_eq!(read_frame::<ToShim>(&mut r).unwrap(), ToShim::Ready(true));
        assert_eq!(
            read_frame::<ToShim>(&mut r).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
        let huge = ((MAX_FRAME + 1) as u32).to_le_bytes();
        let err = read_frame::<ToShim>(&mut huge.as_slice()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let garbage = [3u8, 0, 0, 0, 0xff, 0xff, 0xff];
        assert!(read_frame::<ToShim>(&mut garbage.as_slice()).is_err());
    }

    #[test]
    fn long_data_dirs_are_refused_with_the_limit() {
        assert!(check_data_dir(Path::new("/var/lib/skr8tr/node")).is_ok());
        let long = PathBuf::from(format!("/{}", "d".repeat(90)));
        let err = check_data_dir(&long).unwrap_err();
        assert!(err.contains("shorter --data"), "{err}");
    }
}
