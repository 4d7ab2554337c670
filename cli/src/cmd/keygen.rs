//! `skr8tr keygen [--out DIR] [--force]`

use anyhow::Context;
use skr8tr_proto::keys::{self, SecretKey};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Directory for signing.sec and signing.pub [default: ~/.skr8tr]
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Replace an existing key pair (the old secret key is lost).
    #[arg(long)]
    force: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let dir = match args.out {
        Some(dir) => dir,
        None => crate::home_dir()?,
    };
    let key = SecretKey::generate().context("cannot generate a key")?;
    let (secret, public) = keys::write_key_pair(&dir, &key, args.force)?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "secret key   {} (mode 0600: keep it private)",
        secret.display()
    )?;
    writeln!(out, "public key   {}", public.display())?;
    writeln!(out, "fingerprint  {}", key.public().fingerprint())?;
    Ok(ExitCode::SUCCESS)
}
