//! Processes of replicas: fork + exec of one replica, signals to its
//! process group, the pid file of running groups, and `/proc` reading. The
//! only module tree of the node allowed to use `unsafe` (libc calls), each
//! block with its `SAFETY:` reason.
//!
//! A replica is a process group: its first process is the group leader
//! (`pgid == pid`), and stopping a replica signals the whole group, so
//! helpers it forked go too.
//!
//! Layout:
//! - `spawn`: [`LaunchPlan`] → [`spawn`] → [`Running`]; `$PORT` expansion,
//!   the environment a replica gets.
//! - `group`: [`ProcessGroup`], [`stop`] (SIGTERM → drain → SIGKILL), [`is_alive`].
//! - `pidfile`: `DATA_DIR/replicas.pids` and [`kill_leftovers`].
//! - [`procfs`]: `/proc/PID/stat` and `statm`, CPU and RSS [`Sampler`].

#![allow(unsafe_code)]

mod group;
mod pidfile;
pub mod procfs;
mod spawn;

pub use group::{ProcessGroup, is_alive, kill_group_now, stop};
pub use pidfile::{PID_FILE, PidFile, kill_leftovers};
pub use procfs::{Sampler, Usage, cpu_ticks, millicores, rss_bytes};
pub use spawn::{LaunchPlan, Running, SpawnError, expand_port, spawn};
