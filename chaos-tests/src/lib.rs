//! The chaos harness: real processes that tests start, kill and partition,
//! and the invariants they check (no acknowledged state lost, nothing
//! half-written, no replica duplicated, no request dropped).
//!
//! Layout:
//! - `bin/store-writer.rs`: opens a store and commits signed commands from
//!   several threads, printing each acknowledgement; the crash test kills it.
//! - `bin/store-bench.rs`: the store benchmark behind `bench/store`.
//! - `bin/workload.rs`: `skr8tr-workload`, the replica the cluster tests
//!   run (identity on `/`, `/healthz`, crash/fail/job flags).
//! - [`attack`]: slow, holding and flooding strangers against a port.
//! - [`harness`]: a real cluster (conductor and nodes as `skr8tr`
//!   processes) with wait-for-condition helpers.
//! - [`procs`]: one-off HTTP, signed bodies, /proc readings.
//! - [`schedule`]: the random fault schedule of `run.sh`, its invariants
//!   and table.
//! - [`fleet`]: hosts as network namespaces on a bridge; cuts and loss.
//! - [`disk`]: a small tmpfs that can be filled (the full-disk tests).
//! - [`load`]: `Load`, requests through the ingress or to replicas.
//! - [`workload`]: the store programs' command and checks.
//! - `tests/store_crash.rs`: SIGKILL the writer at random moments, reopen,
//!   check every acknowledged write and the audit chain.
//! - `tests/cluster.rs`: deploy, spread, heal, security and conductor
//!   restart with real processes.

// Test tooling: a failed expectation here is a failed test or benchmark,
// and `expect` says which.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![forbid(unsafe_code)]

pub mod attack;
pub mod disk;
pub mod fleet;
pub mod harness;
pub mod load;
pub mod procs;
pub mod schedule;
pub mod sim;
pub mod workload;
