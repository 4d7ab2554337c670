//! `skr8tr rollout FILE [--detach]` and `skr8tr rollback APP [--detach]`:
//! start a rolling update (or a roll back), then show it step by step until
//! it completes or reverts. Exits 1 if it reverted.

use crate::api::{self, Ctx};
use anyhow::bail;
use skr8tr_proto::command::Command;
use skr8tr_proto::wire::{HistoryPage, StatusReply};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct RolloutArgs {
    /// The manifest with the new version of the app(s)
    file: PathBuf,
    /// Return once the rollout has started
    #[arg(long)]
    detach: bool,
}

#[derive(clap::Args)]
pub struct RollbackArgs {
    app: String,
    /// Return once the roll back has started
    #[arg(long)]
    detach: bool,
}

pub fn rollout(ctx: &Ctx, args: RolloutArgs) -> anyhow::Result<ExitCode> {
    let (reply, apps) = ctx.block_on(async {
        let client = ctx.anonymous_client()?;
        let sealing = super::up::sealing_key(&client).await?;
        let (file, manifest) = super::up::read_manifest(&args.file, &sealing)?;
        let apps: Vec<String> = skr8tr_proto::manifest::parse(&file, &manifest)
            .map(|specs| specs.into_iter().map(|s| s.name).collect())
            .unwrap_or_default();
        let reply = api::send_on(ctx, &client, Command::Rollout { file, manifest }, vec![]).await?;
        anyhow::Ok((reply, apps))
    })?;
    follow(ctx, reply, apps, args.detach)
}

pub fn rollback(ctx: &Ctx, args: RollbackArgs) -> anyhow::Result<ExitCode> {
    let reply = ctx.block_on(api::send(
        ctx,
        Command::Rollback {
            app: args.app.clone(),
        },
        vec![],
    ))?;
    follow(ctx, reply, vec![args.app], args.detach)
}

pub(crate) fn follow(
    ctx: &Ctx,
    reply: skr8tr_proto::wire::CommandReply,
    apps: Vec<String>,
    detach: bool,
) -> anyhow::Result<ExitCode> {
    let seq = reply.seq.unwrap_or(0);
    let rolling = reply.message.contains("rolling out");
    api::finish(ctx, reply)?;
    if detach || !rolling || ctx.json {
        return Ok(ExitCode::SUCCESS);
    }
    let started = Instant::now();
    // Per app: the last entry shown (entries of several apps interleave).
    let mut shown: std::collections::HashMap<String, u64> =
        apps.iter().map(|a| (a.clone(), seq)).collect();
    let mut reverted = false;
    // A bar per app on a terminal (its step); the history lines either way.
    let mut progress = crate::progress::Progress::new(&apps, false, false);
    let followed = ctx.block_on(async {
        let client = ctx.client()?;
        loop {
            // Status first: the entry that ends a rollout is committed with
            // the end itself, so the history read after sees it.
            let status: StatusReply = api::get(&client, "/v1/status").await?;
            let mut running = false;
            for a in status.apps.iter().filter(|a| apps.contains(&a.name)) {
                if let Some(line) = &a.rollout {
                    running = true;
                    let (step, of) = crate::progress::rollout_step(line).unwrap_or((0, 1));
                    progress.set(&a.name, step, of, line);
                }
            }
            for app in &apps {
                let path = format!("/v1/history?app={app}&limit=200");
                let entries = api::get::<HistoryPage>(&client, &path).await?.entries;
                let since = shown.get(app).copied().unwrap_or(seq);
                for e in entries
                    .iter()
                    .filter(|e| e.seq > since && e.summary.starts_with("rollout "))
                {
                    progress.line(&format!(
                        "{:>6.1}s  {}",
                        started.elapsed().as_secs_f64(),
                        crate::show::line(&e.summary)
                    ));
                    reverted |= e.summary.contains("reverted to generation");
                    shown.insert(app.clone(), e.seq);
                }
            }
            if !running {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        anyhow::Ok(())
    });
    progress.finish();
    followed?;
    if reverted {
        bail!(
            "the rollout was reverted; the previous generation is serving (see above and `skr8tr history`)"
        );
    }
    println!("done in {:.1}s", started.elapsed().as_secs_f64());
    Ok(ExitCode::SUCCESS)
}
