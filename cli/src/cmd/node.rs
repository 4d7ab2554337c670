//! `skr8tr node --conductor URL --conductor-key FILE [--name NAME]
//! [--advertise IP] [--port-range A-B] [--data DIR]`: the node agent; and
//! `skr8tr node revoke|drain|uncordon NAME`, the signed commands that
//! forget a node's key, cordon it and move its replicas, or lift that.

use anyhow::Context;
use skr8tr_node::agent::NodeConfig;
use skr8tr_proto::keys;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Args {
    #[command(subcommand)]
    action: Option<Action>,
    /// The conductor's public key (DATA/conductor.pub on the conductor host)
    #[arg(long, value_name = "FILE", required = true)]
    conductor_key: Option<PathBuf>,
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
    /// How long replicas keep running after this agent is gone: an
    /// upgrade (stop, replace the binary, start) must finish within it.
    /// Default: the conductor's default lost-node timeout
    #[arg(long, default_value = "5s", value_parser = crate::duration)]
    grace: Duration,
    /// On SIGTERM, leave with the replicas (as `skr8tr node leave` does)
    /// instead of leaving them running for the next agent
    #[arg(long)]
    stop_replicas_on_exit: bool,
    /// How long leaving waits for the replicas to move away and routers
    /// to stop sending to them before it stops them anyway
    #[arg(long, default_value = "30s", value_parser = crate::duration)]
    leave_timeout: Duration,
    /// Run replicas without cgroups, so `ram` and `cpus` are not enforced
    #[arg(long)]
    no_limits: bool,
    /// A label for `constraint` and `spread` (repeatable): --label zone=a
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = label)]
    labels: Vec<(String, String)>,
    /// Let apps run as `user root` (refused by default)
    #[arg(long)]
    allow_root: bool,
    /// What runs `type wasm` modules, with its flags: it gets `--env K=V`
    /// for the app's variables, the module, then `args` [default: `wasmtime
    /// run` when wasmtime is on PATH]
    #[arg(long, value_name = "CMD")]
    wasm_runtime: Option<String>,
    /// Serve Prometheus metrics (plain HTTP, GET /metrics) on this
    /// address: bind a loopback or private address
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<std::net::SocketAddr>,
    /// Replica output is also kept in DATA/logs, in files rotated at this
    /// many MiB (1 to 64: a read holds a whole file)
    #[arg(long, value_name = "MIB", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=64))]
    log_file_mib: u64,
    /// Files kept per replica, the current one included (0: no logs on
    /// disk, `logs --previous` has nothing to show)
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u64).range(0..=10))]
    log_files: u64,
    /// The log endpoint's bounds (defaults: 32 connections, 16 per
    /// address, 5s header, 30s idle, 5s body timeouts)
    #[command(flatten)]
    bounds: super::listen::ListenFlags,
}

#[derive(clap::Subcommand)]
pub enum Action {
    /// Forget a node's key (signed, audited): its requests are refused at
    /// once and its replicas move; `skr8tr ticket NAME` admits a new key.
    Revoke {
        /// The node's name
        name: String,
    },
    /// Cordon a node for maintenance (signed, audited): nothing new is
    /// placed there, and each replica it runs moves away surge-first (its
    /// replacement ready before it stops), so no request fails.
    Drain {
        /// The node's name
        name: String,
    },
    /// Let a drained node take new replicas again (signed, audited).
    Uncordon {
        /// The node's name
        name: String,
    },
    /// Shut the local agent down with its replicas, for a host shutdown:
    /// they move away surge-first and leave the registry, routers are
    /// seen to drop them, then they stop. (SIGTERM alone restarts: the
    /// replicas keep running for the next agent.)
    Leave {
        /// The agent's data directory [default: ~/.skr8tr/node-NAME]
        #[arg(long, value_name = "DIR")]
        data: Option<PathBuf>,
        /// The node's name, for the default data directory [default: the host name]
        #[arg(long)]
        name: Option<String>,
        /// How long to wait for the agent to finish
        #[arg(long, default_value = "120s", value_parser = crate::duration)]
        wait: Duration,
    },
}

pub fn run(ctx: &crate::api::Ctx, args: Args) -> anyhow::Result<ExitCode> {
    use skr8tr_proto::command::Command;
    let command = match args.action {
        Some(Action::Revoke { name }) => Some(Command::RevokeNode { name }),
        Some(Action::Drain { name }) => Some(Command::DrainNode { name }),
        Some(Action::Uncordon { name }) => Some(Command::UncordonNode { name }),
        Some(Action::Leave { data, name, wait }) => {
            let dir = match data {
                Some(d) => d,
                None => crate::home_dir()?.join(format!("node-{}", node_name(name)?)),
            };
            let pid = skr8tr_node::leave::leave(&dir, wait)?;
            println!("node agent {pid} left: its replicas moved away and were stopped");
            return Ok(ExitCode::SUCCESS);
        }
        None => None,
    };
    if let Some(command) = command {
        let reply = ctx.block_on(crate::api::send(ctx, command, vec![]))?;
        return crate::api::finish(ctx, reply);
    }
    let conductor = ctx.conductor.clone();
    crate::init_tracing();
    let key_file = args
        .conductor_key
        .context("--conductor-key FILE is required to run a node")?;
    let conductor_key = keys::read_public_key(&key_file)?;
    let name = node_name(args.name)?;
    let data_dir = match args.data {
        Some(d) => d,
        None => crate::home_dir()?.join(format!("node-{name}")),
    };
    let config = NodeConfig {
        conductor,
        pin: ctx.pin()?,
        conductor_key,
        name,
        advertise: args.advertise,
        port_range: args.port_range,
        data_dir,
        heartbeat: args.heartbeat,
        log_lines: 1000,
        log_file_bytes: args.log_file_mib << 20,
        log_files: args.log_files as usize,
        ticket: args
            .ticket
            .as_deref()
            .map(super::ticket::read)
            .transpose()?,
        limits: skr8tr_node::Limits {
            logs: args.bounds.apply(skr8tr_node::Limits::default().logs),
        },
        shim: std::env::current_exe().context("cannot find the skr8tr binary for shims")?,
        grace: args.grace,
        leave_timeout: args.leave_timeout,
        no_limits: args.no_limits,
        labels: labels(args.labels)?,
        allow_root: args.allow_root,
        wasm_runtime: args.wasm_runtime,
        metrics_listen: args.metrics_listen,
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(skr8tr_node::agent::run(
            config,
            exit_signal(args.stop_replicas_on_exit),
        ))?;
    Ok(ExitCode::SUCCESS)
}

/// `--name`, or the host name.
fn node_name(name: Option<String>) -> anyhow::Result<String> {
    match name {
        Some(n) => Ok(n),
        None => std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .context("cannot read the host name; pass --name"),
    }
}

/// SIGUSR1 (`skr8tr node leave`): leave with the replicas. SIGTERM or
/// Ctrl-C: a restart, replicas kept — or leave, with
/// `--stop-replicas-on-exit`.
async fn exit_signal(leave_on_term: bool) -> skr8tr_node::agent::Exit {
    use skr8tr_node::agent::Exit;
    use tokio::signal::unix::{SignalKind, signal};
    let on_term = if leave_on_term {
        Exit::Leave
    } else {
        Exit::KeepReplicas
    };
    let Ok(mut usr1) = signal(SignalKind::user_defined1()) else {
        crate::shutdown_signal().await;
        return on_term;
    };
    tokio::select! {
        _ = crate::shutdown_signal() => on_term,
        _ = usr1.recv() => Exit::Leave,
    }
}

/// `KEY=VALUE`: both parts lowercase letters, digits, `-`, `_` and `.`,
/// at most 63 characters each.
fn label(text: &str) -> Result<(String, String), String> {
    let (k, v) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not a label like zone=a"))?;
    let ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 63
            && s.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
            })
    };
    if !ok(k) || !ok(v) {
        return Err(format!(
            "label `{text}`: key and value must be 1-63 lowercase letters, digits, `-`, `_` or `.`"
        ));
    }
    Ok((k.to_string(), v.to_string()))
}

/// Sorted by key; a key given twice is an error.
fn labels(mut labels: Vec<(String, String)>) -> anyhow::Result<Vec<(String, String)>> {
    labels.sort();
    if let Some(w) = labels.windows(2).find(|w| w[0].0 == w[1].0) {
        anyhow::bail!("--label {} is given twice; give each key once", w[0].0);
    }
    Ok(labels)
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
