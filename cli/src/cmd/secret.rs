//! `skr8tr secret set APP NAME [--file FILE]`: rotate one secret value.
//! The value (from FILE, or stdin; one trailing newline dropped) is sealed
//! to the conductor's ML-KEM key here, sent in a signed command — audited
//! with only the ciphertext — and rolled out as a new generation of the
//! app, one replica at a time, like `skr8tr rollout`.

use crate::api::{self, Ctx};
use anyhow::{Context, bail};
use skr8tr_proto::command::Command;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum Args {
    /// Set secret NAME of APP and roll the app out with it.
    Set {
        app: String,
        name: String,
        /// Read the value from this file instead of stdin
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
        /// Return once the rollout has started
        #[arg(long)]
        detach: bool,
    },
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    let Args::Set {
        app,
        name,
        file,
        detach,
    } = args;
    let limit = super::up::MAX_SECRET_FILE_BYTES;
    let mut bytes = Vec::new();
    let from = match &file {
        Some(path) => {
            std::fs::File::open(path)
                .with_context(|| format!("cannot read {}", path.display()))?
                .take(limit + 1)
                .read_to_end(&mut bytes)
                .with_context(|| format!("cannot read {}", path.display()))?;
            path.display().to_string()
        }
        None => {
            std::io::stdin()
                .take(limit + 1)
                .read_to_end(&mut bytes)
                .context("cannot read the value from stdin")?;
            "stdin".to_string()
        }
    };
    if bytes.len() as u64 > limit {
        bail!("the value from {from} is larger than {limit} bytes");
    }
    let mut value = String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("the value from {from} is not UTF-8"))?;
    if value.ends_with('\n') {
        value.pop();
        if value.ends_with('\r') {
            value.pop();
        }
    }
    let sealing = ctx.block_on(super::up::sealing_key(ctx))?;
    let sealed = sealing
        .seal(&app, &name, &value)
        .map_err(|e| anyhow::anyhow!("cannot seal the value: {e}"))?;
    let command = Command::SetSecret {
        app: app.clone(),
        name,
        value: sealed,
    };
    let reply = ctx.block_on(api::send(ctx, command, vec![]))?;
    super::rollout::follow(ctx, reply, vec![app], detach)
}
