//! `skr8tr`: the one binary. Operator commands, key management and (as later
//! subcommands) the conductor, node and ingress daemons.
//!
//! Layout: `main` parses flags and maps errors to exit codes; each
//! subcommand lives in its own file under `cmd/`.

#![forbid(unsafe_code)]

mod cmd;
mod table;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "skr8tr",
    version,
    about = "A small orchestrator for bare processes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create an ML-DSA-65 operator key pair (signing.sec, signing.pub).
    Keygen(cmd::keygen::Args),
    /// Check manifests and print one line per app, or every error found.
    Validate(cmd::validate::Args),
    /// Print the fingerprint of a public or secret key file.
    Fingerprint(cmd::fingerprint::Args),
}

/// Exit code when the command ran but found problems (invalid manifest,
/// refused key, …). Usage errors exit with 2, from clap.
const FAILURE: u8 = 1;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Keygen(args) => cmd::keygen::run(args),
        Command::Validate(args) => cmd::validate::run(args),
        Command::Fingerprint(args) => cmd::fingerprint::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(FAILURE)
        }
    }
}

/// `skr8tr validate … | head` must not complain when `head` exits early.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// `~/.skr8tr`, where keys and the dev cluster live by default.
pub fn home_dir() -> anyhow::Result<PathBuf> {
    match std::env::var_os("HOME") {
        Some(home) if !home.is_empty() => Ok(PathBuf::from(home).join(".skr8tr")),
        _ => {
            anyhow::bail!("HOME is not set; pass the directory explicitly (for example --out DIR)")
        }
    }
}
