//! `skr8tr status`: every app, desired vs placed vs ready.

use crate::api::{self, Ctx};
use skr8tr_proto::wire::StatusReply;
use std::process::ExitCode;

pub fn run(ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let reply: StatusReply =
        ctx.block_on(async { api::get(&ctx.client()?, "/v1/status").await })?;
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&reply.apps)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = std::io::stdout().lock();
    let resync = if reply.resyncing {
        " (re-syncing after a restart)"
    } else {
        ""
    };
    use std::io::Write;
    writeln!(
        out,
        "cluster {}  nodes {} alive, {} lost{resync}",
        reply.cluster, reply.nodes_alive, reply.nodes_lost
    )?;
    if reply.apps.is_empty() {
        writeln!(out, "no apps; deploy one with `skr8tr up FILE`")?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![
        [
            "APP", "TYPE", "GEN", "READY", "RUNNING", "DESIRED", "SCALE", "NOTE",
        ]
        .map(String::from),
    ];
    let mut autoscaled = Vec::new();
    for a in reply.apps {
        if let (Some(decision), Some((min, max))) = (&a.autoscale, a.scale) {
            let last = match &a.last_scale {
                Some((ago, what)) => format!("{what} ({}s ago)", ago / 1000),
                None => "none since the conductor started".to_string(),
            };
            autoscaled.push(format!(
                "{}: autoscales {min}-{max}; now: {decision}; last change: {last}",
                a.name
            ));
        }
        rows.push([
            a.name,
            a.kind,
            a.generation.to_string(),
            format!("{}/{}", a.ready, a.desired),
            a.running.to_string(),
            a.desired.to_string(),
            a.scale
                .map(|(min, max)| format!("{min}-{max}"))
                .unwrap_or_else(|| "-".into()),
            a.rollout
                .map(|r| format!("rolling out {r}"))
                .or(a.unplaced)
                .unwrap_or_default(),
        ]);
    }
    crate::table::print(&mut out, rows)?;
    for line in autoscaled {
        writeln!(out, "{line}")?;
    }
    Ok(ExitCode::SUCCESS)
}
