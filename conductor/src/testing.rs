//! Test support for the conductor's effect layer: a real store in a
//! scratch directory, real ML-DSA-65 keys, a conductor whose clock is set
//! by hand, signed commands, and node reports put straight into observed
//! state. No sockets: tests call the effect functions, the reconciler's
//! step and the API router in process.

use crate::state::{Clock, Conductor, Config, NodeSeen};
use skr8tr_proto::command::{ClusterId, Command};
use skr8tr_proto::envelope::{self, Envelope, Nonce, Payload};
use skr8tr_proto::keys::SecretKey;
use skr8tr_proto::manifest::secrets;
use skr8tr_proto::wire::{
    self, CommandRequest, NodeReport, ReplicaReport, ReplicaState, Resources, SecretValue,
};
use skr8tr_store::{CommandEntry, Options, Outcome, Store};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A moment well after the keys' creation, as every test's start.
pub const T0: u64 = 1_800_000_000_000;

/// A directory removed when dropped.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "skr8tr-conductor-{}-{}-{name}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        Scratch(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A conductor on a fresh store, with the operator key that created it.
pub struct Harness {
    pub c: Arc<Conductor>,
    pub operator: SecretKey,
    _dir: Scratch,
}

pub fn operator_key() -> SecretKey {
    SecretKey::from_seed(&[0x0a; 32])
}

impl Harness {
    pub fn new(name: &str) -> Harness {
        let dir = Scratch::new(name);
        let operator = operator_key();
        let cluster = ClusterId([0x3c; 16]);
        let store = Store::create(
            dir.path(),
            cluster,
            "ops",
            &operator.public(),
            T0,
            Options::default(),
        )
        .unwrap();
        let mut config = Config::new(dir.path().to_path_buf());
        config.lost_after = Duration::from_secs(5);
        config.resync_timeout = Duration::from_secs(5);
        config.long_poll = Duration::from_millis(300);
        let conductor = Conductor::new(
            store,
            SecretKey::from_seed(&[0xc0; 32]),
            skr8tr_proto::sealed::OpeningKey::generate().unwrap(),
            config,
            T0,
        )
        .unwrap()
        .with_clock(Clock::manual(T0));
        Harness {
            c: Arc::new(conductor),
            operator,
            _dir: dir,
        }
    }

    pub fn now(&self) -> u64 {
        self.c.now_ms()
    }

    pub fn advance(&self, by: Duration) {
        self.c.clock().advance(by);
    }

    /// A `POST /v1/commands` body: `command` signed now by `key`, with
    /// secret values beside it.
    pub fn request_by(
        &self,
        key: &SecretKey,
        command: Command,
        secrets: Vec<SecretValue>,
    ) -> Vec<u8> {
        let payload = Payload {
            command,
            cluster: self.c.cluster,
            issued_at_ms: self.now(),
            nonce: Nonce::generate().unwrap(),
        };
        let envelope = Envelope::sign_payload(key, &payload).unwrap().to_bytes();
        wire::encode(&CommandRequest { envelope, secrets })
    }

    pub fn request(&self, command: Command) -> Vec<u8> {
        self.request_by(&self.operator, command, vec![])
    }

    /// Verifies and records `command` as the API would, applying its
    /// effect from `commands::prepare` inside the audited commit.
    pub fn apply_with(&self, command: Command, sidecar: &[SecretValue]) -> Outcome<String> {
        let request: CommandRequest = wire::decode(&self.request(command)).unwrap();
        let verified = {
            let ring = self.c.keyring();
            envelope::verify(&request.envelope, &*ring, &self.c.cluster, self.now()).unwrap()
        };
        let entry = CommandEntry::new(request.envelope, &verified, self.now());
        match crate::commands::prepare(
            &verified.payload.command,
            verified.signer,
            sidecar,
            &self.c.sealing,
        ) {
            Ok(effect) => self.c.store.command(entry, effect).unwrap(),
            Err(refusal) => self
                .c
                .store
                .command(entry, move |_| -> Result<String, _> {
                    Err(refusal.clone().into())
                })
                .unwrap(),
        }
    }

    pub fn apply(&self, command: Command) -> Outcome<String> {
        self.apply_with(command, &[])
    }

    /// Applies `command` and returns its message; panics if refused.
    pub fn ok(&self, command: Command) -> String {
        match self.apply(command) {
            Outcome::Accepted { value, .. } => value,
            Outcome::Rejected { refusal, .. } => panic!("refused: {refusal:?}"),
        }
    }

    /// Deploys `text` (secret values are taken out and sent beside it, as
    /// `skr8tr up` does).
    pub fn up(&self, text: &str) -> Outcome<String> {
        let (signed, values) = secrets::redact("t.skr8tr", text, || [7; 16]).unwrap();
        let sidecar: Vec<SecretValue> = values.into_iter().map(SecretValue::from).collect();
        self.apply_with(
            Command::Up {
                file: "t.skr8tr".into(),
                manifest: signed,
            },
            &sidecar,
        )
    }

    /// Node `name` reports now, running `replicas` (id, state, port).
    pub fn report(&self, name: &str, replicas: &[(&str, ReplicaState, Option<u16>)]) {
        let report = NodeReport {
            node: name.into(),
            address: "127.0.0.9".into(),
            boot_id: 1,
            assignments_version: 0,
            resources: Resources {
                cpu_millis: 4000,
                ram_bytes: 8 << 30,
                ..Resources::default()
            },
            replicas: replicas
                .iter()
                .map(|(id, state, port)| replica(id, *state, *port))
                .collect(),
            logs_port: Some(1),
            limits: Some("cgroup v1".into()),
            labels: Vec::new(),
            wasm: false,
            leaving: false,
            logs_pin: None,
            clock_ms: self.now(),
        };
        self.c.nodes().insert(
            name.into(),
            NodeSeen {
                report,
                last_ms: self.now(),
                seq: None,
            },
        );
        // As the report handler does (it tells only when endpoints moved).
        self.c.registry_moved();
    }

    /// Every placement: replica id → node.
    pub fn placements(&self) -> Vec<(String, String)> {
        self.c
            .store
            .snapshot()
            .unwrap()
            .placements()
            .unwrap()
            .into_iter()
            .map(|(id, p)| (id, p.node))
            .collect()
    }

    /// The summaries of the audit log, oldest first.
    pub fn history(&self) -> Vec<String> {
        self.c
            .store
            .snapshot()
            .unwrap()
            .audit_all()
            .unwrap()
            .iter()
            .map(|r| r.summary())
            .collect()
    }
}

/// A replica report as a node would send it.
pub fn replica(id: &str, state: ReplicaState, port: Option<u16>) -> ReplicaReport {
    let mut parts = id.split('/');
    let app = parts.next().unwrap_or_default().to_string();
    let generation = parts.next().and_then(|g| g.parse().ok()).unwrap_or(0);
    ReplicaReport {
        replica: id.into(),
        app,
        generation,
        state,
        pid: Some(4242),
        port,
        restarts: 0,
        started_at_ms: T0,
        cpu_millis: 0,
        rss_bytes: 0,
        error: None,
    }
}
