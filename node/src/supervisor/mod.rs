//! Keeps the replicas assigned to this node running: one Tokio task per
//! replica starts it, probes it, restarts it with backoff, and stops it
//! (drain) when it is no longer assigned. The shared table the tasks update
//! is what [`Supervisor::reports`] shows.
//!
//! Replica lifecycle, one line: converge → port → spawn (Starting) → health
//! passes or `settle` elapses (Ready) → probe fails (Unhealthy) → `retries`
//! failures in a row or an exit → restart policy → Backoff → spawn again, or
//! Exited; unassigned → Stopping (SIGTERM, drain, SIGKILL) → gone.
//! A failing check counts toward `retries` only once the replica has been
//! ready: a slow starter stays Starting, and the rollout deadline judges it.
//! Replicas are forked from runtime threads, which must outlive them (see
//! [`process::spawn`]): never `block_in_place` in the node agent.
//!
//! Layout:
//! - this file: [`Supervisor`] — `converge`, `reports`, `logs`, `shutdown`.
//! - `table`: the replica table the tasks update (observed state).
//! - `ports`: `port auto` allocation from the node's range; probe address.
//! - `replica`: the per-replica task: spawn, probes, restarts, drain.
//! - `backoff`: the restart policy and the wait between restarts.

mod backoff;
mod ports;
mod replica;
mod table;

pub use backoff::{Backoff, should_restart};

use crate::logs::{LogLine, SharedLog};
use crate::process::{self, PidFile, Sampler};
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
    /// Holds the pid file ([`process::PID_FILE`]).
    pub data_dir: PathBuf,
    /// Lines kept per replica.
    pub log_lines: usize,
}

/// Cheap to clone: every clone drives the same replicas.
#[derive(Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

struct Inner {
    config: SupervisorConfig,
    changed: Arc<Notify>,
    // Both std mutexes: nothing awaits while holding them (the longest hold
    // is `reports` reading /proc, in-memory files). Lock order: `table`
    // before `pids`.
    table: Mutex<Table>,
    pids: Mutex<PidFile>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update of the table is a few field writes; a panic in the
    // middle of one leaves nothing worse than a stale field.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Supervisor {
    /// Kills what a previous run of the node left in `data_dir`'s pid file
    /// ([`process::kill_leftovers`]), then starts a fresh one.
    pub fn new(config: SupervisorConfig, changed: Arc<Notify>) -> Supervisor {
        if let Err(e) = std::fs::create_dir_all(&config.data_dir) {
            tracing::warn!(dir = %config.data_dir.display(), "cannot create the data directory: {e}");
        }
        process::kill_leftovers(&config.data_dir);
        let pids = PidFile::new(&config.data_dir);
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
                pids: Mutex::new(pids),
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
                }
            })
            .collect()
    }

    /// Last `limit` log lines of a replica, if it is known here.
    pub fn logs(&self, replica: &str, limit: usize) -> Option<Vec<LogLine>> {
        let log = lock(&self.inner.table).replicas.get(replica)?.log.clone();
        Some(log.tail(limit))
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

impl Inner {
    /// Adds a replica to the table and starts its task.
    fn start(self: &Arc<Inner>, table: &mut Table, a: Assignment) {
        let (stop, stop_rx) = watch::channel(false);
        let log = SharedLog::new(self.config.log_lines);
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
            app: a.app,
            spec: a.spec,
            log,
            stop: stop_rx,
        };
        let task = tokio::spawn(replica.run());
        if let Some(entry) = table.replicas.get_mut(&id) {
            entry.task = Some(task);
        }
        self.changed.notify_one();
    }
}
