//! `skr8tr down APP` and `skr8tr scale APP N`: one signed command each.

use crate::api::{self, Ctx};
use skr8tr_proto::command::Command;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct DownArgs {
    /// The app to stop and forget
    app: String,
}

#[derive(clap::Args)]
pub struct ScaleArgs {
    app: String,
    /// Desired replica count
    replicas: u32,
}

pub fn down(ctx: &Ctx, args: DownArgs) -> anyhow::Result<ExitCode> {
    let reply = ctx.block_on(api::send(ctx, Command::Down { app: args.app }, vec![]))?;
    api::finish(ctx, reply)
}

pub fn scale(ctx: &Ctx, args: ScaleArgs) -> anyhow::Result<ExitCode> {
    let command = Command::Scale {
        app: args.app,
        replicas: args.replicas,
    };
    let reply = ctx.block_on(api::send(ctx, command, vec![]))?;
    api::finish(ctx, reply)
}
