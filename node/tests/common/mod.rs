//! Helpers shared by the node's integration tests.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::path::PathBuf;

/// The `skr8tr` binary, whose `shim` subcommand runs under each replica.
pub fn shim_bin() -> PathBuf {
    let mut dir = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join("skr8tr");
    assert!(
        bin.exists(),
        "{} is missing: build it first with `cargo build -p skr8tr` (cargo test --workspace does)",
        bin.display()
    );
    bin
}
