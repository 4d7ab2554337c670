//! The node's side of sync: long-poll the conductor for the assignment
//! set, converge the supervisor to it, and report — at once on any local
//! change, and at least every heartbeat. Every request goes on a session
//! (TLS to the pinned identity; the node's key and the pinned conductor
//! key proven over its exporter, see `skr8tr_net::session`), so nothing
//! but a set the pinned conductor sent, answering this very poll, ever
//! reaches the supervisor. While the conductor is unreachable the node
//! keeps running what it has.

use crate::supervisor::Supervisor;
use skr8tr_net::Client;
use skr8tr_proto::wire::{self, Assignments, NodeMessage, NodeReport, ReportAck, Resources};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

pub struct NodeSync {
    /// Opens its sessions with the node's key (and the join ticket until
    /// one is accepted).
    pub client: Client,
    pub name: String,
    pub address: String,
    pub boot_id: u64,
    pub resources: Resources,
    /// [`wire::NodeReport::limits`].
    pub limits: Option<String>,
    pub labels: Vec<(String, String)>,
    pub wasm: bool,
    pub heartbeat: Duration,
    pub supervisor: Arc<Supervisor>,
    pub changed: Arc<Notify>,
    /// The assignments version the supervisor converged to.
    pub version: AtomicU64,
    /// Wakes the poller when a report ack shows a newer version.
    pub repoll: Notify,
    /// Shutting down with its replicas: said in every report.
    pub leaving: std::sync::atomic::AtomicBool,
    /// The conductor's lost-node timeout, ms, from its last ack.
    pub lost_after_ms: AtomicU64,
    /// Out of contact past the lost-node timeout (frozen, partitioned):
    /// its replicas may have been replaced, so none is reported ready
    /// until a poll has brought the current assignments.
    pub gated: std::sync::atomic::AtomicBool,
    pub logs_port: Option<u16>,
    /// [`wire::NodeReport::logs_pin`].
    pub logs_pin: Option<[u8; 32]>,
    /// What the conductor holds of this node's reports, so the next one
    /// carries only what changed; held across each report, so two never
    /// name the same base.
    pub reporter: tokio::sync::Mutex<wire::Reporter>,
}

const POLL_TIMEOUT: Duration = Duration::from_secs(35);

impl NodeSync {
    /// Long-polls forever, converging on every new signed set.
    pub async fn poll(self: Arc<Self>) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let have = self.version.load(Ordering::Acquire);
            // Gated: ask for the whole set, answered at once.
            let asked = if self.gated.load(Ordering::Acquire) {
                0
            } else {
                have
            };
            let path = format!("/v1/nodes/{}/assignments", self.name);
            // The answer must echo it: a recorded answer replayed later
            // (an old set, say before a `down`) is refused.
            let mut nonce = [0u8; 16];
            let _ = getrandom::fill(&mut nonce);
            let body = wire::encode(&NodeMessage::Poll {
                version: asked,
                nonce,
            });
            let result = tokio::select! {
                r = self.client.post(&path, body, POLL_TIMEOUT) => r.map_err(|e| e.to_string()),
                _ = self.repoll.notified() => continue,
                // A replica stopped out of contact waits for the whole set.
                _ = self.supervisor.sync_wanted() => {
                    self.gated.store(true, Ordering::Release);
                    continue;
                }
            };
            match result.and_then(|(status, body)| {
                if !status.is_success() {
                    return Err(refusal(status, &body));
                }
                Assignments::open(&body, &self.name, &nonce).map_err(|e| e.to_string())
            }) {
                Ok(assignments) => {
                    let was_gated = self.gated.swap(false, Ordering::AcqRel);
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
                    self.supervisor.synced();
                    if was_gated {
                        tracing::info!("current assignments in: readiness reported again");
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
            self.report_once().await;
            tokio::select! {
                _ = self.changed.notified() => {}
                _ = tokio::time::sleep(self.heartbeat) => {}
            }
        }
    }

    /// Reports leaving until the conductor says nothing of this node is
    /// routed any more (true), or `timeout` passes (false).
    pub async fn leave(&self, timeout: Duration) -> bool {
        self.leaving.store(true, Ordering::Release);
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if self.report_once().await.is_some_and(|ack| ack.left) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    }

    /// One report (the first one's session also presents the join ticket);
    /// the conductor's answer, if it took it.
    pub async fn report_once(&self) -> Option<ReportAck> {
        let mut reporter = self.reporter.lock().await;
        // A delta the conductor cannot apply (it restarted) is answered
        // `report-resend`: the full report follows at once.
        for _ in 0..3 {
            let path = format!("/v1/nodes/{}/report", self.name);
            let (message, pending) = reporter.message(self.snapshot());
            let body = wire::encode(&message);
            // Contact counts from when the report left: the conductor
            // counts a node's silence from when its last report arrived,
            // which is no earlier.
            let sent = std::time::Instant::now();
            match self.client.post(&path, body, Duration::from_secs(5)).await {
                Ok((status, body)) if status.is_success() => {
                    let Ok(ack) = wire::decode::<ReportAck>(&body) else {
                        reporter.failed();
                        return None;
                    };
                    reporter.sent(pending);
                    self.supervisor.contact(sent);
                    self.lost_after_ms
                        .store(ack.lost_after_ms.max(1000), Ordering::Release);
                    if self.gated.load(Ordering::Acquire) {
                        // The poll may sit in a long-poll that began before
                        // the gap: ask again now.
                        self.repoll.notify_one();
                    }
                    if ack.assignments_version != self.version.load(Ordering::Acquire) {
                        self.repoll.notify_one();
                    }
                    return Some(ack);
                }
                Ok((status, body)) => {
                    reporter.failed();
                    if resend_asked(&body) {
                        tracing::debug!("the conductor asks for a full report");
                        continue;
                    }
                    if !reporter.legacy() && cannot_read_numbered(&body) {
                        // A conductor of the release before delta reports
                        // (rolled back): whole reports, as it reads them.
                        tracing::warn!(
                            "the conductor cannot read numbered reports (an older release): \
                             sending every report whole"
                        );
                        reporter.downgrade();
                        continue;
                    }
                    tracing::warn!("report refused: {}", refusal(status, &body));
                    return None;
                }
                Err(e) => {
                    reporter.failed();
                    tracing::warn!("report: {e}");
                    return None;
                }
            }
        }
        None
    }

    fn snapshot(&self) -> NodeReport {
        let mut replicas = self.supervisor.reports();
        let lost_after = Duration::from_millis(self.lost_after_ms.load(Ordering::Acquire));
        if self
            .supervisor
            .since_contact()
            .is_some_and(|d| d > lost_after)
            && !self.gated.swap(true, Ordering::AcqRel)
        {
            tracing::warn!(
                "out of contact with the conductor for longer than its lost-node timeout: \
                 reporting nothing ready until its current assignments are in"
            );
        }
        if self.gated.load(Ordering::Acquire) {
            for r in &mut replicas {
                if r.state == wire::ReplicaState::Ready {
                    r.state = wire::ReplicaState::Starting;
                }
            }
        }
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
            logs_pin: self.logs_pin,
            clock_ms: skr8tr_proto::clock::now_ms(),
            limits: self.limits.clone(),
            labels: self.labels.clone(),
            wasm: self.wasm,
            leaving: self.leaving.load(Ordering::Acquire),
        }
    }
}

/// The conductor's reason for refusing, or the status.
/// Whether a refusal asks for a full report (a delta's base is not held).
fn resend_asked(body: &[u8]) -> bool {
    wire::decode::<wire::ErrorReply>(body)
        .is_ok_and(|e| e.code == skr8tr_proto::code::Code::ReportResend.as_str())
}

/// Whether a refusal says the message could not be read at all, as a
/// conductor of the release before `Full`/`Delta` answers them.
fn cannot_read_numbered(body: &[u8]) -> bool {
    wire::decode::<wire::ErrorReply>(body).is_ok_and(|e| {
        e.code == skr8tr_proto::code::Code::BadRequest.as_str()
            && e.message.starts_with("not a node message")
    })
}

fn refusal(status: hyper::StatusCode, body: &[u8]) -> String {
    wire::decode::<wire::ErrorReply>(body)
        .map_or_else(|_| format!("conductor answered {status}"), |e| e.message)
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
