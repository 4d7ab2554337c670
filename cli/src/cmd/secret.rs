//! `skr8tr secret set APP NAME [--file FILE]`: rotate one secret value.
//! The value (from FILE, or stdin; one trailing newline dropped) is sealed
//! to the conductor's ML-KEM key here, sent in a signed command — audited
//! with only the ciphertext — and rolled out as a new generation of the
//! app, one replica at a time, like `skr8tr rollout`.

use crate::api::{self, Ctx};
use anyhow::Context;
use skr8tr_proto::command::Command;
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
    let value = match &file {
        Some(path) => {
            let opened = std::fs::File::open(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            super::up::read_value(opened, &format!("the value from {}", path.display()))?
        }
        None => super::up::read_value(std::io::stdin(), "the value from stdin")?,
    };
    let reply = ctx.block_on(async {
        let client = ctx.anonymous_client()?;
        let sealing = super::up::sealing_key(&client).await?;
        let sealed = sealing
            .seal(&app, &name, &value)
            .map_err(|e| anyhow::anyhow!("cannot seal the value: {e}"))?;
        let command = Command::SetSecret {
            app: app.clone(),
            name,
            value: sealed,
        };
        api::send_on(ctx, &client, command, vec![]).await
    })?;
    super::rollout::follow(ctx, reply, vec![app], detach)
}
