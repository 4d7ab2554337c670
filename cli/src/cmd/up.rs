//! `skr8tr up FILE`: deploy every app of a manifest. Each secret value is
//! sealed to the conductor's ML-KEM key (fetched over the pinned TLS
//! connection) before the manifest is signed, so the signed text, the
//! audit log and the store hold only ciphertext. A value written
//! `@PATH` is read from that file (relative to the manifest) here.

use crate::api::{self, Ctx};
use anyhow::{Context, bail};
use skr8tr_proto::command::Command;
use skr8tr_proto::manifest::{MAX_MANIFEST_BYTES, secrets};
use skr8tr_proto::sealed::SealingKey;
use skr8tr_proto::wire::PingReply;
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// The manifest (.skr8tr)
    file: PathBuf,
    /// Wait until every app of the manifest has all its replicas ready
    /// (a bar per app on a terminal, a line per change otherwise); exit 1
    /// if they are not within --wait-timeout
    #[arg(long)]
    wait: bool,
    /// How long --wait waits
    #[arg(long, default_value = "5m", value_parser = crate::duration, requires = "wait")]
    wait_timeout: std::time::Duration,
    /// Apply only if the manifest's apps are still as `skr8tr plan FILE`
    /// saw them (the index it printed); refused with `stale-plan` otherwise
    #[arg(long, value_name = "INDEX")]
    check_index: Option<u64>,
}

/// Largest secret value read from a file (`@PATH`).
pub const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    let (reply, apps) = ctx.block_on(async {
        let client = ctx.anonymous_client()?;
        let sealing = sealing_key(&client).await?;
        let (file, manifest) = read_manifest(&args.file, &sealing)?;
        let apps: Vec<String> = skr8tr_proto::manifest::parse(&file, &manifest)
            .map(|specs| specs.into_iter().map(|s| s.name).collect())
            .unwrap_or_default();
        let command = match args.check_index {
            Some(index) => Command::UpChecked {
                file,
                manifest,
                index,
            },
            None => Command::Up { file, manifest },
        };
        let reply = api::send_on(ctx, &client, command, vec![]).await?;
        anyhow::Ok((reply, apps))
    })?;
    let accepted = reply.accepted;
    let code = api::finish(ctx, reply)?;
    if !args.wait || !accepted {
        return Ok(code);
    }
    super::wait::ready(ctx, &apps, args.wait_timeout)
}

/// The conductor's sealing key, from its `ping` (over the pinned TLS
/// connection, so it is the conductor's own).
pub async fn sealing_key(client: &skr8tr_net::Client) -> anyhow::Result<SealingKey> {
    let ping: PingReply = api::get(client, "/v1/ping").await?;
    SealingKey::from_bytes(&ping.sealing_key)
        .map_err(|e| anyhow::anyhow!("the conductor's answer to ping: {e}"))
}

/// Reads a manifest and seals its secret values to `sealing`: the file
/// name to sign and the sealed text.
pub fn read_manifest(path: &Path, sealing: &SealingKey) -> anyhow::Result<(String, String)> {
    let name = path.display().to_string();
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .with_context(|| format!("cannot read {name}"))?
        .take(MAX_MANIFEST_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {name}"))?;
    let text = String::from_utf8(bytes).map_err(|_| anyhow::anyhow!("{name} is not UTF-8 text"))?;
    let specs = match skr8tr_proto::manifest::parse(&name, &text) {
        Ok(s) => s,
        Err(diags) => {
            eprintln!("{diags}");
            bail!("{name} has {} error(s); nothing was sent", diags.len());
        }
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let mut sealed = HashMap::new();
    for spec in &specs {
        for (var, value) in &spec.secrets {
            let value = resolve(base, &spec.name, var, value.expose())?;
            let s = sealing.seal(&spec.name, var, &value).map_err(|e| {
                anyhow::anyhow!("cannot seal secret `{var}` of `{}`: {e}", spec.name)
            })?;
            sealed.insert((spec.name.clone(), var.clone()), s);
        }
    }
    let (signed_text, _) = secrets::rewrite(&name, &text, |app, var, _| {
        sealed
            .get(&(app.to_string(), var.to_string()))
            .cloned()
            .unwrap_or_default()
    })
    .map_err(|diags| anyhow::anyhow!("{name}: {diags}"))?;
    let file = path
        .file_name()
        .map_or(name.clone(), |f| f.to_string_lossy().into_owned());
    Ok((file, signed_text))
}

/// A secret's value: as written, or read from `@PATH` (one trailing
/// newline dropped, at most [`MAX_SECRET_FILE_BYTES`]).
fn resolve(base: &Path, app: &str, var: &str, written: &str) -> anyhow::Result<String> {
    let Some(file) = written.strip_prefix('@') else {
        return Ok(written.to_string());
    };
    let path = base.join(file);
    let opened = std::fs::File::open(&path).with_context(|| {
        format!(
            "secret `{var}` of app `{app}`: cannot read @{file} ({})",
            path.display()
        )
    })?;
    read_value(opened, &format!("secret `{var}` of app `{app}`: @{file}"))
}

/// A secret value from `reader` (a file, stdin): at most
/// [`MAX_SECRET_FILE_BYTES`], UTF-8, one trailing newline dropped. `what`
/// names the source in errors.
pub fn read_value(reader: impl Read, what: &str) -> anyhow::Result<String> {
    let mut bytes = Vec::new();
    reader
        .take(MAX_SECRET_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("{what}: cannot be read"))?;
    if bytes.len() as u64 > MAX_SECRET_FILE_BYTES {
        bail!("{what} is larger than {MAX_SECRET_FILE_BYTES} bytes");
    }
    let mut value =
        String::from_utf8(bytes).map_err(|_| anyhow::anyhow!("{what} is not UTF-8 text"))?;
    if value.ends_with('\n') {
        value.pop();
        if value.ends_with('\r') {
            value.pop();
        }
    }
    Ok(value)
}
