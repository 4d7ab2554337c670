//! `skr8tr ping`: is the conductor there, which cluster, which key.

use crate::api::{self, Ctx};
use skr8tr_proto::wire::PingReply;
use std::process::ExitCode;
use std::time::Instant;

pub fn run(ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let reply: PingReply =
        ctx.block_on(async { api::get(&ctx.anonymous_client()?, "/v1/ping").await })?;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    if ctx.json {
        println!(
            "{}",
            serde_json::json!({
                "conductor": ctx.conductor,
                "cluster": reply.cluster.to_string(),
                "conductor_key": reply.conductor_key.to_string(),
                "version": reply.version,
                "resyncing": reply.resyncing,
                "ms": ms,
            })
        );
    } else {
        println!(
            "{} answered in {ms:.1} ms: cluster {}, conductor key {}, skr8tr {}{}",
            ctx.conductor,
            reply.cluster,
            reply.conductor_key,
            reply.version,
            if reply.resyncing { ", re-syncing" } else { "" }
        );
    }
    Ok(ExitCode::SUCCESS)
}
