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

use crate::health;
use crate::logs::{self, LogLine, SharedLog, Stream};
use crate::process::{self, LaunchPlan, PidFile, Running, Sampler};
use skr8tr_proto::manifest::{AppSpec, Health, Port, Restart};
use skr8tr_proto::wire::{Assignment, ReplicaReport, ReplicaState};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};
use tokio::process::Child;
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

struct Table {
    replicas: BTreeMap<String, Entry>,
    /// The last assignment set, by replica id: a replica that stops while
    /// assigned again is started anew.
    desired: BTreeMap<String, Assignment>,
    next_port: u16,
    shutting_down: bool,
}

/// One replica as observed, plus the handles to drive it.
struct Entry {
    app: String,
    generation: u64,
    state: ReplicaState,
    pid: Option<u32>,
    port: Option<u16>,
    restarts: u32,
    started_at_ms: u64,
    sampler: Sampler,
    log: SharedLog,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
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

    /// The port for a `port auto` replica: the next port of the range, after
    /// the last one given, that no replica here holds and that binds.
    fn pick_port(&self, table: &mut Table) -> Option<u16> {
        let (lo, hi) = self.config.port_range;
        if lo > hi {
            return None;
        }
        let used: Vec<u16> = table.replicas.values().filter_map(|e| e.port).collect();
        let span = u32::from(hi - lo) + 1;
        let start = table.next_port.clamp(lo, hi);
        for i in 0..span {
            let port = (u32::from(start - lo) + i) % span + u32::from(lo);
            let port = port as u16; // within lo..=hi, so it fits
            if used.contains(&port) || !self.bindable(port) {
                continue;
            }
            table.next_port = if port == hi { lo } else { port + 1 };
            return Some(port);
        }
        None
    }

    fn bindable(&self, port: u16) -> bool {
        match TcpListener::bind((self.config.address, port)) {
            Ok(_) => true,
            // The advertised address may be one this host only routes to
            // (NAT): then check the port on every local address.
            Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => {
                TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok()
            }
            Err(_) => false,
        }
    }

    fn probe_ip(&self) -> IpAddr {
        match self.config.address {
            IpAddr::V4(a) if a.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(a) if a.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            a => a,
        }
    }
}

/// One replica's task.
struct Replica {
    inner: Arc<Inner>,
    id: String,
    app: String,
    spec: AppSpec,
    log: SharedLog,
    stop: watch::Receiver<bool>,
}

/// How one process of a replica ended.
enum Ended {
    /// Stopped because it is no longer assigned (drained).
    Stopped,
    /// Exited on its own, or failed to start (with a shell's 126/127), or
    /// was killed by the supervisor after failing its health check (`None`).
    Exited(Option<i32>),
}

/// What watching a running process saw first.
enum Watched {
    Stop,
    Exited(Option<i32>),
    Unhealthy,
}

impl Replica {
    async fn run(mut self) {
        let mut backoff = Backoff::default();
        let mut first = true;
        loop {
            let Some(port) = self.port() else {
                tracing::warn!(replica = %self.id, "no free port in the node's range");
                self.set(|e| e.state = ReplicaState::Backoff);
                if self.wait_or_stop(NO_PORT_RETRY).await {
                    break;
                }
                continue;
            };
            if !first {
                self.set(|e| e.restarts += 1);
            }
            first = false;
            let began = Instant::now();
            let plan = LaunchPlan {
                replica: &self.id,
                app: &self.app,
                spec: &self.spec,
                port,
            };
            let ended = match process::spawn(&plan) {
                Ok(running) => self.supervise(running, port).await,
                Err(e) => {
                    tracing::warn!(replica = %self.id, "{e}");
                    self.log.push(Stream::Stderr, &format!("skr8tr: {e}"));
                    Ended::Exited(Some(e.exit_code()))
                }
            };
            let Ended::Exited(code) = ended else {
                break;
            };
            if !should_restart(self.spec.restart, code) {
                self.set(|e| {
                    e.state = ReplicaState::Exited { code };
                    e.pid = None;
                });
                // Reported until unassigned.
                let _ = self.stop.wait_for(|stop| *stop).await;
                break;
            }
            // A `port auto` replica that exited by itself within a second
            // most likely could not bind: another process took the port
            // between the node's check and the replica's bind. Try another
            // port. (A replica killed by a signal keeps its port.)
            if self.spec.port == Port::Auto && code.is_some() && began.elapsed() < QUICK_EXIT {
                self.set(|e| e.port = None);
            }
            let delay = backoff.next(began.elapsed());
            self.log.push(
                Stream::Stderr,
                &format!("skr8tr: {}; restarting in {delay:?}", describe(code)),
            );
            self.set(|e| {
                e.state = ReplicaState::Backoff;
                e.pid = None;
            });
            if self.wait_or_stop(delay).await {
                break;
            }
        }
        self.finish();
    }

    /// Runs one process until it ends, is stopped, or fails its health
    /// check too often; its group is gone when this returns.
    async fn supervise(&mut self, running: Running, port: u16) -> Ended {
        let Running {
            mut child,
            pid,
            group,
            stdout,
            stderr,
        } = running;
        lock(&self.inner.pids).insert(&self.id, group);
        if let Some(out) = stdout {
            tokio::spawn(logs::capture(out, Stream::Stdout, self.log.clone()));
        }
        if let Some(err) = stderr {
            tokio::spawn(logs::capture(err, Stream::Stderr, self.log.clone()));
        }
        tracing::info!(replica = %self.id, pid, port, "started");
        self.set(|e| {
            e.state = ReplicaState::Starting;
            e.pid = Some(pid);
            e.port = Some(port);
            e.started_at_ms = unix_ms();
            e.sampler = Sampler::default();
        });
        let ended = match self.watch(&mut child, port).await {
            Watched::Stop => {
                self.set(|e| e.state = ReplicaState::Stopping);
                let status = process::stop(&mut child, group, self.spec.drain).await;
                tracing::info!(replica = %self.id, pid, "stopped ({status:?})");
                Ended::Stopped
            }
            Watched::Exited(code) => {
                // The replica is the whole group: helpers the leader left
                // behind would hold its port against the next start.
                process::kill_group_now(group);
                tracing::info!(replica = %self.id, pid, "{}", describe(code));
                Ended::Exited(code)
            }
            Watched::Unhealthy => {
                tracing::warn!(replica = %self.id, pid, "health check failed too often: restarting");
                self.log
                    .push(Stream::Stderr, "skr8tr: health check failed too often");
                process::stop(&mut child, group, self.spec.drain).await;
                Ended::Exited(None)
            }
        };
        lock(&self.inner.pids).remove(&self.id);
        ended
    }

    /// Waits for the first of: a stop request, the process's exit, or the
    /// health verdict. Updates Starting/Ready/Unhealthy along the way.
    async fn watch(&mut self, child: &mut Child, port: u16) -> Watched {
        let health: Option<Health> = self.spec.health.clone();
        let addr = SocketAddr::new(self.inner.probe_ip(), port);
        let started = Instant::now();
        let mut passed = false;
        let mut failures = 0u32;
        let mut wake = Some(match &health {
            Some(_) => started,
            None => started + self.spec.settle,
        });
        loop {
            let step = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
                match &health {
                    Some(h) => Some(health::probe(&h.check, addr, h.timeout).await),
                    None => None,
                }
            };
            let verdict = tokio::select! {
                biased;
                _ = self.stop.wait_for(|stop| *stop) => return Watched::Stop,
                status = child.wait() => return Watched::Exited(status.ok().and_then(|s| s.code())),
                verdict = step => verdict,
            };
            let now = Instant::now();
            match (&health, verdict) {
                (None, _) => {
                    self.set(|e| e.state = ReplicaState::Ready);
                    wake = None;
                }
                (Some(h), Some(Ok(()))) => {
                    if failures > 0 {
                        tracing::info!(replica = %self.id, "health check passes again");
                    }
                    passed = true;
                    failures = 0;
                    self.set(|e| e.state = ReplicaState::Ready);
                    wake = Some(now + h.interval);
                }
                // Not ready yet: failures count only once it has passed.
                (Some(h), Some(Err(e))) if !passed => {
                    tracing::trace!(replica = %self.id, "not ready: {e}");
                    let every = if started.elapsed() < STARTING_FAST_FOR {
                        STARTING_PROBE_EVERY
                    } else {
                        h.interval.min(Duration::from_secs(1))
                    };
                    wake = Some(now + every);
                }
                (Some(h), Some(Err(e))) => {
                    failures += 1;
                    tracing::warn!(replica = %self.id, failures, "health check failed: {e}");
                    self.set(|e| e.state = ReplicaState::Unhealthy);
                    if failures >= h.retries.max(1) {
                        return Watched::Unhealthy;
                    }
                    wake = Some(now + h.interval);
                }
                // `step` yields a verdict whenever there is a health check.
                (Some(_), None) => wake = None,
            }
        }
    }

    /// The replica's port: the one it already has, its fixed port, or a
    /// free one from the range.
    fn port(&self) -> Option<u16> {
        let mut table = lock(&self.inner.table);
        if let Some(port) = table.replicas.get(&self.id).and_then(|e| e.port) {
            return Some(port);
        }
        let port = match self.spec.port {
            Port::Fixed(p) => Some(p),
            Port::Auto => self.inner.pick_port(&mut table),
        };
        if let Some(entry) = table.replicas.get_mut(&self.id) {
            entry.port = port;
        }
        port
    }

    /// Sleeps `delay`; true if a stop was requested meanwhile (or before).
    async fn wait_or_stop(&mut self, delay: Duration) -> bool {
        tokio::select! {
            biased;
            _ = self.stop.wait_for(|stop| *stop) => true,
            _ = tokio::time::sleep(delay) => false,
        }
    }

    /// Updates this replica's entry; reports at once if the state changed.
    fn set(&self, update: impl FnOnce(&mut Entry)) {
        let mut table = lock(&self.inner.table);
        let Some(entry) = table.replicas.get_mut(&self.id) else {
            return;
        };
        let before = (entry.state, entry.pid, entry.restarts);
        update(entry);
        if before != (entry.state, entry.pid, entry.restarts) {
            self.inner.changed.notify_one();
        }
    }

    /// Removes the replica from the table (and the report), and starts it
    /// again if it was assigned again while stopping.
    fn finish(&self) {
        let mut table = lock(&self.inner.table);
        table.replicas.remove(&self.id);
        lock(&self.inner.pids).remove(&self.id);
        if !table.shutting_down
            && let Some(again) = table.desired.get(&self.id).cloned()
        {
            self.inner.start(&mut table, again);
        }
        self.inner.changed.notify_one();
    }
}

/// Whether a replica that ended with `code` (`None`: killed by a signal)
/// is started again.
pub fn should_restart(policy: Restart, code: Option<i32>) -> bool {
    match policy {
        Restart::Always => true,
        Restart::OnFailure => code != Some(0),
        Restart::Never => false,
    }
}

/// Waits between restarts: doubling from [`BACKOFF_FIRST`] to
/// [`BACKOFF_MAX`], back to the start after a run of at least
/// [`BACKOFF_RESET_AFTER`].
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            next: BACKOFF_FIRST,
        }
    }
}

impl Backoff {
    /// The wait after a process that ran for `ran_for`.
    pub fn next(&mut self, ran_for: Duration) -> Duration {
        if ran_for >= BACKOFF_RESET_AFTER {
            self.next = BACKOFF_FIRST;
        }
        let wait = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        wait
    }
}

fn describe(code: Option<i32>) -> String {
    match code {
        Some(c) => format!("exited with code {c}"),
        None => "killed".to_string(),
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
