//! `skr8tr ps [APP]`: every replica, where it runs and how it is.

use crate::api::{self, Ctx};
use skr8tr_proto::wire::ReplicaView;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Only this app's replicas
    app: Option<String>,
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    let path = match &args.app {
        Some(app) => format!("/v1/replicas?app={app}"),
        None => "/v1/replicas".to_string(),
    };
    let replicas: Vec<ReplicaView> =
        ctx.block_on(async { api::get(&ctx.client()?, &path).await })?;
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&replicas)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![
        [
            "REPLICA", "NODE", "ENDPOINT", "STATE", "PID", "RESTARTS", "NOTE",
        ]
        .map(String::from),
    ];
    for r in replicas {
        rows.push([
            r.replica,
            r.node,
            r.port.map_or("-".into(), |p| format!("{}:{p}", r.address)),
            r.state.map_or("pending".into(), |s| s.label()),
            r.pid.map_or("-".into(), |p| p.to_string()),
            r.restarts.to_string(),
            r.error.unwrap_or_default(),
        ]);
    }
    crate::table::print(&mut std::io::stdout().lock(), rows)?;
    Ok(ExitCode::SUCCESS)
}
