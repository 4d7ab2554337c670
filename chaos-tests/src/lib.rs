//! The chaos harness: real processes that tests start, kill and partition,
//! and the invariants they check (no acknowledged state lost, nothing
//! half-written, no replica duplicated, no request dropped).
//!
//! Layout:
//! - `bin/store-writer.rs`: opens a store and commits signed commands from
//!   several threads, printing each acknowledgement; the crash test kills it.
//! - `bin/store-bench.rs`: the store benchmark behind `bench/store`.
//! - [`workload`]: shared helpers for those programs and the tests.
//! - `tests/store_crash.rs`: SIGKILL the writer at random moments, reopen,
//!   check every acknowledged write and the audit chain.

#![forbid(unsafe_code)]

pub mod workload;
