//! The node's side of sync: long-poll the conductor for the signed
//! assignment set, converge the supervisor to it, and report — at once on
//! any local change, and at least every heartbeat. Nothing but a set signed
//! by the pinned conductor key ever reaches the supervisor. While the
//! conductor is unreachable the node keeps running what it has.

use crate::http::Client;
use crate::supervisor::Supervisor;
use skr8tr_proto::keys::PublicKey;
use skr8tr_proto::wire::{self, NodeReport, ReportAck, Resources, SignedAssignments};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

pub struct Sync {
    pub client: Client,
    pub conductor_key: PublicKey,
    pub name: String,
    pub address: String,
    pub boot_id: u64,
    pub resources: Resources,
    pub heartbeat: Duration,
    pub supervisor: Arc<Supervisor>,
    pub changed: Arc<Notify>,
    /// The assignments version the supervisor converged to.
    pub version: AtomicU64,
    /// Wakes the poller when a report ack shows a newer version.
    pub repoll: Notify,
    pub logs_port: Option<u16>,
}

const POLL_TIMEOUT: Duration = Duration::from_secs(35);

impl Sync {
    /// Long-polls forever, converging on every new signed set.
    pub async fn poll(self: Arc<Self>) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let have = self.version.load(Ordering::Acquire);
            let path = format!("/v1/nodes/{}/assignments?version={have}", self.name);
            let result = tokio::select! {
                r = self.client.get(&path, POLL_TIMEOUT) => r,
                _ = self.repoll.notified() => continue,
            };
            match result
                .map_err(|e| e.to_string())
                .and_then(|(status, body)| {
                    if !status.is_success() {
                        return Err(format!("conductor answered {status}"));
                    }
                    let signed: SignedAssignments = wire::decode(&body)?;
                    signed
                        .open(&self.conductor_key, &self.name)
                        .map_err(|e| e.to_string())
                }) {
                Ok(assignments) => {
                    backoff = Duration::from_millis(100);
                    if assignments.version != have {
                        tracing::info!(
                            version = assignments.version,
                            replicas = assignments.replicas.len(),
                            "new assignments"
                        );
                        self.supervisor.converge(&assignments.replicas);
                        self.version.store(assignments.version, Ordering::Release);
                        self.changed.notify_one();
                    }
                }
                Err(e) => {
                    tracing::warn!(
                        "assignments: {e}; keeping the current replicas, retrying in {backoff:?}"
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// Reports on every change and at least every heartbeat.
    pub async fn report(self: Arc<Self>) {
        loop {
            let report = self.snapshot();
            let path = format!("/v1/nodes/{}/report", self.name);
            match self
                .client
                .post(&path, wire::encode(&report), Duration::from_secs(5))
                .await
            {
                Ok((status, body)) if status.is_success() => {
                    if let Ok(ack) = wire::decode::<ReportAck>(&body)
                        && ack.assignments_version != self.version.load(Ordering::Acquire)
                    {
                        self.repoll.notify_one();
                    }
                }
                Ok((status, body)) => {
                    let reason = wire::decode::<wire::ErrorReply>(&body)
                        .map_or(status.to_string(), |e| e.message);
                    tracing::warn!("report refused: {reason}");
                }
                Err(e) => tracing::warn!("report: {e}"),
            }
            tokio::select! {
                _ = self.changed.notified() => {}
                _ = tokio::time::sleep(self.heartbeat) => {}
            }
        }
    }

    fn snapshot(&self) -> NodeReport {
        let replicas = self.supervisor.reports();
        let mut resources = self.resources.clone();
        resources.cpu_used_millis = replicas.iter().map(|r| r.cpu_millis).sum();
        resources.ram_used_bytes = replicas.iter().map(|r| r.rss_bytes).sum();
        NodeReport {
            node: self.name.clone(),
            address: self.address.clone(),
            boot_id: self.boot_id,
            assignments_version: self.version.load(Ordering::Acquire),
            resources,
            replicas,
            logs_port: self.logs_port,
        }
    }
}

/// What this machine offers: every core and all of its RAM.
pub fn detect_resources() -> Resources {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let ram = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(1 << 30, |kb| kb * 1024);
    Resources {
        cpu_millis: cores * 1000,
        ram_bytes: ram,
        cpu_used_millis: 0,
        ram_used_bytes: 0,
    }
}
