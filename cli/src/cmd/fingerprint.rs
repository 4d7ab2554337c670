//! `skr8tr fingerprint [FILE]`

use skr8tr_proto::keys;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// A public (.pub) or secret (.sec) key file [default: ~/.skr8tr/signing.sec]
    #[arg(value_name = "FILE", env = "SKR8TR_KEY")]
    file: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let path = match args.file {
        Some(p) => p,
        None => crate::home_dir()?.join(keys::SECRET_KEY_FILE),
    };
    // Peek at the PEM label to know which reader (and which checks) apply.
    let mut head = [0u8; 64];
    let n = std::fs::File::open(&path)
        .and_then(|mut f| f.read(&mut head))
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let is_secret = String::from_utf8_lossy(&head[..n]).contains("PRIVATE KEY");
    let fingerprint = if is_secret {
        keys::read_secret_key(&path)?.public().fingerprint()
    } else {
        keys::read_public_key(&path)?.fingerprint()
    };
    writeln!(std::io::stdout().lock(), "{fingerprint}")?;
    Ok(ExitCode::SUCCESS)
}
