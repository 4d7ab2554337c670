//! `skr8tr up FILE`: deploy every app of a manifest. Secret values are
//! replaced by salted digests in the signed text and sent beside it, so the
//! audit log never holds them.

use crate::api::{self, Ctx};
use anyhow::{Context, bail};
use skr8tr_proto::command::Command;
use skr8tr_proto::manifest::{MAX_MANIFEST_BYTES, secrets};
use skr8tr_proto::wire::SecretValue;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// The manifest (.skr8tr)
    file: PathBuf,
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    let (file, manifest, secrets) = read_manifest(&args.file)?;
    let reply = ctx.block_on(api::send(ctx, Command::Up { file, manifest }, secrets))?;
    api::finish(ctx, reply)
}

/// Reads a manifest and takes its secret values out: the file name to
/// sign, the redacted text, and the values to send beside it.
pub fn read_manifest(path: &std::path::Path) -> anyhow::Result<(String, String, Vec<SecretValue>)> {
    let name = path.display().to_string();
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .with_context(|| format!("cannot read {name}"))?
        .take(MAX_MANIFEST_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {name}"))?;
    let text = String::from_utf8(bytes).map_err(|_| anyhow::anyhow!("{name} is not UTF-8 text"))?;
    let (signed_text, values) = match secrets::redact(&name, &text, salt) {
        Ok(r) => r,
        Err(diags) => {
            eprintln!("{diags}");
            bail!("{name} has {} error(s); nothing was sent", diags.len());
        }
    };
    let file = path
        .file_name()
        .map_or(name.clone(), |f| f.to_string_lossy().into_owned());
    let secrets = values.into_iter().map(SecretValue::from).collect();
    Ok((file, signed_text, secrets))
}

fn salt() -> [u8; 16] {
    let mut s = [0u8; 16];
    // Without randomness the digest is still a commitment, only easier to
    // guess for a weak secret; the OS generator does not fail in practice.
    let _ = getrandom::fill(&mut s);
    s
}
