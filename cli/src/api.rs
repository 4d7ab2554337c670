//! Talking to the conductor: reads, and signed commands (ping for the
//! cluster id, sign with the operator key, post, decode the reply).

use anyhow::{Context, bail};
use serde::de::DeserializeOwned;
use skr8tr_net::{Auth, Client, Pin};
use skr8tr_proto::command::Command;
use skr8tr_proto::envelope::Envelope;
use skr8tr_proto::keys::{self, SecretKey};
use skr8tr_proto::wire::{
    self, CommandReply, CommandRequest, ErrorReply, PingReply, Role, SecretValue,
};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// What every operator command needs: where the conductor is, which key
/// signs, how to print.
pub struct Ctx {
    pub conductor: String,
    /// `--pin`: the conductor's TLS identity (see [`Ctx::pin`]).
    pub pin: Option<String>,
    pub key: Option<PathBuf>,
    pub json: bool,
}

impl Ctx {
    /// Runs `f` on a single-threaded runtime: the CLI makes a handful of
    /// requests and exits.
    pub fn block_on<T>(&self, f: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?
            .block_on(f)
    }

    /// The pinned TLS identity of the conductor: `--pin`, else
    /// `~/.skr8tr/conductor.pin`, else the dev cluster's.
    pub fn pin(&self) -> anyhow::Result<Pin> {
        if let Some(arg) = &self.pin {
            return Ok(Pin::from_arg(arg)?);
        }
        let home = crate::home_dir()?;
        for file in [
            home.join(PIN_FILE),
            home.join("dev")
                .join("conductor")
                .join(skr8tr_net::tls::PIN_FILE),
        ] {
            if file.exists() {
                return Ok(Pin::from_arg(&file.to_string_lossy())?);
            }
        }
        bail!(
            "no TLS pin for the conductor: pass --pin with its DATA/tls.pin (the file, or the \
             `sha256:…` text in it), set SKR8TR_PIN, or copy that file to {}",
            home.join(PIN_FILE).display()
        )
    }

    /// A client of the conductor, pinned; its sessions proven with the
    /// operator key when there is one (every read but `ping` needs it).
    pub fn client(&self) -> anyhow::Result<Client> {
        let client = Client::new(&self.conductor, self.pin()?)?;
        match self.key_path() {
            Ok(path) if path.exists() => {
                let key = keys::read_secret_key(&path)?;
                Ok(client.with_auth(Auth::new(std::sync::Arc::new(key), Role::Operator)))
            }
            _ => Ok(client),
        }
    }

    /// A pinned client that opens no session: for `ping` and signed
    /// commands, which need none (so a key the conductor does not know
    /// yet still gets its command's refusal, with the fix, back).
    pub fn anonymous_client(&self) -> anyhow::Result<Client> {
        Ok(Client::new(&self.conductor, self.pin()?)?)
    }

    fn key_path(&self) -> anyhow::Result<PathBuf> {
        Ok(match &self.key {
            Some(p) => p.clone(),
            None => crate::home_dir()?.join(keys::SECRET_KEY_FILE),
        })
    }

    pub fn secret_key(&self) -> anyhow::Result<SecretKey> {
        let path = self.key_path()?;
        if !path.exists() {
            bail!(
                "no operator key at {}; create one with `skr8tr keygen`, or pass --key FILE (SKR8TR_KEY)",
                path.display()
            );
        }
        Ok(keys::read_secret_key(&path)?)
    }
}

/// Where the CLI looks for the conductor's pin by default, in `~/.skr8tr`.
pub const PIN_FILE: &str = "conductor.pin";

const READ_TIMEOUT: Duration = Duration::from_secs(15);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// GETs `path` and decodes the answer, or turns an error reply into a message.
pub async fn get<T: DeserializeOwned>(client: &Client, path: &str) -> anyhow::Result<T> {
    let (status, body) = client.get(path, READ_TIMEOUT).await?;
    if !status.is_success() {
        let reason =
            wire::decode::<ErrorReply>(&body).map_or_else(|_| status.to_string(), |e| e.message);
        bail!("the conductor refused: {}", crate::show::text(&reason));
    }
    wire::decode(&body).map_err(|e| anyhow::anyhow!("unreadable answer from the conductor: {e}"))
}

/// The encoded request for `command`, signed for the conductor's cluster.
pub async fn signed_request(
    ctx: &Ctx,
    client: &Client,
    command: Command,
    secrets: Vec<SecretValue>,
) -> anyhow::Result<Vec<u8>> {
    let key = ctx.secret_key()?;
    let ping: PingReply = get(client, "/v1/ping").await?;
    let envelope = Envelope::sign(&key, command, ping.cluster, SystemTime::now())?.to_bytes();
    Ok(wire::encode(&CommandRequest { envelope, secrets }))
}

/// Signs `command` for this cluster and sends it; returns the reply, which
/// says whether it was accepted. Only transport failures are `Err`.
pub async fn send(
    ctx: &Ctx,
    command: Command,
    secrets: Vec<SecretValue>,
) -> anyhow::Result<CommandReply> {
    send_on(ctx, &ctx.anonymous_client()?, command, secrets).await
}

/// [`send`] on `client`, whose kept connection an earlier request of the
/// same command (the sealing key's `ping`) opened: one TLS handshake.
pub async fn send_on(
    ctx: &Ctx,
    client: &Client,
    command: Command,
    secrets: Vec<SecretValue>,
) -> anyhow::Result<CommandReply> {
    let request = signed_request(ctx, client, command, secrets).await?;
    let (_, body) = client
        .post("/v1/commands", request, COMMAND_TIMEOUT)
        .await
        .context(
            "the command may or may not have been recorded; check `skr8tr history` before retrying",
        )?;
    wire::decode::<CommandReply>(&body)
        .map_err(|e| anyhow::anyhow!("unreadable answer from the conductor: {e}"))
}

/// Prints a command's reply; `Err` (exit 1) if it was refused.
pub fn finish(ctx: &Ctx, reply: CommandReply) -> anyhow::Result<std::process::ExitCode> {
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&reply)?);
    }
    if !reply.accepted {
        let code = reply.code.unwrap_or_default();
        bail!(
            "refused ({}): {}",
            crate::show::line(&code),
            crate::show::text(&reply.message)
        );
    }
    if !ctx.json {
        println!("{}", crate::show::text(&reply.message));
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// The error a refused command's answer says (`refused (CODE): MESSAGE`).
pub fn refused(bytes: &[u8]) -> anyhow::Error {
    match wire::decode::<wire::CommandReply>(bytes) {
        Ok(reply) => anyhow::anyhow!(
            "refused ({}): {}",
            crate::show::line(&reply.code.unwrap_or_default()),
            crate::show::text(&reply.message)
        ),
        Err(e) => anyhow::anyhow!("unreadable answer: {e}"),
    }
}
