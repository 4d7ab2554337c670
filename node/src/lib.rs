//! The node agent: long-polls the conductor for its signed assignment set,
//! starts and stops replicas by fork + exec, health-checks them, keeps a log
//! ring buffer per replica, measures CPU and RAM, and reports every change.
//! Keeps no state but its key: a restarted agent takes on the replicas its
//! predecessor left running (each under its own shim) and rebuilds the
//! rest from the conductor.
//!
//! Layout:
//! - [`agent`]: `run` — the entry point; wires everything below.
//! - [`sync`]: long-poll for conductor-signed assignments, converge, report.
//! - [`supervisor`]: keeps assigned replicas running — one task per replica:
//!   port, spawn, probes, restart with backoff, drain when unassigned;
//!   `reports()` and `logs()` for the sync loop.
//! - [`shim`]: `skr8tr shim`, the small per-replica supervisor that forks
//!   the replica, owns its tree and cgroup, forwards its output, and
//!   outlives the agent by a grace; the agent's client for it.
//! - [`cgroup`]: v2/v1 detection, per-replica memory and CPU limits, OOM
//!   kill counts.
//! - [`process`]: what a replica runs (program, args, env), whole-tree
//!   kills, the old `replicas.pids` leftovers, /proc CPU and RSS sampling.
//!   With `shim`, the only modules with `unsafe`.
//! - [`build`]: `build { run; out }` run once per app and build block,
//!   cached under `DATA/builds/`.
//! - [`leave`]: `skr8tr node leave`: signal the agent of a data directory
//!   to shut down with its replicas, and wait for it.
//! - [`identity`]: `user`/`group` to uid/gid from /etc/passwd and /etc/group.
//! - [`health`]: HTTP (hyper client) and TCP probes, bounded by a timeout.
//! - [`logs`]: per-replica ring of the last N stdout/stderr lines, 16 KiB
//!   per line at most.
//! - [`logs_server`]: serves log lines to conductor-signed requests only.
//! - [`metrics`]: what `/metrics` shows (`--metrics-listen`).
//! - [`limits`]: [`Limits`] — the log endpoint's bounds, with defaults.

#![deny(unsafe_code)]

pub use limits::Limits;

pub mod agent;
pub mod build;
pub mod cgroup;
pub mod health;
pub mod identity;
pub mod leave;
pub mod limits;
pub mod logs;
pub mod logs_server;
pub mod metrics;
pub mod process;
#[allow(unsafe_code)]
pub mod shim;
pub mod supervisor;
pub mod sync;
