//! `skr8tr`: the one binary. Operator commands, key management and (as later
//! subcommands) the conductor, node and ingress daemons.
//!
//! Layout: `main` parses flags and maps errors to exit codes; each
//! subcommand lives in its own file under `cmd/`.

#![forbid(unsafe_code)]

mod api;
mod cmd;
mod progress;
mod show;
mod table;
mod ui;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "skr8tr",
    version,
    about = "A small orchestrator for bare processes"
)]
struct Cli {
    /// The conductor's API
    #[arg(
        long,
        global = true,
        env = "SKR8TR_CONDUCTOR",
        default_value = "https://127.0.0.1:7771"
    )]
    conductor: String,
    /// The conductor's TLS identity: its DATA/tls.pin (a file, or the
    /// `sha256:…` text in it) [default: ~/.skr8tr/conductor.pin, else the
    /// dev cluster's ~/.skr8tr/dev/conductor/tls.pin]
    #[arg(long, global = true, env = "SKR8TR_PIN", value_name = "PIN|FILE")]
    pin: Option<String>,
    /// Operator secret key that signs commands [default: ~/.skr8tr/signing.sec]
    #[arg(long, global = true, env = "SKR8TR_KEY", value_name = "FILE")]
    key: Option<PathBuf>,
    /// Print JSON instead of tables
    #[arg(long, global = true)]
    json: bool,
    /// How the daemons (conductor, node, ingress, dev) write their log
    /// to stderr: `text` lines, or `json` objects one per line
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "SKR8TR_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create an ML-DSA-65 operator key pair (signing.sec, signing.pub).
    Keygen(cmd::keygen::Args),
    /// Check manifests and print one line per app, or every error found.
    Validate(cmd::validate::Args),
    /// Print the fingerprint of a public or secret key file.
    Fingerprint(cmd::fingerprint::Args),
    /// Deploy (or update) the apps of a manifest.
    Up(cmd::up::Args),
    /// Show what `up` of a manifest would change, and the index to apply it at.
    Plan(cmd::plan::Args),
    /// Back up the conductor's store while it runs, or restore it offline.
    Snapshot(cmd::snapshot::Args),
    /// Serve a live, read-only status page on 127.0.0.1 (your key reads
    /// the conductor; the browser holds none).
    Ui(cmd::ui::Args),
    /// Roll apps to a new version, one replica at a time, and show it.
    Rollout(cmd::rollout::RolloutArgs),
    /// Roll an app back to its previous generation the same way.
    Rollback(cmd::rollout::RollbackArgs),
    /// Stop an app's replicas and forget it.
    Down(cmd::simple::DownArgs),
    /// Set an app's replica count.
    Scale(cmd::simple::ScaleArgs),
    /// Apps: desired, running and ready replicas.
    Status,
    /// Nodes: address, state, load.
    Nodes,
    /// Replicas: where each runs and how it is.
    Ps(cmd::ps::Args),
    /// An app's output (signed and audited).
    Logs(cmd::logs::Args),
    /// The audit log: who did what, when, and the outcome.
    History(cmd::history::Args),
    /// An app's ready endpoints (or one, round-robin).
    Lookup(cmd::lookup::Args),
    /// A whole cluster in one process, serving MANIFEST through the ingress.
    Dev(cmd::dev::Args),
    /// Check that the conductor answers.
    Ping,
    /// Run the conductor (the control plane).
    Conductor(cmd::conductor::Args),
    /// Run a node agent (or `node revoke NAME`).
    Node(cmd::node::Args),
    /// Run the HTTP ingress (reverse proxy to apps).
    Ingress(cmd::ingress::Args),
    /// The static file server of `serve { static DIR }` (started by nodes).
    #[command(hide = true)]
    ServeStatic(cmd::serve_static::Args),
    /// Operator keys: add, revoke, list.
    #[command(subcommand)]
    Key(cmd::key::Args),
    /// Make a join ticket that admits a node (once, until it expires).
    Ticket(cmd::ticket::Args),
    /// Secret values: `secret set APP NAME` rotates one (sealed, audited
    /// without the value, rolled out).
    #[command(subcommand)]
    Secret(cmd::secret::Args),
    /// Write the systemd unit that runs a daemon with the flags given.
    Install(cmd::install::Args),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(cmd::completions::CompletionsArgs),
    /// Write man pages for skr8tr and every subcommand.
    Man(cmd::completions::ManArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Set once in `main`, before any daemon starts logging.
static LOG_FORMAT: std::sync::OnceLock<LogFormat> = std::sync::OnceLock::new();

/// Exit code when the command ran but found problems (invalid manifest,
/// refused key, …). Usage errors exit with 2, from clap.
const FAILURE: u8 = 1;

fn main() -> ExitCode {
    // `skr8tr shim DIR`: the per-replica supervisor a node agent starts.
    // Dispatched before anything else so each shim stays small (no flag
    // parsing, no logging, no async runtime).
    let mut args = std::env::args_os().skip(1);
    if args.next().is_some_and(|a| a == "shim") {
        let dir = PathBuf::from(args.next().unwrap_or_default());
        return ExitCode::from(skr8tr_node::shim::main(&dir).clamp(0, 255) as u8);
    }
    let cli = Cli::parse();
    let _ = LOG_FORMAT.set(cli.log_format);
    let ctx = api::Ctx {
        conductor: cli.conductor,
        pin: cli.pin,
        key: cli.key,
        json: cli.json,
    };
    let result = match cli.command {
        Command::Keygen(args) => cmd::keygen::run(args),
        Command::Validate(args) => cmd::validate::run(args),
        Command::Fingerprint(args) => cmd::fingerprint::run(args),
        Command::Up(args) => cmd::up::run(&ctx, args),
        Command::Plan(args) => cmd::plan::run(&ctx, args),
        Command::Snapshot(args) => cmd::snapshot::run(&ctx, args),
        Command::Ui(args) => cmd::ui::run(&ctx, args),
        Command::Down(args) => cmd::simple::down(&ctx, args),
        Command::Rollout(args) => cmd::rollout::rollout(&ctx, args),
        Command::Rollback(args) => cmd::rollout::rollback(&ctx, args),
        Command::Scale(args) => cmd::simple::scale(&ctx, args),
        Command::Status => cmd::status::run(&ctx),
        Command::Nodes => cmd::nodes::run(&ctx),
        Command::Ps(args) => cmd::ps::run(&ctx, args),
        Command::History(args) => cmd::history::run(&ctx, args),
        Command::Logs(args) => cmd::logs::run(&ctx, args),
        Command::Ping => cmd::ping::run(&ctx),
        Command::Dev(args) => cmd::dev::run(&ctx, args),
        Command::Lookup(args) => cmd::lookup::run(&ctx, args),
        Command::Conductor(args) => cmd::conductor::run(args),
        Command::Node(args) => cmd::node::run(&ctx, args),
        Command::Ingress(args) => cmd::ingress::run(&ctx, args),
        Command::ServeStatic(args) => cmd::serve_static::run(args),
        Command::Ticket(args) => cmd::ticket::run(&ctx, args),
        Command::Secret(args) => cmd::secret::run(&ctx, args),
        Command::Key(args) => cmd::key::run(&ctx, args),
        Command::Install(args) => cmd::install::run(args),
        Command::Completions(args) => cmd::completions::completions(args),
        Command::Man(args) => cmd::completions::man(args),
    };
    match result {
        Ok(code) => code,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(FAILURE)
        }
    }
}

/// `skr8tr validate … | head` must not complain when `head` exits early.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// `~/.skr8tr`, where keys and the dev cluster live by default.
pub fn home_dir() -> anyhow::Result<PathBuf> {
    match std::env::var_os("HOME") {
        Some(home) if !home.is_empty() => Ok(PathBuf::from(home).join(".skr8tr")),
        _ => {
            anyhow::bail!("HOME is not set; pass the directory explicitly (for example --out DIR)")
        }
    }
}

/// Daemons log to stderr, `info` and up: text lines, or one JSON object
/// per line with `--log-format json` (for journald, Loki and the like).
pub fn init_tracing() {
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::INFO)
        .with_target(false);
    let _ = match LOG_FORMAT.get().copied().unwrap_or(LogFormat::Text) {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
    };
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Duration flags (`500ms`, `5s`, `2m`, `1h`) read as manifests write them.
pub fn duration(text: &str) -> Result<std::time::Duration, String> {
    skr8tr_proto::manifest::parse_duration(text)
}
