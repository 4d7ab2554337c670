//! The node agent: long-polls the conductor for its signed assignment set,
//! starts and stops replicas by fork + exec, health-checks them, keeps a log
//! ring buffer per replica, measures CPU and RAM, and reports every change.
//! Stateless: a restarted node rebuilds everything from the conductor, and
//! kills whatever an earlier agent left running.
//!
//! Layout:
//! - [`agent`]: `run` — the entry point; wires everything below.
//! - [`sync`]: long-poll for conductor-signed assignments, converge, report.
//! - [`supervisor`]: keeps assigned replicas running — one task per replica:
//!   port, spawn, probes, restart with backoff, drain when unassigned;
//!   `reports()` and `logs()` for the sync loop.
//! - [`process`]: fork + exec of one replica in its own process group
//!   (PDEATHSIG), SIGTERM → drain → SIGKILL of the group, the
//!   `replicas.pids` file and `kill_leftovers`, /proc CPU and RSS sampling.
//!   The only module with `unsafe`.
//! - [`health`]: HTTP (hyper client) and TCP probes, bounded by a timeout.
//! - [`logs`]: per-replica ring of the last N stdout/stderr lines, 16 KiB
//!   per line at most.
//! - [`logs_server`]: serves log lines to conductor-signed requests only.
//! - [`limits`]: [`Limits`] — the log endpoint's bounds, with defaults.

#![deny(unsafe_code)]

pub use limits::Limits;

pub mod agent;
pub mod health;
pub mod limits;
pub mod logs;
pub mod logs_server;
pub mod process;
pub mod supervisor;
pub mod sync;
