//! `skr8tr logs APP [-f | --previous] [--replica ID]`: an app's output,
//! through the conductor (signed and audited: workload output is guarded
//! like a mutation). With `-f`, new lines are printed as they come; with
//! `--previous`, the output of each replica's run before the latest (a
//! crash's last words), which nodes keep on disk.

use crate::api::{self, Ctx};
use crate::show;
use anyhow::bail;
use http_body_util::BodyExt;
use skr8tr_proto::command::Command;
use skr8tr_proto::wire::{self, ReplicaLog};
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    app: String,
    /// Keep printing new lines
    #[arg(short, long, conflicts_with = "previous")]
    follow: bool,
    /// Show each replica's previous run (before its last restart), from
    /// the node's files
    #[arg(short, long)]
    previous: bool,
    /// Only this replica (`app/generation/index`, from `skr8tr ps`)
    #[arg(long)]
    replica: Option<String>,
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    let command = if args.previous {
        Command::PreviousLogs {
            app: args.app.clone(),
            replica: args.replica.clone(),
        }
    } else {
        Command::Logs {
            app: args.app.clone(),
            replica: args.replica.clone(),
            follow: args.follow,
        }
    };
    ctx.block_on(async {
        let client = ctx.anonymous_client()?;
        let request = api::signed_request(ctx, &client, command, vec![]).await?;
        let response = client
            .post_streaming("/v1/logs", request, Duration::from_secs(30))
            .await?;
        let status = response.status();
        let mut body = response.into_body();
        // Whole answers are read within a cap, like every other answer.
        let whole = |body| async move {
            http_body_util::Limited::new(body, 8 * skr8tr_proto::wire::MAX_BODY_BYTES)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .map_err(|e| anyhow::anyhow!("the conductor's answer cannot be read: {e}"))
        };
        if !status.is_success() {
            let bytes = whole(body).await?;
            return Err(api::refused(&bytes));
        }
        if !args.follow {
            let bytes = whole(body).await?;
            let logs: Vec<ReplicaLog> =
                wire::decode(&bytes).map_err(|e| anyhow::anyhow!("unreadable answer: {e}"))?;
            print(ctx, &logs)?;
            return Ok(ExitCode::SUCCESS);
        }
        // Frames: u32 big-endian length, then postcard of Vec<ReplicaLog>.
        let mut buf: Vec<u8> = Vec::new();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                buf.extend_from_slice(&data);
            }
            while buf.len() >= 4 {
                let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
                if len > skr8tr_proto::wire::MAX_BODY_BYTES * 4 {
                    bail!("the conductor sent a {len}-byte frame; giving up on this stream");
                }
                if buf.len() < 4 + len {
                    break;
                }
                let logs: Vec<ReplicaLog> = wire::decode(&buf[4..4 + len])
                    .map_err(|e| anyhow::anyhow!("unreadable frame: {e}"))?;
                buf.drain(..4 + len);
                print(ctx, &logs)?;
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn print(ctx: &Ctx, logs: &[ReplicaLog]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if ctx.json {
        for log in logs {
            writeln!(out, "{}", serde_json::to_string(log)?)?;
        }
        return Ok(out.flush()?);
    }
    let many = logs.len() > 1;
    for log in logs {
        let replica = show::line(&log.replica);
        if let Some(e) = &log.error {
            eprintln!("{replica}: {}", show::line(e));
        }
        for line in &log.lines {
            let stream = if line.stderr { "!" } else { " " };
            // Workload output: shown, its escape sequences not obeyed.
            let text = show::line(&line.text);
            let at = super::history::utc(line.at_ms);
            if many {
                writeln!(out, "{replica} {at}{stream} {text}")?;
            } else {
                writeln!(out, "{at}{stream} {text}")?;
            }
        }
    }
    Ok(out.flush()?)
}
