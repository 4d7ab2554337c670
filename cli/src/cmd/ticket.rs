//! `skr8tr ticket NAME [--ttl 10m] [--out FILE]`: a join ticket that lets
//! the node called NAME join the cluster once, with whatever key it
//! presents, until it expires. Signed with the operator key; the conductor
//! records the admission with the ticket as evidence.

use crate::api::{self, Ctx};
use anyhow::Context;
use skr8tr_proto::clock::unix_ms;
use skr8tr_proto::command::Command;
use skr8tr_proto::envelope::{Envelope, MAX_TICKET_LIFETIME_MS};
use skr8tr_proto::wire::PingReply;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

#[derive(clap::Args)]
pub struct Args {
    /// The node's name (its `--name`)
    name: String,
    /// How long the ticket may be used (at most 24h)
    #[arg(long, default_value = "10m", value_parser = crate::duration)]
    ttl: Duration,
    /// Write the ticket here (mode 0600) instead of printing it
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Admit an ingress called NAME (`skr8tr ingress --name NAME`), which
    /// may read the registry only, instead of a node
    #[arg(long)]
    ingress: bool,
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    let ttl_ms = (args.ttl.as_millis() as u64).min(MAX_TICKET_LIFETIME_MS);
    let key = ctx.secret_key()?;
    let ping: PingReply =
        ctx.block_on(async { api::get(&ctx.anonymous_client()?, "/v1/ping").await })?;
    let now = SystemTime::now();
    let admitted = if args.ingress {
        format!("{}{}", skr8tr_proto::wire::INGRESS_PREFIX, args.name)
    } else {
        args.name.clone()
    };
    let command = Command::AdmitNode {
        name: admitted,
        expires_at_ms: unix_ms(now) + ttl_ms,
    };
    let ticket = Envelope::sign(&key, command, ping.cluster, now)?.to_bytes();
    let text = format!("{}\n", skr8tr_proto::hex::encode(&ticket));
    match &args.out {
        Some(path) => {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("cannot write {}", path.display()))?;
            // An existing file keeps its mode through `open`: set it.
            f.set_permissions(std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("cannot make {} private", path.display()))?;
            f.write_all(text.as_bytes())?;
            eprintln!(
                "ticket for {} `{}` written to {} (valid {} s, once); start it with --ticket {}",
                if args.ingress { "ingress" } else { "node" },
                args.name,
                path.display(),
                ttl_ms / 1000,
                path.display()
            );
        }
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads a ticket file written by `skr8tr ticket`.
pub fn read(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    skr8tr_proto::hex::decode(text.trim())
        .with_context(|| format!("{} is not a ticket made by `skr8tr ticket`", path.display()))
}
