//! `skr8tr nodes`: every node the conductor has heard from.

use crate::api::{self, Ctx};
use skr8tr_proto::wire::NodeView;
use std::process::ExitCode;

pub fn run(ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let nodes: Vec<NodeView> =
        ctx.block_on(async { api::get(&ctx.client()?, "/v1/nodes").await })?;
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&nodes)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![
        [
            "NODE",
            "ADDRESS",
            "STATE",
            "REPLICAS",
            "CPU",
            "RAM",
            "LAST REPORT",
            "LIMITS",
            "LABELS",
        ]
        .map(String::from),
    ];
    for n in nodes {
        let state = state(&n);
        rows.push([
            n.name,
            n.address,
            state,
            n.replicas.to_string(),
            format!(
                "{:.1}/{:.1}",
                n.cpu_used_millis as f64 / 1000.0,
                n.cpu_millis as f64 / 1000.0
            ),
            format!("{}/{} MiB", n.ram_used_bytes >> 20, n.ram_bytes >> 20),
            format!("{:.1}s ago", n.last_report_ms_ago as f64 / 1000.0),
            format!(
                "limits: {}{}",
                n.limits.as_deref().unwrap_or("off"),
                if n.wasm { ", wasm" } else { "" }
            ),
            if n.labels.is_empty() {
                "-".to_string()
            } else {
                n.labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            },
        ]);
    }
    crate::table::print(&mut std::io::stdout().lock(), rows)?;
    Ok(ExitCode::SUCCESS)
}

/// `ready`, `lost`, then what else an operator should know about it.
fn state(n: &NodeView) -> String {
    let mut parts = vec![if n.alive { "ready" } else { "lost" }.to_string()];
    if n.cordoned {
        parts.push("cordoned".into());
    }
    if n.alive && n.leaving {
        parts.push("leaving".into());
    }
    if n.alive && n.clock_skew_ms.abs() > skr8tr_proto::wire::CLOCK_SKEW_WARN_MS {
        parts.push(format!(
            "clock-skew {:+.0}s",
            n.clock_skew_ms as f64 / 1000.0
        ));
    }
    parts.join(", ")
}
