//! `skr8tr ui`: the live, read-only status page (see `crate::ui`).

use crate::api::Ctx;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    /// Where to serve the page: a loopback address only
    #[arg(long, default_value = "127.0.0.1:7780")]
    listen: std::net::SocketAddr,
    /// How often the conductor is read
    #[arg(long, default_value = "1s", value_parser = crate::duration)]
    every: Duration,
    /// How long one live-update stream lasts before the browser opens
    /// another
    #[arg(long, default_value = "5m", value_parser = crate::duration)]
    stream_for: Duration,
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    let options = crate::ui::Options {
        listen: args.listen,
        every: args.every.max(Duration::from_millis(100)),
        stream_for: args.stream_for.max(Duration::from_secs(1)),
    };
    ctx.block_on(crate::ui::serve(ctx, options))?;
    Ok(ExitCode::SUCCESS)
}
