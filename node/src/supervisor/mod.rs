//! Keeps the replicas assigned to this node running: one Tokio task per
//! replica starts it, probes it, restarts it with backoff, and stops it
//! (drain) when it is no longer assigned. The shared table the tasks update
//! is what [`Supervisor::reports`] shows.
//!
//! Replica lifecycle, one line: converge → port → cgroup → shim forks it
//! (Starting) → health passes or `settle` elapses (Ready) → probe fails
//! (Unhealthy) → `retries` failures in a row or an exit → restart policy →
//! Backoff (or OomKilled) → start again, or Exited; unassigned → Stopping
//! (the shim: SIGTERM, drain, SIGKILL of the whole tree) → gone.
//! A failing check counts toward `retries` only once the replica has been
//! ready: a slow starter stays Starting, and the rollout deadline judges it.
//!
//! Each process runs under its own shim ([`crate::shim`]), so replicas
//! outlive the agent: [`Supervisor::adopt`] reconnects to the shims a
//! previous agent left, and [`Supervisor::detach`] leaves them running.
//!
//! Layout:
//! - this file: [`Supervisor`] — `converge`, `reports`, `logs`, `shutdown`.
//! - `table`: the replica table the tasks update (observed state).
//! - `ports`: `port auto` allocation from the node's range; probe address.
//! - `replica`: the per-replica task: spawn, probes, restarts, drain.
//! - `backoff`: the restart policy and the wait between restarts.

mod backoff;
mod launch;
mod ports;
mod replica;
mod table;

pub use backoff::{Backoff, should_restart};

use crate::cgroup::Cgroups;
use crate::logs::disk::{DiskLogs, ReplicaDisk};
use crate::logs::{LogLine, SharedLog};
use crate::process::{self, Sampler};
use crate::shim::{self, client::Shim};
use replica::Replica;
use skr8tr_proto::wire::{Assignment, ReplicaReport, ReplicaState};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use table::{Entry, Table};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

/// First wait before restarting a replica that ended.
pub const BACKOFF_FIRST: Duration = Duration::from_millis(100);
/// Longest wait between restarts of a crash-looping replica.
pub const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A process that ran at least this long starts the backoff over.
pub const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(10);
/// Probe period while a replica starts, so readiness is seen within tens of
/// milliseconds.
pub const STARTING_PROBE_EVERY: Duration = Duration::from_millis(25);
/// A replica still starting after this long is probed at its `interval`
/// (at most once a second) instead.
pub const STARTING_FAST_FOR: Duration = Duration::from_secs(10);
/// CPU and RSS are read at most this often.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// An auto-port replica that exits sooner than this gets a new port.
const QUICK_EXIT: Duration = Duration::from_secs(1);
/// Wait before trying again when no port of the range is free.
const NO_PORT_RETRY: Duration = Duration::from_secs(1);

pub struct SupervisorConfig {
    /// Where probes connect and replicas are reached. An unspecified
    /// address (0.0.0.0, ::) is probed on loopback.
    pub address: IpAddr,
    /// Inclusive range of ports `port auto` replicas get.
    pub port_range: (u16, u16),
    /// Holds each replica's shim directory (`replicas/`) and volumes.
    pub data_dir: PathBuf,
    /// Lines kept per replica.
    pub log_lines: usize,
    /// The binary whose `shim` subcommand supervises one replica (the
    /// `skr8tr` binary itself).
    pub shim: PathBuf,
    /// How long replicas outlive an agent that is gone.
    pub grace: Duration,
    /// Per-replica limits; `None` runs replicas without them.
    pub cgroups: Option<Cgroups>,
    /// Whether `user root` may run (`skr8tr node --allow-root`).
    pub allow_root: bool,
    /// The WebAssembly runtime command (`wasmtime run`), if the node has one.
    pub wasm_runtime: Option<Vec<String>>,
    /// Where replica output is also kept on disk; `None` keeps only the
    /// in-memory ring.
    pub disk_logs: Option<DiskLogs>,
}

/// Cheap to clone: every clone drives the same replicas.
#[derive(Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

struct Inner {
    config: SupervisorConfig,
    changed: Arc<Notify>,
    // A std mutex: nothing awaits while holding it (the longest hold is
    // `reports` reading /proc, in-memory files).
    table: Mutex<Table>,
    builds: crate::build::Builds,
    /// When the node last sent a report the conductor took; `None` until
    /// it has. `disconnect { stop-after }`
    /// replicas run only on a lease counted from it.
    contact: tokio::sync::watch::Sender<Option<Instant>>,
    /// When a poll last brought the conductor's current assignments (and
    /// they were converged to).
    synced: tokio::sync::watch::Sender<Option<Instant>>,
    /// A replica waits for a fresh set: the poller asks at once.
    want_sync: Notify,
    /// Counters for `/metrics`.
    metrics: crate::metrics::Metrics,
}

impl Inner {
    /// How much longer a `stop-after` replica may run: `stop_after` from
    /// the last contact, 0 once that is over (or before any contact).
    pub(super) fn lease(&self, stop_after: Duration) -> Duration {
        match *self.contact.borrow() {
            Some(at) => stop_after.saturating_sub(at.elapsed()),
            None => Duration::ZERO,
        }
    }

    /// Waits until a poll after `since` has brought the current
    /// assignments, and the lease for `stop_after` is not over: a replica
    /// its node stopped out of contact starts again only if it is still
    /// assigned here (the converge before `synced` stops it otherwise).
    pub(super) async fn synced_after(&self, since: Instant, stop_after: Duration) {
        let mut rx = self.synced.subscribe();
        loop {
            let fresh = rx.borrow_and_update().is_some_and(|at| at > since);
            if fresh && !self.lease(stop_after).is_zero() {
                return;
            }
            self.want_sync.notify_one();
            // Re-checked each second: the lease may come back without a
            // new set.
            let _ = tokio::time::timeout(Duration::from_secs(1), rx.changed()).await;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update of the table is a few field writes; a panic in the
    // middle of one leaves nothing worse than a stale field.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Supervisor {
    /// A supervisor with no replicas yet. Kills the process groups an
    /// agent from before the shim recorded in `data_dir`
    /// ([`process::kill_leftovers`]); call [`Supervisor::adopt`] next.
    pub fn new(config: SupervisorConfig, changed: Arc<Notify>) -> Supervisor {
        if let Err(e) = std::fs::create_dir_all(&config.data_dir) {
            tracing::warn!(dir = %config.data_dir.display(), "cannot create the data directory: {e}");
        }
        process::kill_leftovers(&config.data_dir);
        let next_port = config.port_range.0;
        Supervisor {
            inner: Arc::new(Inner {
                changed,
                table: Mutex::new(Table {
                    replicas: BTreeMap::new(),
                    desired: BTreeMap::new(),
                    next_port,
                    shutting_down: false,
                }),
                builds: crate::build::Builds::new(&config.data_dir),
                contact: tokio::sync::watch::channel(None).0,
                synced: tokio::sync::watch::channel(None).0,
                want_sync: Notify::new(),
                metrics: crate::metrics::Metrics::default(),
                config,
            }),
        }
    }

    /// Start what is assigned and not running, stop (drain) what runs and is
    /// no longer assigned. Idempotent; returns at once (work happens in
    /// tasks). Must be called inside a Tokio runtime. A replica id names one
    /// spec (ids include the generation), so a known id is left as it is.
    pub fn converge(&self, assignments: &[Assignment]) {
        let mut table = lock(&self.inner.table);
        if table.shutting_down {
            return;
        }
        table.desired = assignments
            .iter()
            .map(|a| (a.replica.clone(), a.clone()))
            .collect();
        for a in assignments {
            if !table.replicas.contains_key(&a.replica) {
                self.inner.start(&mut table, a.clone());
            }
        }
        let Table {
            replicas, desired, ..
        } = &mut *table;
        for (id, entry) in replicas.iter_mut() {
            if !desired.contains_key(id) && !*entry.stop.borrow() {
                tracing::info!(replica = %id, "no longer assigned: stopping");
                entry.stop.send_replace(true);
            }
        }
    }

    /// How long since the conductor last answered; `None` before it has.
    pub fn since_contact(&self) -> Option<Duration> {
        self.inner.contact.borrow().map(|at| at.elapsed())
    }

    /// A poll's set was converged to just now (see `Inner::synced`).
    pub fn synced(&self) {
        self.inner.synced.send_replace(Some(Instant::now()));
    }

    /// Resolves when a replica waits for the current assignments.
    pub async fn sync_wanted(&self) {
        self.inner.want_sync.notified().await;
    }

    /// The conductor took a report sent at `sent` (see `Inner::contact`).
    pub fn contact(&self, sent: Instant) {
        self.inner
            .contact
            .send_modify(|c| *c = Some(c.map_or(sent, |at| at.max(sent))));
    }

    /// Current state of every replica (including ones stopping), for the
    /// report. Reads CPU and RSS from /proc when the last reading is older
    /// than [`SAMPLE_EVERY`].
    pub fn reports(&self) -> Vec<ReplicaReport> {
        let now = Instant::now();
        let mut table = lock(&self.inner.table);
        table
            .replicas
            .iter_mut()
            .map(|(id, e)| {
                let usage = match e.pid {
                    Some(pid) => e.sampler.sample(pid, now, SAMPLE_EVERY),
                    None => process::Usage::default(),
                };
                ReplicaReport {
                    replica: id.clone(),
                    app: e.app.clone(),
                    generation: e.generation,
                    state: e.state,
                    pid: e.pid,
                    port: e.port,
                    restarts: e.restarts,
                    started_at_ms: e.started_at_ms,
                    cpu_millis: usage.cpu_millis,
                    rss_bytes: usage.rss_bytes,
                    error: e.error.clone(),
                }
            })
            .collect()
    }

    /// The node's `/metrics` page: its counters, and gauges read from
    /// [`Supervisor::reports`] at each scrape.
    pub fn exposition(&self) -> skr8tr_net::metrics::Exposition {
        let weak = Arc::downgrade(&self.inner);
        skr8tr_net::metrics::Exposition::new(self.inner.metrics.registry()).refresh(move || {
            if let Some(inner) = weak.upgrade() {
                let reports = Supervisor {
                    inner: inner.clone(),
                }
                .reports();
                inner.metrics.refresh(&reports);
            }
        })
    }

    /// Last `limit` log lines of a replica, if it is known here.
    pub fn logs(&self, replica: &str, limit: usize) -> Option<Vec<LogLine>> {
        let log = lock(&self.inner.table).replicas.get(replica)?.log.clone();
        Some(log.tail(limit))
    }

    /// Removes the log files of replicas neither running nor assigned
    /// here that were not written for a week. Blocking.
    pub fn sweep_logs(&self) -> usize {
        let Some(logs) = &self.inner.config.disk_logs else {
            return 0;
        };
        let keep: std::collections::HashSet<String> = {
            let table = lock(&self.inner.table);
            table
                .replicas
                .keys()
                .chain(table.desired.keys())
                .map(|id| crate::cgroup::short_hash(id))
                .collect()
        };
        logs.sweep(&keep)
    }

    /// Writes out the output queued for disk, waiting up to `timeout`.
    /// Blocking.
    pub fn flush_logs(&self, timeout: Duration) {
        if let Some(logs) = &self.inner.config.disk_logs {
            logs.flush(timeout);
        }
    }

    /// The last `limit` lines of the replica's previous run, read from
    /// disk: `Err` says why there are none.
    pub async fn previous_logs(&self, replica: &str, limit: usize) -> Result<Vec<LogLine>, String> {
        let Some(logs) = self.inner.config.disk_logs.clone() else {
            return Err("this node keeps no logs on disk (`--log-files 0`)".into());
        };
        let key = crate::cgroup::short_hash(replica);
        let read = tokio::task::spawn_blocking(move || {
            logs.read(&key, crate::logs::disk::Want::Previous, limit)
        })
        .await;
        match read {
            Ok(Ok(records)) if records.is_empty() => {
                Err(format!("no earlier run of replica {replica} is on disk"))
            }
            Ok(Ok(records)) => Ok(crate::logs::from_disk(records)),
            Ok(Err(e)) => Err(format!("cannot read the replica's files: {e}")),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Stop everything (drain each), for node shutdown. Later `converge`
    /// calls do nothing.
    pub async fn shutdown(&self) {
        let tasks: Vec<JoinHandle<()>> = {
            let mut table = lock(&self.inner.table);
            table.shutting_down = true;
            table.desired.clear();
            table
                .replicas
                .values_mut()
                .filter_map(|e| {
                    e.stop.send_replace(true);
                    e.task.take()
                })
                .collect()
        };
        for task in tasks {
            if let Err(e) = task.await {
                tracing::error!("a replica task failed: {e}");
            }
        }
    }
}

impl Supervisor {
    /// Reconnects to the shims a previous agent left running in
    /// `DATA_DIR/replicas/`: each replica is taken on as it is (same pid,
    /// readiness, restarts; probes resume at once) and stays until the
    /// first assignment set says otherwise, when one no longer assigned is
    /// stopped with its whole tree. Directories whose shim is gone are
    /// cleared (their cgroup emptied). Returns how many were adopted.
    pub async fn adopt(&self) -> usize {
        let root = self.inner.config.data_dir.join("replicas");
        let Ok(entries) = std::fs::read_dir(&root) else {
            return 0;
        };
        let mut adopted = 0;
        for entry in entries.flatten() {
            let dir = entry.path();
            let key = entry.file_name().to_string_lossy().into_owned();
            let shim = match shim::client::connect(&dir).await {
                Ok(shim) => shim,
                Err(e) => {
                    tracing::info!(dir = %dir.display(), "clearing a replica directory whose shim is gone ({e})");
                    let inner = self.inner.clone();
                    let _ = tokio::task::spawn_blocking(move || inner.clear_dead(&dir, &key)).await;
                    continue;
                }
            };
            let assignment = skr8tr_proto::wire::decode::<Assignment>(&shim.hello.assignment);
            match assignment {
                Ok(a)
                    if a.replica == shim.hello.replica
                        && shim::replica_dir(&self.inner.config.data_dir, &a.replica) == dir =>
                {
                    tracing::info!(replica = %a.replica, pid = shim.hello.pid, "adopted a running replica");
                    // Its output from before this agent comes first (read
                    // here: the task takes the shim on without delay).
                    let log = self.inner.log_for(&a.replica);
                    let refilled = log.clone();
                    let _ = tokio::task::spawn_blocking(move || refilled.refill()).await;
                    let mut table = lock(&self.inner.table);
                    if table.replicas.contains_key(&a.replica) {
                        continue;
                    }
                    table.desired.insert(a.replica.clone(), a.clone());
                    self.inner.start_with(&mut table, a, Some(shim), log);
                    adopted += 1;
                }
                other => {
                    let why = match other {
                        Ok(_) => "its directory does not match its replica".to_string(),
                        Err(e) => format!("its assignment does not decode ({e})"),
                    };
                    tracing::warn!(replica = %shim.hello.replica, "stopping a replica left running: {why}");
                    let (mut control, exited) = shim.attach(SharedLog::new(1));
                    let _ = control.send(&shim::ToShim::Stop { drain_ms: 2000 }).await;
                    let _ = tokio::time::timeout(Duration::from_secs(10), exited).await;
                }
            }
        }
        adopted
    }

    /// Leaves every replica running under its shim, for an agent that
    /// exits to be restarted (an upgrade). Each shim keeps its replica for
    /// the grace, waiting for the next agent. Later `converge` calls do
    /// nothing.
    pub fn detach(&self) {
        let mut table = lock(&self.inner.table);
        table.shutting_down = true;
        for e in table.replicas.values_mut() {
            if let Some(task) = e.task.take() {
                task.abort();
            }
        }
    }
}

impl Inner {
    /// The directory of a shim that is gone: whatever of its replica is
    /// left in its cgroup is killed, and the directory removed.
    fn clear_dead(&self, dir: &std::path::Path, key: &str) {
        if let Some(cg) = &self.config.cgroups {
            let cg = cg.replica_by_key(key);
            process::tree::kill_cgroup(&cg);
            let _ = cg.remove();
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Adds a replica to the table and starts its task.
    fn start(self: &Arc<Inner>, table: &mut Table, a: Assignment) {
        let log = self.log_for(&a.replica);
        self.start_with(table, a, None, log)
    }

    /// A new ring for replica `id`, writing to its files if the node keeps
    /// any.
    fn log_for(&self, id: &str) -> SharedLog {
        let disk = self.config.disk_logs.clone().map(|logs| ReplicaDisk {
            logs,
            key: crate::cgroup::short_hash(id),
        });
        SharedLog::with_disk(self.config.log_lines, disk)
    }

    /// Adds a replica to the table and starts its task, which takes on
    /// `adopted` (a running replica) instead of starting one.
    fn start_with(
        self: &Arc<Inner>,
        table: &mut Table,
        a: Assignment,
        adopted: Option<Shim>,
        log: SharedLog,
    ) {
        let (stop, stop_rx) = watch::channel(false);
        let id = a.replica.clone();
        table.replicas.insert(
            id.clone(),
            Entry {
                app: a.app.clone(),
                generation: a.generation,
                state: ReplicaState::Starting,
                pid: None,
                port: None,
                restarts: 0,
                error: None,
                started_at_ms: 0,
                sampler: Sampler::default(),
                log: log.clone(),
                stop,
                task: None,
            },
        );
        let replica = Replica {
            inner: self.clone(),
            id: id.clone(),
            assignment: a,
            log,
            stop: stop_rx,
            adopted,
        };
        let task = tokio::spawn(replica.run());
        if let Some(entry) = table.replicas.get_mut(&id) {
            entry.task = Some(task);
        }
        self.changed.notify_one();
    }
}
