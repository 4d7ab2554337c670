//! One replica's task: take a port, start it under a shim (or take on one
//! a previous agent left), watch (probes, exit, stop), restart by policy
//! with backoff, drain when unassigned, and leave the table when done.

use super::{
    Backoff, Entry, Inner, NO_PORT_RETRY, QUICK_EXIT, STARTING_FAST_FOR, STARTING_PROBE_EVERY,
    lock, should_restart,
};
use crate::health;
use crate::logs::{SharedLog, Stream};
use crate::process::{self, Sampler};
use crate::shim::client::{Control, Shim};
use crate::shim::{self as shim_proto, Exit, ToShim};
use skr8tr_proto::manifest::{AppSpec, Health, Port};
use skr8tr_proto::wire::{Assignment, ReplicaState};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};

/// How often a `stop-after` replica's lease is renewed.
const LEASE_EVERY: Duration = Duration::from_secs(1);

/// A stopping replica's shim gets this long past the drain to report.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// One replica's task.
pub(super) struct Replica {
    pub(super) inner: Arc<Inner>,
    pub(super) id: String,
    pub(super) assignment: Assignment,
    pub(super) log: SharedLog,
    pub(super) stop: watch::Receiver<bool>,
    /// A running replica a previous agent left, taken on at the start.
    pub(super) adopted: Option<Shim>,
}

/// How one process of a replica ended.
enum Ended {
    /// Stopped because it is no longer assigned (drained).
    Stopped,
    /// Exited on its own, or failed to start (with a shell's 126/127), or
    /// was killed by the supervisor after failing its health check (`None`).
    Exited { code: Option<i32>, oom: bool },
}

/// What watching a running process saw first.
enum Watched {
    Stop,
    Exited(Option<Exit>),
    Unhealthy,
}

impl Replica {
    pub(super) fn spec(&self) -> &AppSpec {
        &self.assignment.spec
    }

    fn stop_after(&self) -> Option<Duration> {
        self.spec().disconnect.as_ref().map(|d| d.stop_after)
    }

    /// The lease to send the shim now, for a `stop-after` app. None before
    /// this agent's first contact: a replica taken on from the previous
    /// agent keeps the lease that agent gave it, counting down.
    fn lease(&self) -> Option<ToShim> {
        let stop_after = self.stop_after()?;
        self.inner.contact.borrow().as_ref()?;
        Some(ToShim::Lease {
            for_ms: self.inner.lease(stop_after).as_millis() as u64,
            drain_ms: self.spec().drain.as_millis() as u64,
        })
    }

    pub(super) async fn run(mut self) {
        let mut backoff = Backoff::default();
        let mut first = true;
        // What it wrote before this boot (or before it was last stopped)
        // is shown first; an adopted replica's ring was refilled by `adopt`.
        if self.adopted.is_none() {
            let log = self.log.clone();
            let _ = tokio::task::spawn_blocking(move || log.refill()).await;
        }
        loop {
            let began = Instant::now();
            // Set when no process ran: what `ps` shows while it waits.
            let mut failed = None;
            let ended = if let Some(shim) = self.adopted.take() {
                first = false;
                let port = shim.hello.port;
                self.set(|e| {
                    e.port = Some(port);
                    e.restarts = shim.hello.restarts;
                });
                match shim.hello.exited {
                    // Ended while no agent was there to see it.
                    Some(exit) => Ended::Exited {
                        code: exit.code,
                        oom: exit.oom,
                    },
                    None => self.supervise(shim, port, true).await,
                }
            } else {
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
                    self.inner.metrics.restart();
                }
                first = false;
                // `disconnect { stop-after }`: not started again while the
                // node is out of contact; its node may be replaced.
                if let Some(stop_after) = self.stop_after()
                    && self.inner.lease(stop_after).is_zero()
                {
                    self.set(|e| {
                        e.state = ReplicaState::Backoff;
                        e.error = Some(
                            "stopped: out of contact with the conductor for `stop-after`".into(),
                        );
                    });
                    let inner = self.inner.clone();
                    let mut stop = self.stop.clone();
                    let since = Instant::now();
                    tokio::select! {
                        biased;
                        _ = stop.wait_for(|s| *s) => break,
                        _ = inner.synced_after(since, stop_after) => {}
                    }
                    if *self.stop.borrow() {
                        break;
                    }
                }
                let restarts = lock(&self.inner.table)
                    .replicas
                    .get(&self.id)
                    .map_or(0, |e| e.restarts);
                self.log.run_started(&format!(
                    "generation {} starts (restart {restarts})",
                    self.assignment.generation
                ));
                // A build may take minutes: a stop does not wait for it.
                let mut stop = self.stop.clone();
                let launched = tokio::select! {
                    biased;
                    _ = stop.wait_for(|s| *s) => break,
                    launched = self.launch(port) => launched,
                };
                match launched {
                    Ok(shim) => self.supervise(shim, port, false).await,
                    Err((message, code, state)) => {
                        tracing::warn!(replica = %self.id, "{message}");
                        self.log.push(Stream::Stderr, &format!("skr8tr: {message}"));
                        // `status` shows it as the crash loop's reason.
                        self.set(|e| e.error = Some(format!("exit {code}, {message}")));
                        failed = Some(state);
                        Ended::Exited {
                            code: Some(code),
                            oom: false,
                        }
                    }
                }
            };
            let Ended::Exited { code, oom } = ended else {
                break;
            };
            if oom {
                self.inner.metrics.oom_kill();
            }
            // Stopped by its shim out of contact (`stop-after`): started
            // again once the node has the current set, whatever the
            // restart policy, as the conductor did not move it.
            let lease_stop = self.stop_after().is_some_and(|s| {
                self.inner.contact.borrow().is_some() && self.inner.lease(s).is_zero()
            });
            if !lease_stop && !should_restart(self.spec().restart, code) {
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
            if self.spec().port == Port::Auto && code.is_some() && began.elapsed() < QUICK_EXIT {
                self.set(|e| e.port = None);
            }
            let delay = backoff.next(began.elapsed());
            let what = if oom {
                let limit = self
                    .spec()
                    .ram
                    .map_or(String::new(), |b| format!(" (ram {} MiB)", b >> 20));
                format!("killed by the kernel: out of memory{limit}")
            } else {
                describe(code)
            };
            self.log.push(
                Stream::Stderr,
                &format!("skr8tr: {what}; restarting in {delay:?}"),
            );
            self.set(|e| {
                // Why it is down (a start failure already said): `ps`
                // shows it, and `status` calls a run of them a crash loop.
                if failed.is_none() {
                    e.error = Some(what.clone());
                }
                e.state = match (failed, oom) {
                    (Some(state), _) => state,
                    (None, true) => ReplicaState::OomKilled,
                    (None, false) => ReplicaState::Backoff,
                };
                e.pid = None;
            });
            if self.wait_or_stop(delay).await {
                break;
            }
        }
        self.finish();
    }

    /// Runs one process until it ends, is stopped, or fails its health
    /// check too often; its whole tree is gone when this returns.
    async fn supervise(&mut self, shim: Shim, port: u16, adopted: bool) -> Ended {
        let hello = shim.hello.clone();
        let hello_pid = hello.shim_pid;
        let (mut control, mut exited) = shim.attach(self.log.clone());
        let pid = hello.pid;
        let ready = adopted && hello.ready;
        if adopted {
            tracing::info!(replica = %self.id, pid, port, ready, "taken on from a previous agent");
        } else {
            tracing::info!(replica = %self.id, pid, port, "started");
        }
        self.set(|e| {
            e.state = if ready {
                ReplicaState::Ready
            } else {
                ReplicaState::Starting
            };
            e.pid = Some(pid);
            e.port = Some(port);
            e.started_at_ms = hello.started_at_ms;
            e.sampler = Sampler::default();
            // Running again: the last exit stays visible in `ps`.
            e.error =
                e.error
                    .take()
                    .map(|why| match why.strip_prefix(skr8tr_proto::wire::LAST_RUN) {
                        Some(_) => why,
                        None => format!("{}{why}", skr8tr_proto::wire::LAST_RUN),
                    });
        });
        let watched = self.watch(&mut control, &mut exited, port, ready).await;
        let ended = match watched {
            Watched::Stop => {
                self.set(|e| e.state = ReplicaState::Stopping);
                let exit = self.stop_shim(&mut control, exited, hello_pid).await;
                tracing::info!(replica = %self.id, pid, "stopped ({exit:?})");
                Ended::Stopped
            }
            Watched::Exited(exit) => {
                let (code, oom) = exit.map_or((None, false), |x| (x.code, x.oom));
                if exit.is_none() {
                    self.shim_vanished(hello_pid).await;
                }
                tracing::info!(replica = %self.id, pid, oom, "{}", describe(code));
                Ended::Exited { code, oom }
            }
            Watched::Unhealthy => {
                tracing::warn!(replica = %self.id, pid, "health check failed too often: restarting");
                self.log
                    .push(Stream::Stderr, "skr8tr: health check failed too often");
                self.stop_shim(&mut control, exited, hello_pid).await;
                Ended::Exited {
                    code: None,
                    oom: false,
                }
            }
        };
        control.reap().await;
        ended
    }

    /// Asks the shim to stop the replica (SIGTERM, drain, SIGKILL of the
    /// tree) and waits for its word.
    async fn stop_shim(
        &self,
        control: &mut Control,
        exited: oneshot::Receiver<Option<Exit>>,
        hello_pid: u32,
    ) -> Option<Exit> {
        let drain = self.spec().drain;
        let stop = ToShim::Stop {
            drain_ms: drain.as_millis() as u64,
        };
        if control.send(&stop).await.is_err() {
            self.shim_vanished(hello_pid).await;
            return None;
        }
        match tokio::time::timeout(drain + STOP_GRACE, exited).await {
            Ok(Ok(Some(exit))) => Some(exit),
            _ => {
                self.shim_vanished(hello_pid).await;
                None
            }
        }
    }

    /// The shim's connection ended without a word (the shim was killed, or
    /// it dropped a connection it could not write to): the shim, if it is
    /// still there, and whatever is left in the replica's cgroup go, so the
    /// next start never runs beside the old one.
    async fn shim_vanished(&self, shim_pid: u32) {
        tracing::warn!(replica = %self.id, "lost the replica's shim: stopping what is left of it");
        self.log
            .push(Stream::Stderr, "skr8tr: lost the replica's shim");
        let dir = shim_proto::replica_dir(&self.inner.config.data_dir, &self.id);
        let cgroup = self
            .inner
            .config
            .cgroups
            .as_ref()
            .map(|c| c.replica(&self.id));
        let _ = tokio::task::spawn_blocking(move || {
            // The shim's parent-death signal takes the replica with it;
            // the cgroup catches what escaped.
            process::tree::kill_shim(shim_pid, &dir);
            if let Some(cg) = cgroup {
                process::tree::kill_cgroup(&cg);
            }
        })
        .await;
    }

    /// Waits for the first of: a stop request, the process's exit, or the
    /// health verdict. Updates Starting/Ready/Unhealthy along the way, and
    /// tells the shim each change of readiness (for a later agent).
    /// `ready`: taken on as ready, so failures count at once.
    async fn watch(
        &mut self,
        control: &mut Control,
        exited: &mut oneshot::Receiver<Option<Exit>>,
        port: u16,
        ready: bool,
    ) -> Watched {
        let health: Option<Health> = self.spec().health.clone();
        let settle = self.spec().settle;
        let addr = SocketAddr::new(self.inner.probe_ip(), port);
        let started = Instant::now();
        let mut passed = ready;
        let mut told = ready;
        let mut failures = 0u32;
        let mut wake = match (&health, ready) {
            (_, true) | (Some(_), false) => Some(started),
            (None, false) => Some(started + settle),
        };
        let leased = self.stop_after().is_some();
        let metrics = &self.inner.metrics;
        loop {
            let (at, check) = (wake, health.as_ref());
            let step = async move {
                match at {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
                match check {
                    Some(h) => {
                        let began = std::time::Instant::now();
                        let verdict = health::probe(&h.check, addr, h.timeout).await;
                        metrics.probe(began.elapsed(), verdict.is_ok());
                        Some(verdict)
                    }
                    None => None,
                }
            };
            tokio::pin!(step);
            // A `stop-after` app's lease is renewed every second, without
            // cutting short a probe under way.
            let verdict = loop {
                if let Some(lease) = self.lease() {
                    let _ = control.send(&lease).await;
                }
                let lease_due = async {
                    if leased {
                        tokio::time::sleep(LEASE_EVERY).await;
                    } else {
                        std::future::pending::<()>().await;
                    }
                };
                tokio::select! {
                    biased;
                    _ = self.stop.wait_for(|stop| *stop) => return Watched::Stop,
                    exit = &mut *exited => return Watched::Exited(exit.ok().flatten()),
                    _ = lease_due => continue,
                    verdict = &mut step => break verdict,
                }
            };
            let now = Instant::now();
            let is_ready = match (&health, verdict) {
                (None, _) => {
                    self.set(|e| e.state = ReplicaState::Ready);
                    wake = None;
                    true
                }
                (Some(h), Some(Ok(()))) => {
                    if failures > 0 {
                        tracing::info!(replica = %self.id, "health check passes again");
                    }
                    passed = true;
                    failures = 0;
                    self.set(|e| e.state = ReplicaState::Ready);
                    wake = Some(now + h.interval);
                    true
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
                    false
                }
                (Some(h), Some(Err(e))) => {
                    failures += 1;
                    tracing::warn!(replica = %self.id, failures, "health check failed: {e}");
                    self.set(|e| e.state = ReplicaState::Unhealthy);
                    if failures >= h.retries.max(1) {
                        return Watched::Unhealthy;
                    }
                    wake = Some(now + h.interval);
                    false
                }
                // `step` yields a verdict whenever there is a health check.
                (Some(_), None) => {
                    wake = None;
                    told
                }
            };
            if is_ready != told {
                told = is_ready;
                let _ = control.send(&ToShim::Ready(is_ready)).await;
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
        let port = match self.spec().port {
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
        if let Some(cgroups) = &self.inner.config.cgroups {
            let _ = cgroups.replica(&self.id).remove();
        }
        if !table.shutting_down {
            match table.desired.get(&self.id).cloned() {
                Some(again) => self.inner.start(&mut table, again),
                // Unassigned for good: its output goes with it.
                None => {
                    if let Some(d) = self.log.disk() {
                        d.logs.remove(&d.key);
                    }
                }
            }
        }
        self.inner.changed.notify_one();
    }
}

fn describe(code: Option<i32>) -> String {
    match code {
        Some(c) => format!("exited with code {c}"),
        None => "killed".to_string(),
    }
}
