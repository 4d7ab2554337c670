//! `skr8tr key add NAME PUB`, `skr8tr key revoke FINGERPRINT`,
//! `skr8tr key list`: the operator keys the cluster trusts. Adding and
//! revoking are signed commands like any other; the last active key cannot
//! be revoked.

use crate::api::{self, Ctx};
use skr8tr_proto::command::Command;
use skr8tr_proto::keys::{self, Fingerprint};
use skr8tr_proto::wire::KeyView;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum Args {
    /// Trust another operator's public key (their signing.pub)
    Add { name: String, public_key: PathBuf },
    /// Stop trusting a key (by fingerprint, from `skr8tr key list`)
    Revoke { fingerprint: String },
    /// Every operator key, active and revoked
    List,
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    match args {
        Args::Add { name, public_key } => {
            let key = keys::read_public_key(&public_key)?;
            let command = Command::AddOperatorKey {
                name,
                public_key: key.to_bytes(),
            };
            let reply = ctx.block_on(api::send(ctx, command, vec![]))?;
            api::finish(ctx, reply)
        }
        Args::Revoke { fingerprint } => {
            let fingerprint: Fingerprint = fingerprint
                .parse()
                .map_err(|e: String| anyhow::anyhow!(e))?;
            let reply = ctx.block_on(api::send(
                ctx,
                Command::RevokeOperatorKey { fingerprint },
                vec![],
            ))?;
            api::finish(ctx, reply)
        }
        Args::List => {
            let keys: Vec<KeyView> =
                ctx.block_on(async { api::get(&ctx.client()?, "/v1/keys").await })?;
            if ctx.json {
                let rows: Vec<serde_json::Value> = keys
                    .iter()
                    .map(|k| {
                        serde_json::json!({
                            "fingerprint": k.fingerprint.to_string(),
                            "name": k.name,
                            "added_by": k.added_by.map(|f| f.to_string()),
                            "added_seq": k.added_seq,
                            "revoked_seq": k.revoked_seq,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(ExitCode::SUCCESS);
            }
            let mut rows = vec![
                ["FINGERPRINT", "NAME", "STATE", "ADDED BY", "ADDED AT SEQ"].map(String::from),
            ];
            for k in keys {
                rows.push([
                    k.fingerprint.to_string(),
                    k.name,
                    k.revoked_seq
                        .map_or("active".into(), |s| format!("revoked at seq {s}")),
                    k.added_by.map_or("genesis".into(), |f| f.to_string()),
                    k.added_seq.to_string(),
                ]);
            }
            crate::table::print(&mut std::io::stdout().lock(), rows)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
