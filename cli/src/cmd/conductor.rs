//! `skr8tr conductor --data DIR [--listen ADDR] [--init-key PUB]`: the
//! control plane daemon.

use anyhow::Context;
use skr8tr_conductor::Config;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    /// Where the cluster's state lives (created with --init-key)
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    /// Address of the HTTP API
    #[arg(long, default_value = "127.0.0.1:7771")]
    listen: SocketAddr,
    /// The first operator public key, when creating the cluster
    #[arg(long, value_name = "PUB")]
    init_key: Option<PathBuf>,
    /// A node silent this long is lost and its replicas move
    #[arg(long, default_value = "5s", value_parser = crate::duration)]
    lost_after: Duration,
    /// During a rollout, how long a new replica may take to become ready
    /// before the rollout reverts [default: 5 x the health interval, at
    /// least 10s; settle + 10s without a health check]
    #[arg(long, value_parser = crate::duration)]
    step_timeout: Option<Duration>,
    /// The API socket's bounds (defaults: 4096 connections, 256 per
    /// address, 10s header, 60s idle, 30s body timeouts)
    #[command(flatten)]
    bounds: super::listen::ListenFlags,
    /// Request bodies held at once, all connections together
    #[arg(long, default_value = "67108864", value_name = "BYTES")]
    max_buffered: usize,
    /// Length of a budget window for unverified refusals (tests only: the
    /// documented budget is per minute)
    #[arg(long, hide = true, value_parser = crate::duration)]
    refusal_window: Option<Duration>,
    /// Serve Prometheus metrics (plain HTTP, GET /metrics) on this
    /// address, apart from the API: bind a loopback or private address
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
    /// Autoscaling: scale out once CPU stayed above `cpu-above` this long
    #[arg(long, default_value = "10s", value_parser = crate::duration)]
    scale_out_after: Duration,
    /// Autoscaling: scale in once CPU stayed below `cpu-below` this long
    #[arg(long, default_value = "60s", value_parser = crate::duration)]
    scale_in_after: Duration,
    /// Autoscaling: no change sooner than this after the last one
    #[arg(long, default_value = "30s", value_parser = crate::duration)]
    scale_cooldown: Duration,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    crate::init_tracing();
    let mut config = Config::new(args.data.clone());
    config.lost_after = args.lost_after;
    config.step_timeout = args.step_timeout;
    config.limits.api = args.bounds.apply(config.limits.api);
    config.limits.max_buffered_bytes = args.max_buffered;
    if let Some(w) = args.refusal_window {
        config.refusal_window = w;
    }
    config.autoscale = skr8tr_conductor::autoscale::Windows {
        out_after: args.scale_out_after,
        in_after: args.scale_in_after,
        cooldown: args.scale_cooldown,
    };
    // Long enough for every live node to report once more, even one in its
    // slowest retry backoff (2 s) after a failed request.
    config.resync_timeout = args.lost_after + Duration::from_secs(3);
    let conductor = Arc::new(skr8tr_conductor::open(config, args.init_key.as_deref())?);
    let identity = skr8tr_conductor::tls_identity(&args.data)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        if let Some(addr) = args.metrics_listen {
            let page = skr8tr_conductor::metrics::Metrics::exposition(&conductor);
            skr8tr_net::metrics::start(addr, page).await?;
        }
        tracing::info!(
            listen = %listener.local_addr()?,
            cluster = %conductor.cluster,
            key = %conductor.key.public().fingerprint(),
            tls = %identity.pin(),
            "conductor ready (https; clients pin {})",
            args.data.join(skr8tr_net::tls::PIN_FILE).display()
        );
        skr8tr_conductor::run(conductor, &identity, listener, crate::shutdown_signal()).await?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
