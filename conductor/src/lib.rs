//! The control plane and the only stateful process. It verifies signed
//! operator commands and commits each with its audit entry before
//! answering; merges desired state (the store) with observed state (node
//! reports, rebuilt after every restart); schedules replicas; and hands
//! each node its conductor-signed assignment set.
//!
//! Layout:
//! - this file: [`open`] (store, conductor key, first operator key) and [`run`].
//! - `state`: [`Conductor`] — shared state, key ring, change signals.
//! - `limits`: [`Limits`] — the API socket's bounds, with their defaults.
//! - `api/`: the HTTP API (axum), one file per resource.
//! - `commands`: what each operator command does, inside its commit.
//! - `scheduler`: pure placement decisions.
//! - `reconciler`: runs the scheduler on every change and commits its plan.
//! - `autoscale`: samples each `scale { }` app's CPU, decides (a pure
//!   function beside the scheduler) and commits count changes.
//! - `rollout`: one pure step of a rolling update (surge, drain, revert).
//! - `registry`: ready, routable endpoints per app, derived from reports.
//! - `refusals`: the audit budget for refusals from senders who proved no key.
//! - `source`: desired state read alike from a snapshot or a transaction.
//! - `assignments`: one node's assignment set and its version.
//! - `metrics`: what `/metrics` shows (`--metrics-listen`).
//!
//! Paths: command: CLI → `POST /v1/commands` → verify → `Store::command`
//! (effect + audit, fsync) → reply. Sync: node long-polls
//! `/v1/nodes/{n}/assignments` → signed set; node posts reports → observed
//! state → reconciler → placements committed → long-polls wake.

#![forbid(unsafe_code)]

pub mod api;
pub mod assignments;
pub mod autoscale;
pub mod commands;
pub mod index;
pub mod leaving;
pub mod limits;
pub mod metrics;
pub mod reconciler;
pub mod refusals;
pub mod registry;
pub mod rollout;
pub mod scheduler;
mod sealing;
pub mod snapshot;
pub mod source;
pub mod state;
#[cfg(test)]
mod testing;
pub mod throttle;

pub use limits::Limits;
pub use state::{Conductor, Config};

use skr8tr_proto::command::ClusterId;
use skr8tr_proto::keys::{self, KeyFileError, SecretKey};
use skr8tr_store::{OpenError, Options, Store, StoreError};
use std::future::Future;
use std::path::Path;
use std::sync::Arc;

/// The conductor's own key, which nodes pin: `DATA/conductor.sec` and `.pub`.
pub const CONDUCTOR_SECRET_FILE: &str = "conductor.sec";
pub const CONDUCTOR_PUBLIC_FILE: &str = "conductor.pub";
/// The ML-KEM key secret values are sealed to.
pub const SEALING_KEY_FILE: &str = "conductor.kem";

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "{dir} has no cluster yet and no operator key was given; create a key with \
         `skr8tr keygen`, then start with `--init-key ~/.skr8tr/signing.pub`"
    )]
    NoOperatorKey { dir: String },
    #[error(transparent)]
    Store(#[from] OpenError),
    #[error(transparent)]
    Read(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] KeyFileError),
    #[error("cannot create the cluster id: {0}")]
    Random(String),
    #[error(transparent)]
    Private(#[from] skr8tr_proto::files::PrivateError),
    #[error(transparent)]
    Tls(#[from] skr8tr_net::tls::TlsError),
    #[error("the sealing key: {0}")]
    Sealing(String),
    #[error(
        "{dir} holds a cluster's store with history but no conductor.sec: copy the \
         conductor's key files back (conductor.sec, conductor.pub, conductor.kem, tls.crt, \
         tls.key); a new key would be a conductor its nodes refuse"
    )]
    MissingKey { dir: String },
}

/// Opens (or, with `init_key`, creates) the cluster in `config.data_dir`.
pub fn open(config: Config, init_key: Option<&Path>) -> Result<Conductor, StartError> {
    let dir = config.data_dir.clone();
    let now = skr8tr_proto::clock::now_ms();
    let store = match open_waiting(&dir) {
        Ok(store) => {
            if let Some(path) = init_key {
                let key = keys::read_public_key(path)?;
                if store
                    .snapshot()?
                    .operator_key(&key.fingerprint())?
                    .is_none()
                {
                    tracing::warn!(
                        "--init-key {} ignored: the cluster already exists; add keys with a signed `skr8tr key add`",
                        path.display()
                    );
                }
            }
            store
        }
        Err(OpenError::Missing { .. }) => {
            let Some(path) = init_key else {
                return Err(StartError::NoOperatorKey {
                    dir: dir.display().to_string(),
                });
            };
            let key = keys::read_public_key(path)?;
            let cluster = ClusterId::generate().map_err(|e| StartError::Random(e.to_string()))?;
            let name = path
                .file_stem()
                .map_or("operator".into(), |s| s.to_string_lossy().into_owned());
            let store = Store::create(&dir, cluster, &name, &key, now, Options::default())?;
            tracing::info!(cluster = %cluster, key = %key.fingerprint(), "created cluster");
            store
        }
        Err(e) => return Err(e.into()),
    };
    api::snapshot::remove_leftovers(&dir);
    // A store with history and no signing key is one copied or restored
    // without its key files (or whose keys were lost): a new key would be
    // a conductor its nodes refuse. Said, not made. (A missing
    // conductor.kem is a store from before sealing, which gets one.)
    if store.snapshot()?.audit_head()?.0 > 1 && !dir.join(CONDUCTOR_SECRET_FILE).exists() {
        return Err(StartError::MissingKey {
            dir: dir.display().to_string(),
        });
    }
    let key = conductor_key(&dir)?;
    let sealing = sealing::load_or_create(&dir)?;
    let conductor = Conductor::new(store, key, sealing, config, now)?;
    sealing::seal_stored_secrets(&conductor, now)?;
    Ok(conductor)
}

/// Loads the conductor's signing key, creating it on first start (a key
/// file found readable by others is made 0600 first).
fn conductor_key(dir: &Path) -> Result<SecretKey, StartError> {
    let path = dir.join(CONDUCTOR_SECRET_FILE);
    if path.exists() {
        skr8tr_proto::files::private_file(&path)?;
        return Ok(keys::read_secret_key(&path)?);
    }
    let key = SecretKey::generate().map_err(|e| StartError::Random(e.to_string()))?;
    keys::write_key_files(
        dir,
        CONDUCTOR_SECRET_FILE,
        CONDUCTOR_PUBLIC_FILE,
        &key,
        false,
    )?;
    tracing::info!(key = %key.public().fingerprint(), "created the conductor key; nodes pin {}", dir.join(CONDUCTOR_PUBLIC_FILE).display());
    Ok(key)
}

/// How long a starting conductor waits for a predecessor — killed, but
/// still exiting — to release the data directory's lock before it gives up.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// `Store::open`, retried while another process holds the lock, for up
/// to [`LOCK_WAIT`]: right after a kill -9 the dying conductor often still
/// holds it, and a supervisor's immediate restart must not fail on that.
fn open_waiting(dir: &Path) -> Result<Store, OpenError> {
    let started = std::time::Instant::now();
    let mut said = false;
    loop {
        match Store::open(dir, Options::default()) {
            Err(OpenError::Locked { .. }) if started.elapsed() < LOCK_WAIT => {
                if !said {
                    tracing::warn!(
                        "{} is locked by another process (a conductor still exiting?); \
                         waiting up to {} s for it",
                        dir.display(),
                        LOCK_WAIT.as_secs()
                    );
                    said = true;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

/// The conductor's TLS identity, `DATA/tls.crt` and `tls.key`, made on
/// the first start (`--init`, or the first start of an upgraded
/// conductor); everyone who talks to it pins `DATA/tls.pin`.
pub fn tls_identity(dir: &Path) -> Result<skr8tr_net::tls::Identity, StartError> {
    let existed = dir.join(skr8tr_net::tls::CERT_FILE).exists();
    if existed {
        skr8tr_proto::files::private_file(&dir.join(skr8tr_net::tls::KEY_FILE))?;
    }
    let id = skr8tr_net::tls::Identity::load_or_create(dir)?;
    if !existed {
        tracing::info!(
            pin = %id.pin(),
            "created the conductor's TLS identity; clients pin {}",
            dir.join(skr8tr_net::tls::PIN_FILE).display()
        );
    }
    Ok(id)
}

/// Serves the API on `listener` (TLS with `identity`) and runs the
/// reconciler until `shutdown`. Every connection is held to
/// `config.limits.api` (connection caps, header, idle and body timeouts).
pub async fn run(
    conductor: Arc<Conductor>,
    identity: &skr8tr_net::tls::Identity,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let tls = tokio_rustls::TlsAcceptor::from(
        identity
            .server_config()
            .map_err(|e| std::io::Error::other(e.to_string()))?,
    );
    conductor.mark_serving(conductor.now_ms());
    let reconciler = tokio::spawn(reconciler::run(conductor.clone()));
    let autoscaler = tokio::spawn(autoscale::run(conductor.clone()));
    let summaries = tokio::spawn(refusal_summaries(conductor.clone()));
    let limits = conductor.config.limits.api.clone();
    let budget = skr8tr_net::server::BodyBudget::new(conductor.config.limits.max_buffered_bytes);
    let router = api::router(conductor);
    let http = limits.clone();
    skr8tr_net::server::serve(
        "conductor API",
        listener,
        limits,
        shutdown,
        move |io, peer| {
            api::connection(
                router.clone(),
                budget.clone(),
                http.clone(),
                tls.clone(),
                io,
                peer,
            )
        },
    )
    .await;
    reconciler.abort();
    autoscaler.abort();
    summaries.abort();
    Ok(())
}

/// Ends each budget window of unverified refusals on time, so a flood that
/// stopped still gets its count recorded.
async fn refusal_summaries(c: Arc<Conductor>) {
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        let now = c.now_ms();
        if let Some(summary) = c.refusals.roll() {
            api::record_summary(&c, summary, now).await;
        }
    }
}
