//! Processes of replicas: what one runs, signals to process groups, the
//! whole tree of a replica, the pid file of older agents, and `/proc`
//! reading. With [`crate::shim`], the only module trees of the node allowed
//! to use `unsafe` (libc calls), each block with its `SAFETY:` reason.
//!
//! Layout:
//! - `spawn`: [`LaunchPlan`] → [`program`] → [`Program`]; `$PORT`
//!   expansion, the environment a replica gets.
//! - `group`: [`ProcessGroup`], [`is_alive`].
//! - [`vm`]: the hypervisor command line of a `vm` block.
//! - [`tree`]: a replica's descendants and cgroup members, killed until
//!   none is left.
//! - `pidfile`: the `replicas.pids` of agents before the shim, and
//!   [`kill_leftovers`].
//! - [`procfs`]: `/proc/PID/stat` and `statm`, CPU and RSS [`Sampler`].

#![allow(unsafe_code)]

pub(crate) mod group;
mod pidfile;
pub mod procfs;
mod spawn;
pub mod tree;
pub mod vm;

pub use group::{ProcessGroup, is_alive, kill_group_now};
pub use pidfile::{PID_FILE, kill_leftovers};
pub use procfs::{Sampler, Usage, cpu_ticks, millicores, rss_bytes};
pub use spawn::{LaunchPlan, Program, SpawnError, environment, expand_port, program};
