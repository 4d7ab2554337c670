//! Simulated nodes for `skr8tr-sim`: many virtual node agents in one
//! process, each speaking the real protocol to a real conductor — its own
//! ML-DSA key admitted by a ticket the operator key signs, sessions over
//! TLS, assignment long-polls and reports at every change and each
//! heartbeat. Its replicas are not processes: a replica is `Starting` when
//! it is assigned and `Ready` after `ready_after`, on a port of its own.
//! What a benchmark measures is then the conductor, not fork + exec.

use skr8tr_net::{Auth, Client, Pin};
use skr8tr_proto::command::{ClusterId, Command};
use skr8tr_proto::envelope::Envelope;
use skr8tr_proto::keys::{PublicKey, SecretKey};
use skr8tr_proto::wire::{
    self, Assignments, NodeMessage, NodeReport, ReplicaReport, ReplicaState, ReportAck, Resources,
    Role,
};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::Notify;

/// What every virtual node shares.
pub struct Fleet {
    pub url: String,
    pub pin: Pin,
    pub conductor_key: PublicKey,
    pub operator: SecretKey,
    pub cluster: ClusterId,
    pub heartbeat: Duration,
    pub ready_after: Duration,
    /// Send every report whole, as a node of the release before delta
    /// reports does (to measure what deltas save).
    pub full_reports: bool,
    pub stats: Stats,
}

/// Counters the status line prints each second.
#[derive(Default)]
pub struct Stats {
    pub reports: AtomicU64,
    pub errors: AtomicU64,
    pub polls: AtomicU64,
    /// Report round trips since the last status line, µs (bounded).
    pub latencies: Mutex<Vec<u32>>,
}

/// At most this many latency samples between two status lines.
const MAX_SAMPLES: usize = 200_000;

impl Stats {
    fn sample(&self, d: Duration) {
        let mut l = self.latencies.lock().unwrap_or_else(|p| p.into_inner());
        if l.len() < MAX_SAMPLES {
            l.push(d.as_micros().min(u32::MAX as u128) as u32);
        }
    }

    /// The samples since the last call: (count, p50 µs, p99 µs).
    pub fn take_percentiles(&self) -> (usize, u32, u32) {
        let mut l = std::mem::take(&mut *self.latencies.lock().unwrap_or_else(|p| p.into_inner()));
        if l.is_empty() {
            return (0, 0, 0);
        }
        l.sort_unstable();
        let at = |q: f64| l[((l.len() - 1) as f64 * q).round() as usize];
        (l.len(), at(0.50), at(0.99))
    }
}

/// One virtual node.
pub struct VirtualNode {
    pub name: String,
    fleet: Arc<Fleet>,
    client: Client,
    boot_id: u64,
    version: AtomicU64,
    replicas: Mutex<BTreeMap<String, Replica>>,
    next_port: Mutex<u16>,
    changed: Notify,
    repoll: Notify,
    stopped: AtomicBool,
    /// Reports are sent one at a time (`run` alone sends them).
    reporter: tokio::sync::Mutex<wire::Reporter>,
}

struct Replica {
    app: String,
    generation: u64,
    port: u16,
    since: Instant,
    started_ms: u64,
}

impl VirtualNode {
    /// A node with a fresh key and a ticket for `name`.
    pub fn new(fleet: Arc<Fleet>, name: String) -> Result<Arc<VirtualNode>, String> {
        let key = SecretKey::generate().map_err(|e| e.to_string())?;
        let now = SystemTime::now();
        let admit = Command::AdmitNode {
            name: name.clone(),
            expires_at_ms: skr8tr_proto::clock::now_ms() + 600_000,
        };
        let ticket = Envelope::sign(&fleet.operator, admit, fleet.cluster, now)
            .map_err(|e| e.to_string())?
            .to_bytes();
        let auth = Auth::new(Arc::new(key), Role::Node(name.clone()))
            .with_ticket(Some(ticket))
            .with_conductor(fleet.conductor_key.clone());
        let client = Client::new(&fleet.url, fleet.pin)
            .map_err(|e| e.to_string())?
            .with_auth(auth);
        let mut boot = [0u8; 8];
        let _ = getrandom::fill(&mut boot);
        Ok(Arc::new(VirtualNode {
            name,
            fleet,
            client,
            boot_id: u64::from_le_bytes(boot),
            version: AtomicU64::new(0),
            replicas: Mutex::new(BTreeMap::new()),
            next_port: Mutex::new(20000),
            changed: Notify::new(),
            repoll: Notify::new(),
            stopped: AtomicBool::new(false),
            reporter: Default::default(),
        }))
    }

    /// Reports once (its session presents the ticket alone), then polls
    /// and reports until stopped.
    pub async fn run(self: Arc<Self>) {
        while !self.stopped.load(Ordering::Acquire) && !self.report().await {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let poller = tokio::spawn(self.clone().poll());
        while !self.stopped.load(Ordering::Acquire) {
            tokio::select! {
                _ = self.changed.notified() => {}
                _ = tokio::time::sleep(self.fleet.heartbeat) => {}
            }
            if self.stopped.load(Ordering::Acquire) {
                break;
            }
            self.report().await;
        }
        poller.abort();
    }

    /// Goes silent, as a node whose power is pulled.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.changed.notify_one();
    }

    pub fn stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// (replicas, ready) as it would report them now.
    pub fn counts(&self) -> (usize, usize) {
        let r = self.replicas.lock().unwrap_or_else(|p| p.into_inner());
        let ready = r
            .values()
            .filter(|x| x.since.elapsed() >= self.fleet.ready_after)
            .count();
        (r.len(), ready)
    }

    async fn poll(self: Arc<Self>) {
        loop {
            let have = self.version.load(Ordering::Acquire);
            let mut nonce = [0u8; 16];
            let _ = getrandom::fill(&mut nonce);
            let body = wire::encode(&NodeMessage::Poll {
                version: have,
                nonce,
            });
            let path = format!("/v1/nodes/{}/assignments", self.name);
            let answer = tokio::select! {
                r = self.client.post(&path, body, Duration::from_secs(35)) => r,
                _ = self.repoll.notified() => continue,
            };
            self.fleet.stats.polls.fetch_add(1, Ordering::Relaxed);
            match answer {
                Ok((status, body)) if status.is_success() => {
                    match Assignments::open(&body, &self.name, &nonce) {
                        Ok(set) => self.converge(set),
                        Err(_) => self.backoff().await,
                    }
                }
                _ => self.backoff().await,
            }
        }
    }

    async fn backoff(&self) {
        self.fleet.stats.errors.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    fn converge(self: &Arc<Self>, set: Assignments) {
        if set.version == self.version.load(Ordering::Acquire) {
            return;
        }
        {
            let mut replicas = self.replicas.lock().unwrap_or_else(|p| p.into_inner());
            let mut port = self.next_port.lock().unwrap_or_else(|p| p.into_inner());
            let wanted: std::collections::HashSet<&str> =
                set.replicas.iter().map(|a| a.replica.as_str()).collect();
            replicas.retain(|id, _| wanted.contains(id.as_str()));
            for a in &set.replicas {
                replicas.entry(a.replica.clone()).or_insert_with(|| {
                    *port = if *port >= 60000 { 20000 } else { *port + 1 };
                    Replica {
                        app: a.app.clone(),
                        generation: a.generation,
                        port: *port,
                        since: Instant::now(),
                        started_ms: skr8tr_proto::clock::now_ms(),
                    }
                });
            }
        }
        self.version.store(set.version, Ordering::Release);
        self.changed.notify_one();
        // Report again once the new replicas count as ready, as a real
        // node reports readiness at once rather than at its heartbeat.
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(me.fleet.ready_after + Duration::from_millis(5)).await;
            me.changed.notify_one();
        });
    }

    /// One report; whether the conductor took it.
    async fn report(&self) -> bool {
        let now = skr8tr_proto::clock::now_ms();
        let replicas: Vec<ReplicaReport> = {
            let r = self.replicas.lock().unwrap_or_else(|p| p.into_inner());
            r.iter()
                .map(|(id, x)| ReplicaReport {
                    replica: id.clone(),
                    app: x.app.clone(),
                    generation: x.generation,
                    state: if x.since.elapsed() >= self.fleet.ready_after {
                        ReplicaState::Ready
                    } else {
                        ReplicaState::Starting
                    },
                    pid: None,
                    port: Some(x.port),
                    restarts: 0,
                    started_at_ms: x.started_ms,
                    cpu_millis: 0,
                    rss_bytes: 0,
                    error: None,
                })
                .collect()
        };
        let report = NodeReport {
            node: self.name.clone(),
            address: "127.0.0.1".into(),
            boot_id: self.boot_id,
            assignments_version: self.version.load(Ordering::Acquire),
            resources: Resources {
                cpu_millis: 64_000,
                ram_bytes: 256 << 30,
                cpu_used_millis: 0,
                ram_used_bytes: 0,
            },
            replicas,
            logs_port: None,
            limits: None,
            labels: Vec::new(),
            wasm: false,
            leaving: false,
            logs_pin: None,
            clock_ms: now,
        };
        let path = format!("/v1/nodes/{}/report", self.name);
        if self.fleet.full_reports {
            let body = wire::encode(&NodeMessage::Report(report));
            return self.send(&path, body).await.is_ok();
        }
        let mut reporter = self.reporter.lock().await;
        let (message, pending) = reporter.message(report.clone());
        match self.send(&path, wire::encode(&message)).await {
            Ok(()) => {
                reporter.sent(pending);
                true
            }
            Err(resend) => {
                reporter.failed();
                if !resend {
                    return false;
                }
                // The conductor does not hold the delta's base (it
                // restarted): the full report, at once.
                let (message, pending) = reporter.message(report);
                let ok = self.send(&path, wire::encode(&message)).await.is_ok();
                if ok {
                    reporter.sent(pending);
                }
                ok
            }
        }
    }

    /// Posts one report; `Err(true)` when the conductor asks for a full one.
    async fn send(&self, path: &str, body: Vec<u8>) -> Result<(), bool> {
        let sent = Instant::now();
        let answer = self.client.post(path, body, Duration::from_secs(10)).await;
        self.fleet.stats.sample(sent.elapsed());
        match answer {
            Ok((status, body)) if status.is_success() => {
                self.fleet.stats.reports.fetch_add(1, Ordering::Relaxed);
                if let Ok(ack) = wire::decode::<ReportAck>(&body)
                    && ack.assignments_version != self.version.load(Ordering::Acquire)
                {
                    self.repoll.notify_one();
                }
                Ok(())
            }
            Ok((_, body)) => {
                let resend = wire::decode::<wire::ErrorReply>(&body)
                    .is_ok_and(|e| e.code == skr8tr_proto::code::Code::ReportResend.as_str());
                if !resend {
                    self.fleet.stats.errors.fetch_add(1, Ordering::Relaxed);
                }
                Err(resend)
            }
            Err(_) => {
                self.fleet.stats.errors.fetch_add(1, Ordering::Relaxed);
                Err(false)
            }
        }
    }
}
