//! `skr8tr plan FILE`: what `skr8tr up FILE` would change — per app, a
//! diff of the spec, replicas added or removed, how a rollout would
//! replace them, and warnings — and the index it was computed at, for
//! `skr8tr up FILE --check-index N`. Signed and audited like `up` (the
//! conductor computes it, as only it can tell whether sealed secrets
//! changed), and it changes nothing.

use crate::api::{self, Ctx};
use skr8tr_proto::command::Command;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// The manifest (.skr8tr)
    file: PathBuf,
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    let reply = ctx.block_on(async {
        let client = ctx.anonymous_client()?;
        let sealing = super::up::sealing_key(&client).await?;
        let (file, manifest) = super::up::read_manifest(&args.file, &sealing)?;
        api::send_on(ctx, &client, Command::Plan { file, manifest }, vec![]).await
    })?;
    if ctx.json || !reply.accepted {
        return api::finish(ctx, reply);
    }
    let text = crate::show::text(&reply.message);
    println!("{text}");
    // The conductor ends with `index N`: how to apply this plan, with the
    // path as given here.
    if let Some(index) = text.lines().last().and_then(|l| l.strip_prefix("index ")) {
        println!(
            "apply it with: skr8tr up {} --check-index {index}",
            args.file.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
