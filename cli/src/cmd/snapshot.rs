//! `skr8tr snapshot save FILE`: a consistent copy of the conductor's
//! store while it runs (signed and audited), written with its signed
//! preamble and checksum, checked before it is kept. `skr8tr snapshot
//! restore FILE --data DIR --keys DIR`: offline, into an empty data
//! directory, with the conductor's key files (backed up apart: a snapshot
//! holds the store and its sealed secrets, not the keys that open them).

use crate::api::{self, Ctx};
use crate::show;
use anyhow::{Context, bail};
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};
use skr8tr_proto::command::Command;
use skr8tr_proto::wire::{self, SignedSnapshotHeader};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Copy the conductor's store as it runs into FILE (signed, with a
    /// checksum); the key files are backed up apart
    Save {
        /// Where to write the snapshot (refused if it exists)
        file: PathBuf,
    },
    /// Restore FILE into an empty data directory, offline; then start
    /// `skr8tr conductor --data DIR`
    Restore {
        file: PathBuf,
        /// The new data directory (absent or empty)
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
        /// The directory holding the conductor's key files (conductor.sec,
        /// conductor.pub, conductor.kem, tls.crt, tls.key)
        #[arg(long, value_name = "DIR")]
        keys: PathBuf,
    },
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    match args.action {
        Action::Save { file } => save(ctx, file),
        Action::Restore { file, data, keys } => {
            let checked = skr8tr_conductor::snapshot::restore(
                &file,
                &data,
                &keys,
                skr8tr_proto::clock::now_ms(),
            )
            .map_err(|e| anyhow::anyhow!("nothing was restored: {e}"))?;
            println!(
                "restored cluster {} into {}: {} apps, {} secrets that open, audit log verified \
                 ({} entries, to entry {} as taken; the restore is entry {})",
                checked.header.cluster,
                data.display(),
                checked.apps,
                checked.secrets,
                checked.report.entries,
                checked.header.audit_seq,
                checked.report.entries + 1,
            );
            let age = skr8tr_proto::clock::now_ms().saturating_sub(checked.header.taken_at_ms);
            println!(
                "the snapshot is {} min old: keys added or revoked, nodes admitted or revoked \
                 and join tickets used since then are as they were then; redo any revocation \
                 made since",
                age / 60_000
            );
            println!(
                "start it with: skr8tr conductor --data {}",
                show::shell_word(&data.display().to_string())
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn save(ctx: &Ctx, file: PathBuf) -> anyhow::Result<ExitCode> {
    if file.exists() {
        bail!(
            "{} exists: a snapshot never overwrites a file",
            file.display()
        );
    }
    let mut partial = file.clone().into_os_string();
    partial.push(format!(".partial-{}", std::process::id()));
    let partial = PathBuf::from(partial);
    let result = ctx.block_on(async {
        let client = ctx.anonymous_client()?;
        let request = api::signed_request(ctx, &client, Command::SnapshotSave, vec![]).await?;
        // The copy is made before the first byte: a big store takes a while.
        let response = client
            .post_streaming("/v1/snapshot", request, Duration::from_secs(600))
            .await?;
        let status = response.status();
        let mut body = response.into_body();
        if !status.is_success() {
            let bytes = http_body_util::Limited::new(body, wire::MAX_BODY_BYTES)
                .collect()
                .await
                .map_err(|e| anyhow::anyhow!("the conductor's answer cannot be read: {e}"))?
                .to_bytes();
            return Err(api::refused(&bytes));
        }
        let mut out = private_create(&partial)?;
        // Bytes before the header could be read, then the database's.
        let mut pending: Vec<u8> = Vec::new();
        let mut header = None;
        let mut hash = Sha256::new();
        let mut db = 0u64;
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame?.into_data() else {
                continue;
            };
            // Newlines come first while the conductor makes its copy.
            let data = if header.is_none() && pending.is_empty() {
                let start = data.iter().position(|b| *b != b'\n').unwrap_or(data.len());
                data.slice(start..)
            } else {
                data
            };
            if data.is_empty() {
                continue;
            }
            out.write_all(&data)
                .with_context(|| format!("cannot write {}", partial.display()))?;
            if header.is_some() {
                hash.update(&data);
                db += data.len() as u64;
                continue;
            }
            pending.extend_from_slice(&data);
            let mut reader = pending.as_slice();
            match SignedSnapshotHeader::read_from(&mut reader) {
                Ok(h) => {
                    header = Some(h.claimed().map_err(|e| anyhow::anyhow!(e))?);
                    hash.update(reader);
                    db += reader.len() as u64;
                    pending = Vec::new();
                }
                Err(_) if pending.len() < 12 + wire::MAX_SNAPSHOT_HEADER => {}
                Err(e) => bail!("the conductor's answer: {e}"),
            }
        }
        out.sync_all()?;
        let Some(header) = header else {
            bail!(
                "the conductor's answer ended before the snapshot header: the copy failed \
                 (the conductor's log says why)"
            );
        };
        let digest: [u8; 32] = hash.finalize().into();
        if db != header.db_bytes || digest != header.db_sha256 {
            bail!(
                "the snapshot arrived damaged or cut short ({db} of {} bytes, checksum {}): \
                 nothing was kept",
                header.db_bytes,
                if digest == header.db_sha256 {
                    "matches"
                } else {
                    "differs"
                }
            );
        }
        anyhow::Ok(header)
    });
    let header = match result {
        Ok(h) => h,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    // Placed without overwriting a file made meanwhile.
    let placed = std::fs::hard_link(&partial, &file)
        .with_context(|| format!("cannot place the snapshot at {}", file.display()));
    let _ = std::fs::remove_file(&partial);
    placed?;
    println!(
        "snapshot of cluster {} written to {}: audit entry {}, {} bytes of database, sha256 {}",
        header.cluster,
        file.display(),
        header.audit_seq,
        header.db_bytes,
        skr8tr_proto::hex::encode(&header.db_sha256)
    );
    println!(
        "back up the conductor's key files apart from it (DATA/conductor.sec, conductor.pub, \
         conductor.kem, tls.crt, tls.key): a restore needs them"
    );
    Ok(ExitCode::SUCCESS)
}

fn private_create(path: &std::path::Path) -> anyhow::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))
}
