//! The conductor's shared state: the store (desired state), what nodes
//! reported (observed state, rebuilt after every restart), the operator
//! key ring, and the signals that wake long-polls and the reconciler.
//! Locks are `std::sync::Mutex`: nothing awaits while holding one.

use skr8tr_proto::command::ClusterId;
use skr8tr_proto::envelope::{KeyRing, KeyStatus};
use skr8tr_proto::keys::{Fingerprint, PublicKey, SecretKey};
use skr8tr_proto::wire::{NodeReport, SignedAssignments};
use skr8tr_store::{Store, StoreError};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{Notify, watch};

#[derive(Clone, Debug)]
pub struct Config {
    pub data_dir: PathBuf,
    /// A node silent this long is lost and its replicas are placed elsewhere.
    pub lost_after: Duration,
    /// After a start, scheduling waits until every node that holds
    /// placements reported, or this long.
    pub resync_timeout: Duration,
    /// How long an assignments long-poll waits for a change.
    pub long_poll: Duration,
    /// How long a new replica may take to become ready during a rollout
    /// before it reverts; `None`: from the spec (see `rollout::ready_timeout_ms`).
    pub step_timeout: Option<Duration>,
}

impl Config {
    pub fn new(data_dir: PathBuf) -> Config {
        Config {
            data_dir,
            lost_after: Duration::from_secs(5),
            resync_timeout: Duration::from_secs(5),
            long_poll: Duration::from_secs(25),
            step_timeout: None,
        }
    }
}

/// A node as last reported.
#[derive(Clone, Debug)]
pub struct NodeSeen {
    pub report: NodeReport,
    pub last_ms: u64,
}

pub struct Conductor {
    pub store: Arc<Store>,
    pub key: SecretKey,
    pub cluster: ClusterId,
    pub config: Config,
    /// When this conductor began serving: the re-sync window counts from
    /// here, not from opening the store (which may take a repair's time).
    started_ms: std::sync::atomic::AtomicU64,
    nodes: Mutex<BTreeMap<String, NodeSeen>>,
    keyring: Mutex<OperatorKeys>,
    /// Admitted nodes' keys, decoded once.
    node_keys: Mutex<HashMap<String, PublicKey>>,
    /// Bumped after every commit that may change some node's assignments.
    pub changed: watch::Sender<u64>,
    /// Wakes the reconciler early.
    pub wake: Notify,
    /// Bumped whenever the registry may have changed (reports, commits,
    /// reconciler ticks); registry watchers recompute and compare.
    pub registry_changed: watch::Sender<u64>,
    /// Round-robin position for `lookup --one`.
    pub lookup_next: std::sync::atomic::AtomicUsize,
    resyncing: AtomicBool,
    pending: Mutex<BTreeMap<String, String>>,
    /// Replica id → when the reconciler first saw it draining (observed,
    /// not stored: after a restart a drain lasts one more period).
    draining: Mutex<HashMap<String, u64>>,
    signed: Mutex<HashMap<String, (u64, Arc<SignedAssignments>)>>,
}

impl Conductor {
    pub fn new(
        store: Store,
        key: SecretKey,
        config: Config,
        started_ms: u64,
    ) -> Result<Conductor, StoreError> {
        let cluster = store.cluster_id();
        let keyring = OperatorKeys::load(&store)?;
        let mut node_keys = HashMap::new();
        for (name, record) in store.snapshot()?.node_keys()? {
            if let Ok(key) = PublicKey::from_bytes(&record.public_key) {
                node_keys.insert(name, key);
            }
        }
        Ok(Conductor {
            store: Arc::new(store),
            key,
            cluster,
            config,
            started_ms: std::sync::atomic::AtomicU64::new(started_ms),
            nodes: Mutex::new(BTreeMap::new()),
            keyring: Mutex::new(keyring),
            node_keys: Mutex::new(node_keys),
            changed: watch::channel(0).0,
            registry_changed: watch::channel(0).0,
            lookup_next: std::sync::atomic::AtomicUsize::new(0),
            wake: Notify::new(),
            resyncing: AtomicBool::new(true),
            pending: Mutex::new(BTreeMap::new()),
            draining: Mutex::new(HashMap::new()),
            signed: Mutex::new(HashMap::new()),
        })
    }

    pub fn nodes(&self) -> MutexGuard<'_, BTreeMap<String, NodeSeen>> {
        lock(&self.nodes)
    }

    pub fn keyring(&self) -> MutexGuard<'_, OperatorKeys> {
        lock(&self.keyring)
    }

    pub fn node_key(&self, node: &str) -> Option<PublicKey> {
        lock(&self.node_keys).get(node).cloned()
    }

    pub fn set_node_key(&self, node: &str, key: PublicKey) {
        lock(&self.node_keys).insert(node.to_string(), key);
    }

    pub fn reload_keys(&self) -> Result<(), StoreError> {
        let fresh = OperatorKeys::load(&self.store)?;
        *lock(&self.keyring) = fresh;
        Ok(())
    }

    pub fn started_ms(&self) -> u64 {
        self.started_ms.load(Ordering::Acquire)
    }

    /// Marks the moment the API is serving.
    pub fn mark_serving(&self, now_ms: u64) {
        self.started_ms.store(now_ms, Ordering::Release);
    }

    pub fn resyncing(&self) -> bool {
        self.resyncing.load(Ordering::Acquire)
    }

    pub fn end_resync(&self) {
        self.resyncing.store(false, Ordering::Release);
    }

    pub fn draining(&self) -> MutexGuard<'_, HashMap<String, u64>> {
        lock(&self.draining)
    }

    pub fn pending(&self) -> MutexGuard<'_, BTreeMap<String, String>> {
        lock(&self.pending)
    }

    pub fn signed_cache(&self) -> MutexGuard<'_, HashMap<String, (u64, Arc<SignedAssignments>)>> {
        lock(&self.signed)
    }

    /// Tells long-polls and the reconciler that desired state changed.
    pub fn bump(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
        self.registry_moved();
        self.wake.notify_one();
    }

    /// Tells registry watchers to look again.
    pub fn registry_moved(&self) {
        self.registry_changed
            .send_modify(|v| *v = v.wrapping_add(1));
    }

    pub fn is_alive(&self, seen: &NodeSeen, now_ms: u64) -> bool {
        now_ms.saturating_sub(seen.last_ms) <= self.config.lost_after.as_millis() as u64
    }
}

/// A poisoned lock means a panic elsewhere; the data is still the last
/// consistent value written under it (no await or partial update inside).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Operator keys decoded once (decoding costs as much as a verification).
#[derive(Default)]
pub struct OperatorKeys(HashMap<Fingerprint, (PublicKey, bool)>);

impl OperatorKeys {
    pub fn load(store: &Store) -> Result<OperatorKeys, StoreError> {
        let mut keys = HashMap::new();
        for (fp, record) in store.snapshot()?.operator_keys()? {
            if let Ok(key) = PublicKey::from_bytes(&record.public_key) {
                keys.insert(fp, (key, record.revoked_seq.is_some()));
            }
        }
        Ok(OperatorKeys(keys))
    }

    pub fn active(&self) -> usize {
        self.0.values().filter(|(_, revoked)| !revoked).count()
    }
}

impl KeyRing for OperatorKeys {
    fn lookup(&self, fp: &Fingerprint) -> KeyStatus<'_> {
        match self.0.get(fp) {
            Some((_, true)) => KeyStatus::Revoked,
            Some((key, false)) => KeyStatus::Active(key),
            None => KeyStatus::Unknown,
        }
    }
}
