//! `skr8tr node --conductor URL --conductor-key FILE [--name NAME]
//! [--advertise IP] [--port-range A-B] [--data DIR]`: the node agent.

use anyhow::Context;
use skr8tr_node::agent::NodeConfig;
use skr8tr_proto::keys;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    /// The conductor's public key (DATA/conductor.pub on the conductor host)
    #[arg(long, value_name = "FILE")]
    conductor_key: PathBuf,
    /// This node's name [default: the host name]
    #[arg(long)]
    name: Option<String>,
    /// The address replicas are reached at
    #[arg(long, default_value = "127.0.0.1")]
    advertise: IpAddr,
    /// Ports for `port auto` replicas
    #[arg(long, default_value = "20000-29999", value_parser = port_range)]
    port_range: (u16, u16),
    /// Where the node keeps its pid file and volumes [default: ~/.skr8tr/node-NAME]
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Report at least this often
    #[arg(long, default_value = "1s", value_parser = crate::duration)]
    heartbeat: Duration,
    /// A join ticket from `skr8tr ticket NAME`, needed on the first join
    #[arg(long, value_name = "FILE")]
    ticket: Option<PathBuf>,
    /// The log endpoint's bounds (defaults: 32 connections, 16 per
    /// address, 5s header, 30s idle, 5s body timeouts)
    #[command(flatten)]
    bounds: super::listen::ListenFlags,
}

pub fn run(conductor: String, args: Args) -> anyhow::Result<ExitCode> {
    crate::init_tracing();
    let conductor_key = keys::read_public_key(&args.conductor_key)?;
    let name = match args.name {
        Some(n) => n,
        None => std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .context("cannot read the host name; pass --name")?,
    };
    let data_dir = match args.data {
        Some(d) => d,
        None => crate::home_dir()?.join(format!("node-{name}")),
    };
    let config = NodeConfig {
        conductor,
        conductor_key,
        name,
        advertise: args.advertise,
        port_range: args.port_range,
        data_dir,
        heartbeat: args.heartbeat,
        log_lines: 1000,
        ticket: args
            .ticket
            .as_deref()
            .map(super::ticket::read)
            .transpose()?,
        limits: skr8tr_node::Limits {
            logs: args.bounds.apply(skr8tr_node::Limits::default().logs),
        },
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(skr8tr_node::agent::run(config, crate::shutdown_signal()))?;
    Ok(ExitCode::SUCCESS)
}

fn port_range(text: &str) -> Result<(u16, u16), String> {
    let err = || format!("`{text}` is not a port range like 20000-29999");
    let (a, b) = text.split_once('-').ok_or_else(err)?;
    let (a, b): (u16, u16) = (a.parse().map_err(|_| err())?, b.parse().map_err(|_| err())?);
    if a == 0 || a > b {
        return Err(err());
    }
    Ok((a, b))
}
