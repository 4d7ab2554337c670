//! `run`: the node agent's entry point. Detects cgroups, takes on the
//! replicas a previous agent left running, reports at once (a node is
//! schedulable as soon as its first report lands), then long-polls and
//! reports until shutdown, when replicas are left running under their
//! shims for the next agent, or stopped (see [`Exit`]: a leaving node
//! first waits until its replicas moved away and no router sends to them).

use crate::cgroup::Cgroups;
use crate::supervisor::{Supervisor, SupervisorConfig};
use crate::sync::{self, NodeSync};
use skr8tr_net::{Auth, Client, Pin};
use skr8tr_proto::keys::{self, KeyFileError, PublicKey, SecretKey};
use skr8tr_proto::wire::Role;
use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;
use tokio::sync::Notify;

#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// `https://HOST:PORT` of the conductor.
    pub conductor: String,
    /// The conductor's TLS identity (`DATA/tls.pin` on its host).
    pub pin: Pin,
    /// The conductor's public key: only sets that came on a session it
    /// proved with this key are run.
    pub conductor_key: PublicKey,
    pub name: String,
    /// Where replicas are reached (and probed).
    pub advertise: IpAddr,
    /// Ports handed to `port auto` replicas.
    pub port_range: (u16, u16),
    /// Pid file and volumes live here; nothing else is kept.
    pub data_dir: PathBuf,
    /// Report at least this often.
    pub heartbeat: Duration,
    /// Lines of output kept per replica.
    pub log_lines: usize,
    /// Replica output on disk: files rotated at this size...
    pub log_file_bytes: u64,
    /// ...this many kept per replica (0: none on disk).
    pub log_files: usize,
    /// An operator-signed join ticket (`skr8tr ticket`), needed the first
    /// time this node (its key in `data_dir`) joins.
    pub ticket: Option<Vec<u8>>,
    pub limits: crate::Limits,
    /// The binary whose `shim` subcommand runs under each replica: the
    /// `skr8tr` binary.
    pub shim: PathBuf,
    /// How long replicas outlive an agent that is gone (default: the
    /// conductor's lost-node timeout, when replacements are placed).
    pub grace: Duration,
    /// How long a leaving node waits for its replicas to move away and
    /// routers to see it before it stops them anyway.
    pub leave_timeout: Duration,
    /// Run replicas without cgroups even where they work.
    pub no_limits: bool,
    /// `--label KEY=VALUE`, sorted by key.
    pub labels: Vec<(String, String)>,
    /// Let apps run as `user root`.
    pub allow_root: bool,
    /// `--wasm-runtime CMD`: what runs `type wasm` modules; `None` looks
    /// for `wasmtime` on the PATH (`wasmtime run`).
    pub wasm_runtime: Option<String>,
    /// `--metrics-listen ADDR`: serve `GET /metrics` there.
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// How the agent ends, as its `shutdown` future says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// A restart or upgrade: replicas keep running under their shims for
    /// the next agent (the default for SIGTERM).
    KeepReplicas,
    /// Stop every replica at once (`skr8tr dev`, whose whole cluster goes).
    StopReplicas,
    /// A host shutdown (`skr8tr node leave`, SIGUSR1, or SIGTERM with
    /// `--stop-replicas-on-exit`): report leaving, wait until its replicas
    /// have moved away and no router sends to them, then stop them.
    Leave,
}

/// Default [`NodeConfig::leave_timeout`].
pub const DEFAULT_LEAVE_TIMEOUT: Duration = Duration::from_secs(30);

/// The agent's pid, in its data directory, for `skr8tr node leave`.
pub const PID_FILE: &str = "agent.pid";

/// Default [`NodeConfig::log_file_bytes`] and [`NodeConfig::log_files`].
pub const DEFAULT_LOG_FILE_BYTES: u64 = 10 << 20;
pub const DEFAULT_LOG_FILES: usize = 3;

/// Default [`NodeConfig::grace`]: the conductor's default lost-node timeout.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);

/// The node's own key pair, in its data directory.
pub const NODE_SECRET_FILE: &str = "node.sec";
pub const NODE_PUBLIC_FILE: &str = "node.pub";

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Http(#[from] skr8tr_net::HttpError),
    #[error(transparent)]
    Key(#[from] KeyFileError),
    #[error("cannot create the node key: {0}")]
    Random(String),
    #[error("cannot prepare {dir}: {source}")]
    DataDir { dir: String, source: std::io::Error },
    #[error(transparent)]
    Private(#[from] skr8tr_proto::files::PrivateError),
    #[error(transparent)]
    Tls(#[from] skr8tr_net::tls::TlsError),
    #[error("{0}")]
    Config(String),
}

pub async fn run(
    config: NodeConfig,
    shutdown: impl Future<Output = Exit>,
) -> Result<(), NodeError> {
    skr8tr_proto::files::private_dir(&config.data_dir)?;
    crate::shim::check_data_dir(&config.data_dir).map_err(NodeError::Config)?;
    // The shims' control sockets: only the node's user may reach them.
    skr8tr_proto::files::private_dir(&config.data_dir.join("replicas"))?;
    let key = Arc::new(node_key(&config.data_dir)?);
    let auth = Auth::new(key.clone(), Role::Node(config.name.clone()))
        .with_ticket(config.ticket.clone())
        .with_conductor(config.conductor_key.clone());
    let client = Client::new(&config.conductor, config.pin)?.with_auth(auth);
    // The log endpoint's TLS identity, made on the first start.
    let logs_dir = config.data_dir.join("tls");
    skr8tr_proto::files::private_dir(&logs_dir)?;
    let logs_identity = skr8tr_net::tls::Identity::load_or_create(&logs_dir)?;
    let changed = Arc::new(Notify::new());
    let cgroups = if config.no_limits {
        tracing::warn!("resource limits are off (--no-limits): `ram` and `cpus` are not enforced");
        None
    } else {
        match Cgroups::detect(&config.data_dir) {
            Ok(c) => {
                tracing::info!("resource limits: {}", c.label());
                Some(c)
            }
            Err(why) => {
                tracing::warn!("resource limits are off: {why}; `ram` and `cpus` are not enforced");
                None
            }
        }
    };
    let wasm = wasm_runtime(config.wasm_runtime.as_deref());
    match &wasm {
        Some(cmd) => tracing::info!("wasm runtime: {}", cmd.join(" ")),
        None => tracing::info!(
            "no wasm runtime (`wasmtime` is not on PATH; --wasm-runtime sets one): `type wasm` apps are placed elsewhere"
        ),
    }
    let disk_logs = if config.log_files == 0 {
        None
    } else {
        let root = config.data_dir.join("logs");
        let logs = crate::logs::disk::DiskLogs::start(crate::logs::disk::DiskConfig {
            root: root.clone(),
            file_bytes: config.log_file_bytes.max(4096),
            files: config.log_files,
        })
        .map_err(|source| NodeError::DataDir {
            dir: root.display().to_string(),
            source,
        })?;
        Some(logs)
    };
    let supervisor = Arc::new(Supervisor::new(
        SupervisorConfig {
            address: config.advertise,
            port_range: config.port_range,
            data_dir: config.data_dir.clone(),
            log_lines: config.log_lines,
            shim: config.shim.clone(),
            grace: config.grace,
            cgroups: cgroups.clone(),
            allow_root: config.allow_root,
            wasm_runtime: wasm.clone(),
            disk_logs,
        },
        changed.clone(),
    ));
    if let Some(addr) = config.metrics_listen {
        skr8tr_net::metrics::start(addr, supervisor.exposition())
            .await
            .map_err(|e| NodeError::Config(e.to_string()))?;
    }
    let adopted = supervisor.adopt().await;
    if adopted > 0 {
        tracing::info!(
            adopted,
            "took on replicas left running by the previous agent"
        );
    }
    // Files of replicas gone for a week (moved away while the node was
    // down, or whose removal was lost): swept now and every hour.
    let sweeper = {
        let supervisor = supervisor.clone();
        tokio::spawn(async move {
            loop {
                let s = supervisor.clone();
                if let Ok(swept) = tokio::task::spawn_blocking(move || s.sweep_logs()).await
                    && swept > 0
                {
                    tracing::info!(swept, "removed the logs of replicas gone for a week");
                }
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
        })
    };
    // The log endpoint listens on a free port of the advertised address;
    // the port travels in every report.
    let logs_listener = tokio::net::TcpListener::bind((config.advertise, 0))
        .await
        .map_err(|source| NodeError::DataDir {
            dir: format!("log endpoint on {}", config.advertise),
            source,
        })?;
    let logs_port = logs_listener.local_addr().ok().map(|a| a.port());
    let log_server = Arc::new(crate::logs_server::LogServer {
        supervisor: supervisor.clone(),
        conductor_key: config.conductor_key.clone(),
        node: config.name.clone(),
        refused: std::sync::Mutex::new(skr8tr_net::server::Throttled::new()),
        served: std::sync::Mutex::new(crate::logs_server::Served::default()),
    });
    let logs_tls = tokio_rustls::TlsAcceptor::from(logs_identity.server_config()?);
    let log_task =
        tokio::spawn(log_server.serve(logs_listener, config.limits.logs.clone(), logs_tls));
    let mut boot = [0u8; 8];
    let _ = getrandom::fill(&mut boot);
    tracing::info!(key = %key.public().fingerprint(), "node key");
    let sync = Arc::new(NodeSync {
        client,
        name: config.name.clone(),
        address: config.advertise.to_string(),
        boot_id: u64::from_le_bytes(boot),
        resources: sync::detect_resources(),
        limits: cgroups.as_ref().map(|c| c.label().to_string()),
        labels: config.labels.clone(),
        wasm: wasm.is_some(),
        heartbeat: config.heartbeat,
        supervisor: supervisor.clone(),
        changed,
        version: AtomicU64::new(0),
        repoll: Notify::new(),
        leaving: std::sync::atomic::AtomicBool::new(false),
        lost_after_ms: AtomicU64::new(DEFAULT_GRACE.as_millis() as u64),
        gated: std::sync::atomic::AtomicBool::new(false),
        logs_port,
        logs_pin: Some(logs_identity.pin().0),
        reporter: Default::default(),
    });
    tracing::info!(
        node = %config.name,
        conductor = %config.conductor,
        logs = %format!("{}:{}", config.advertise, logs_port.unwrap_or(0)),
        "node agent started"
    );
    // One report first: its session presents the join ticket alone, so
    // the poller does not race it with the same single-use ticket.
    sync.report_once().await;
    let reporter = tokio::spawn(sync.clone().report());
    let poller = tokio::spawn(sync.clone().poll());
    let pid_file = config.data_dir.join(PID_FILE);
    if let Err(e) = std::fs::write(&pid_file, format!("{}\n", std::process::id())) {
        tracing::warn!(
            "cannot write {}: {e}; `skr8tr node leave` will not find this agent",
            pid_file.display()
        );
    }
    let exit = shutdown.await;
    if exit == Exit::Leave {
        tracing::info!("leaving: moving replicas away before stopping them");
        if sync.leave(config.leave_timeout).await {
            tracing::info!("leaving: nothing of this node is routed any more");
        } else {
            tracing::warn!(
                timeout = ?config.leave_timeout,
                "leaving: replicas still routed after the timeout; stopping them anyway"
            );
        }
        // Requests already sent to them finish.
        tokio::time::sleep(LEAVE_DRAIN).await;
    }
    poller.abort();
    reporter.abort();
    log_task.abort();
    sweeper.abort();
    if exit == Exit::KeepReplicas {
        tracing::info!(
            grace = ?config.grace,
            "shutting down: replicas keep running for the next agent"
        );
        supervisor.detach();
    } else {
        tracing::info!("shutting down: draining replicas");
        supervisor.shutdown().await;
        if let Some(c) = &cgroups {
            c.remove_scope();
        }
        // Said at once, instead of the conductor finding it lost later.
        sync.report_once().await;
    }
    // The replicas' last lines reach their files before the agent goes.
    let s = supervisor.clone();
    let _ = tokio::task::spawn_blocking(move || s.flush_logs(Duration::from_secs(2))).await;
    let _ = std::fs::remove_file(&pid_file);
    Ok(())
}

/// After routers stopped sending to a leaving node's replicas: how long
/// requests already sent get to finish (the conductor's registry drain).
const LEAVE_DRAIN: Duration = Duration::from_secs(1);

/// The WebAssembly runtime command: `flag` split into words, or `wasmtime
/// run` when `wasmtime` is on the PATH; `None` when its program is not
/// there.
fn wasm_runtime(flag: Option<&str>) -> Option<Vec<String>> {
    let words: Vec<String> = match flag {
        Some(f) => f.split_whitespace().map(str::to_string).collect(),
        None => vec!["wasmtime".into(), "run".into()],
    };
    let program = words.first()?;
    let found = if program.contains('/') {
        Some(PathBuf::from(program)).filter(|p| p.is_file())
    } else {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join(program))
                .find(|p| p.is_file())
        })
    };
    match found {
        Some(p) => {
            let mut cmd = vec![p.display().to_string()];
            cmd.extend(words.into_iter().skip(1));
            Some(cmd)
        }
        None => {
            if flag.is_some() {
                tracing::warn!("--wasm-runtime `{program}` is not there: this node runs no wasm");
            }
            None
        }
    }
}

/// Loads the node key, creating it on first start.
fn node_key(dir: &std::path::Path) -> Result<SecretKey, NodeError> {
    let path = dir.join(NODE_SECRET_FILE);
    if path.exists() {
        skr8tr_proto::files::private_file(&path)?;
        return Ok(keys::read_secret_key(&path)?);
    }
    let key = SecretKey::generate().map_err(|e| NodeError::Random(e.to_string()))?;
    keys::write_key_files(dir, NODE_SECRET_FILE, NODE_PUBLIC_FILE, &key, false)?;
    Ok(key)
}
