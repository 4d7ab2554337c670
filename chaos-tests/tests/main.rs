//! Every integration test of the chaos harness, in one test binary (as
//! ripgrep's `tests/tests.rs`), so the crate graph is linked once. Each
//! module is one area; the shared helpers are the crate's own `harness`.
//!
//! - `audit`: forged floods within the audit budget, long logs read in
//!   pages, history that cannot be forged, private data directories.
//! - `autoscale`: an app grows under load and shrinks after it.
//! - `bounds`: slow and flooding clients against every daemon; the static
//!   server's memory with big files.
//! - `clock`: a node whose clock is a minute ahead shows `clock-skew`.
//! - `cluster`: deploy, spread, heal, security, conductor restarts, logs.
//! - `dev`: `skr8tr dev`, the README's main command.
//! - `disconnect`: a `stop-after` app on a frozen node never runs twice.
//! - `disk_logs`: `logs --previous` after a crash, `logs` after an agent
//!   restart and a reboot, from the node's rotated files.
//! - `disk`: the conductor's disk fills up under load, then is freed.
//! - `ingress`: requests through `skr8tr ingress` under kills and rollouts.
//! - `maintenance`: `node drain` and a node stopped with its replicas, under load.
//! - `metrics`: each daemon's `/metrics`, checked by promtool, moving.
//! - `operator`: the operator's tooling: crash-loop notes in `status` and
//!   `ps`, JSON logs, completions and man pages, systemd units verified.
//! - `node_restart`: agents stopped, killed and started again under load;
//!   the grace of a dead agent's replicas.
//! - `partition`: a node cut off from the conductor on a namespaced fleet.
//! - `placement`: labels, constraint, spread, volume apps that wait.
//! - `readme`: the README's walk-through run by bash, line by line as printed.
//! - `restart`: a conductor restarted while its predecessor still holds the lock.
//! - `revoke`: a node's key revoked, its replicas moved, a rebuilt node admitted.
//! - `routes`: `host`/`route` from manifests served with no restart, by
//!   host over HTTP and TLS (SNI), flags winning, `down` removing.
//! - `rollout`: rolling updates under load, reverts, kill -9 mid-rollout.
//! - `runtimes`: build, wasm and vm apps through stand-ins.
//! - `schedule`: a two-minute random fault schedule (seed 42) on a fleet.
//! - `snapshot`: `snapshot save` under commands, verified offline, bad
//!   restores refused, a restore started in place of the old conductor.
//! - `store_crash`: the store's writer killed at random moments.
//! - `ui`: `skr8tr ui` in headless Chromium: changes shown in place, a
//!   screenshot saved; other Host names and writes turned away.
//! - `wire`: a tcpdump capture of the conductor's port holds no secret,
//!   no manifest text and no API path.
//! - `workload`: the test workload itself.

// A test: an unwrap is an assertion (clippy allows it inside #[test]
// functions only; these helpers are part of the tests too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod audit;
mod autoscale;
mod bounds;
mod clock;
mod cluster;
mod dev;
mod disconnect;
mod disk;
mod disk_logs;
mod ingress;
mod maintenance;
mod metrics;
mod node_restart;
mod operator;
mod partition;
mod placement;
mod readme;
mod restart;
mod revoke;
mod rollout;
mod routes;
mod runtimes;
mod schedule;
mod snapshot;
mod store_crash;
mod ui;
mod wire;
mod workload;
