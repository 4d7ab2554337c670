//! `skr8tr lookup APP [--one]`: the app's ready endpoints, or one of them
//! in round-robin order (for scripts that need a single address).

use crate::api::{self, Ctx};
use skr8tr_proto::wire::Endpoint;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    app: String,
    /// Print one endpoint, the next in round-robin order
    #[arg(long)]
    one: bool,
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    let path = format!("/v1/lookup/{}?one={}", args.app, args.one);
    let endpoints: Vec<Endpoint> = ctx.block_on(async { api::get(&ctx.client()?, &path).await })?;
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&endpoints)?);
        return Ok(ExitCode::SUCCESS);
    }
    for e in endpoints {
        println!(
            "{}:{}\t{}",
            crate::show::line(&e.address),
            e.port,
            crate::show::line(&e.replica)
        );
    }
    Ok(ExitCode::SUCCESS)
}
