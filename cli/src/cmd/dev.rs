//! `skr8tr dev [MANIFEST]`: a whole cluster in one process — conductor,
//! one node and the ingress — with its data under `~/.skr8tr/dev`. Creates
//! an operator key if there is none, admits the node with a ticket it signs
//! itself, deploys the manifest (default `examples/hello.skr8tr`), routes
//! `/` to its first app and `/APP` to each other one, and prints what to try.

use crate::api::{self, Ctx};
use anyhow::Context;
use skr8tr_conductor::Config;
use skr8tr_node::agent::NodeConfig;
use skr8tr_proto::clock::unix_ms;
use skr8tr_proto::command::Command;
use skr8tr_proto::envelope::Envelope;
use skr8tr_proto::keys::{self, SecretKey};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

#[derive(clap::Args)]
pub struct Args {
    /// The manifest to deploy
    #[arg(default_value = "examples/hello.skr8tr")]
    manifest: PathBuf,
    /// Where the dev cluster keeps its state [default: ~/.skr8tr/dev]
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// The conductor's API address
    #[arg(long, default_value = "127.0.0.1:7771")]
    api: SocketAddr,
    /// The ingress address
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    crate::init_tracing();
    let home = crate::home_dir()?;
    let data = args.data.clone().unwrap_or_else(|| home.join("dev"));
    let key_path = ctx
        .key
        .clone()
        .unwrap_or_else(|| home.join(keys::SECRET_KEY_FILE));
    let public_path = key_path.with_file_name(keys::PUBLIC_KEY_FILE);
    if !key_path.exists() {
        let key = SecretKey::generate().context("cannot generate a key")?;
        let dir = key_path.parent().context("the key path has no directory")?;
        keys::write_key_pair(dir, &key, false)?;
        println!(
            "created operator key {} ({})",
            key_path.display(),
            key.public().fingerprint()
        );
    }
    let operator = keys::read_secret_key(&key_path)?;
    // Checked before anything starts; sealed once the conductor is up.
    let name = args.manifest.display().to_string();
    let text =
        std::fs::read_to_string(&args.manifest).with_context(|| format!("cannot read {name}"))?;
    let apps: Vec<String> = match skr8tr_proto::manifest::parse(&name, &text) {
        Ok(specs) => specs.into_iter().map(|a| a.name).collect(),
        Err(diags) => {
            eprintln!("{diags}");
            anyhow::bail!("{name} has {} error(s); nothing was started", diags.len());
        }
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(async move {
            // Conductor.
            let conductor_dir = data.join("conductor");
            let conductor = Arc::new(skr8tr_conductor::open(
                Config::new(conductor_dir.clone()),
                Some(&public_path),
            )?);
            // TLS like any cluster: the dev one pins its own identity.
            let identity = skr8tr_conductor::tls_identity(&conductor_dir)?;
            let pin = identity.pin();
            let pin_file = conductor_dir.join(skr8tr_net::tls::PIN_FILE);
            let api_listener =
                tokio::net::TcpListener::bind(args.api)
                    .await
                    .with_context(|| {
                        format!(
                            "cannot listen on {} (another skr8tr dev? pass --api)",
                            args.api
                        )
                    })?;
            let url = format!("https://{}", api_listener.local_addr()?);
            let served = conductor.clone();
            tokio::spawn(async move {
                skr8tr_conductor::run(served, &identity, api_listener, std::future::pending()).await
            });

            // One node, admitted with a ticket signed here.
            let now = SystemTime::now();
            let admit = Command::AdmitNode {
                name: "dev".into(),
                expires_at_ms: unix_ms(now) + 600_000,
            };
            let ticket = Envelope::sign(&operator, admit, conductor.cluster, now)?.to_bytes();
            let node_config = NodeConfig {
                conductor: url.clone(),
                pin,
                conductor_key: conductor.key.public(),
                name: "dev".into(),
                advertise: "127.0.0.1".parse()?,
                port_range: (20000, 20999),
                data_dir: data.join("node"),
                heartbeat: Duration::from_secs(1),
                log_lines: 1000,
                log_file_bytes: skr8tr_node::agent::DEFAULT_LOG_FILE_BYTES,
                log_files: skr8tr_node::agent::DEFAULT_LOG_FILES,
                ticket: Some(ticket),
                limits: skr8tr_node::Limits::default(),
                shim: std::env::current_exe()?,
                grace: skr8tr_node::agent::DEFAULT_GRACE,
                leave_timeout: skr8tr_node::agent::DEFAULT_LEAVE_TIMEOUT,
                no_limits: false,
                labels: Vec::new(),
                allow_root: false,
                wasm_runtime: None,
                metrics_listen: None,
            };
            let stop = Arc::new(tokio::sync::Notify::new());
            let node_stop = stop.clone();
            // Ctrl-C takes the whole dev cluster down, replicas too.
            let node = tokio::spawn(skr8tr_node::agent::run(node_config, async move {
                node_stop.notified().await;
                skr8tr_node::agent::Exit::StopReplicas
            }));
            wait("the node to join", || conductor.nodes().contains_key("dev")).await?;

            // Deploy, then route.
            let ctx = Ctx {
                conductor: url.clone(),
                pin: Some(pin.to_string()),
                key: Some(key_path.clone()),
                json: false,
            };
            let sealing =
                skr8tr_proto::sealed::SealingKey::from_bytes(conductor.sealing.sealing_key())
                    .map_err(|e| anyhow::anyhow!("the conductor's sealing key: {e}"))?;
            let (file, manifest) = super::up::read_manifest(&args.manifest, &sealing)?;
            let reply = api::send(&ctx, Command::Up { file, manifest }, vec![]).await?;
            if !reply.accepted {
                anyhow::bail!(
                    "deploy refused ({}): {}",
                    reply.code.unwrap_or_default(),
                    reply.message
                );
            }
            println!("{}", crate::show::text(&reply.message));
            let mut routes = Vec::new();
            // `/` goes to the first app; the others get `/APP` (paths are
            // forwarded as they are, prefix included).
            for (i, app) in apps.iter().enumerate() {
                let route = if i == 0 {
                    format!("/:{app}")
                } else {
                    format!("/{app}:{app}")
                };
                routes.push(skr8tr_ingress::Route::parse(&route).map_err(anyhow::Error::msg)?);
            }
            let ingress_listener = tokio::net::TcpListener::bind(args.listen)
                .await
                .with_context(|| format!("cannot listen on {} (pass --listen)", args.listen))?;
            let ingress_addr = ingress_listener.local_addr()?;
            // The ingress reads the registry with a key of its own,
            // admitted by a ticket signed here.
            let admit = Command::AdmitNode {
                name: format!("{}dev", skr8tr_proto::wire::INGRESS_PREFIX),
                expires_at_ms: unix_ms(now) + 600_000,
            };
            let ticket = Envelope::sign(&operator, admit, conductor.cluster, now)?.to_bytes();
            let ingress_key = super::ingress::ingress_key(&data.join("ingress"))?;
            let auth = skr8tr_net::Auth::new(
                Arc::new(ingress_key),
                skr8tr_proto::wire::Role::Ingress("dev".into()),
            )
            .with_ticket(Some(ticket))
            .with_conductor(conductor.key.public());
            let registry = skr8tr_net::Client::new(&url, pin)?.with_auth(auth);
            tokio::spawn(skr8tr_ingress::run(
                skr8tr_ingress::Config::new(registry, routes),
                ingress_listener,
                std::future::pending(),
            ));
            if let Some(first) = apps.first() {
                let c = conductor.clone();
                let first = first.clone();
                wait("the app to be ready", move || {
                    skr8tr_conductor::registry::snapshot(&c, c.now_ms())
                        .is_ok_and(|s| s.apps.get(&first).is_some_and(|e| !e.is_empty()))
                })
                .await?;
            }
            println!();
            println!("open http://{ingress_addr}/");
            println!();
            println!("then, in another terminal:");
            // After `cargo run`, `skr8tr` is not on the PATH: say where it is.
            if let Some(dir) = not_on_path() {
                println!("  export PATH=\"{}:$PATH\"", dir.display());
            }
            // The CLI's defaults reach the dev cluster at its default
            // address and data directory; say so when either moved (or a
            // pinned cluster of the operator's own would come first).
            let default_pin = crate::home_dir()?.join(crate::api::PIN_FILE);
            if args.data.is_some() || default_pin.exists() {
                println!("  export SKR8TR_PIN={}", pin_file.display());
            }
            if args.api.to_string() != "127.0.0.1:7771" {
                println!("  export SKR8TR_CONDUCTOR={url}");
            }
            // Every line runs as printed, pasted into a shell.
            println!("  skr8tr status          # apps, desired and ready replicas");
            println!("  skr8tr ps              # where each replica runs");
            if let Some(app) = apps.first() {
                println!("  skr8tr logs {app}      # its output, signed and audited");
            }
            println!("  skr8tr history         # who did what, when");
            println!("  # edit {name}, then: skr8tr rollout {name}   (a zero-downtime update)");
            println!();
            println!("Ctrl-C stops everything (the replicas with it).");
            crate::shutdown_signal().await;
            stop.notify_waiters();
            let _ = node.await;
            anyhow::Ok(())
        })?;
    Ok(ExitCode::SUCCESS)
}

/// Polls `done` every 10 ms for up to 60 s.
async fn wait(what: &str, mut done: impl FnMut() -> bool) -> anyhow::Result<()> {
    let started = Instant::now();
    while !done() {
        if started.elapsed() > Duration::from_secs(60) {
            anyhow::bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// This binary's directory, when `skr8tr` on the PATH is not this binary
/// (as after `cargo run`).
fn not_on_path() -> Option<std::path::PathBuf> {
    let me = std::env::current_exe().ok()?.canonicalize().ok()?;
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("skr8tr"))
            .find(|p| p.is_file())
    });
    match found.and_then(|p| p.canonicalize().ok()) {
        Some(p) if p == me => None,
        _ => me.parent().map(|d| d.to_path_buf()),
    }
}
