//! One replica's task: take a port, spawn, watch (probes, exit, stop),
//! restart by policy with backoff, drain when unassigned, and leave the
//! table when done.

use super::{
    Backoff, Entry, Inner, NO_PORT_RETRY, QUICK_EXIT, STARTING_FAST_FOR, STARTING_PROBE_EVERY,
    lock, should_restart,
};
use crate::health;
use crate::logs::{self, SharedLog, Stream};
use crate::process::{self, LaunchPlan, Running, Sampler};
use skr8tr_proto::manifest::{AppSpec, Health, Port};
use skr8tr_proto::wire::ReplicaState;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::process::Child;
use tokio::sync::watch;

/// One replica's task.
pub(super) struct Replica {
    pub(super) inner: Arc<Inner>,
    pub(super) id: String,
    pub(super) app: String,
    pub(super) spec: AppSpec,
    pub(super) log: SharedLog,
    pub(super) stop: watch::Receiver<bool>,
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
    pub(super) async fn run(mut self) {
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
                address: self.inner.config.address,
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
            e.started_at_ms = skr8tr_proto::clock::now_ms();
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

fn describe(code: Option<i32>) -> String {
    match code {
        Some(c) => format!("exited with code {c}"),
        None => "killed".to_string(),
    }
}
