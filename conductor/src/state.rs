//! The conductor's shared state: the store (desired state), what nodes
//! reported (observed state, rebuilt after every restart), the operator
//! key ring, and the signals that wake long-polls and the reconciler.
//! Locks are `std::sync::Mutex`: nothing awaits while holding one.

use skr8tr_proto::command::ClusterId;
use skr8tr_proto::envelope::{KeyRing, KeyStatus};
use skr8tr_proto::keys::{Fingerprint, PublicKey, SecretKey};
use skr8tr_proto::wire::NodeReport;
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
    pub limits: crate::Limits,
    /// The budget window for unverified refusals: `refusals::WINDOW_MS`
    /// (tests shorten it to see windows end).
    pub refusal_window: Duration,
    /// The autoscaler's stabilisation windows and cooldown.
    pub autoscale: crate::autoscale::Windows,
}

impl Config {
    pub fn new(data_dir: PathBuf) -> Config {
        Config {
            data_dir,
            lost_after: Duration::from_secs(5),
            resync_timeout: Duration::from_secs(5),
            long_poll: Duration::from_secs(25),
            step_timeout: None,
            limits: crate::Limits::default(),
            refusal_window: Duration::from_millis(crate::refusals::WINDOW_MS),
            autoscale: crate::autoscale::Windows::default(),
        }
    }
}

/// A node as last reported.
#[derive(Clone, Debug)]
pub struct NodeSeen {
    pub report: NodeReport,
    pub last_ms: u64,
    /// The number of the report held (`None`: a node of the release
    /// before delta reports), which the next delta must name as its base.
    pub seq: Option<u64>,
}

/// The conductor's shared state. Desired state lives only in `store`;
/// everything else here is observed or derived, rebuilt after a restart.
pub struct Conductor {
    /// Desired state and the audit log: the one durable thing.
    pub store: Arc<Store>,
    /// The conductor's own signing key (assignments, log requests); nodes
    /// pin its public half.
    pub key: SecretKey,
    /// The ML-KEM key secret values are sealed to (`DATA/conductor.kem`):
    /// opened only to build a node's assignments.
    pub sealing: Arc<skr8tr_proto::sealed::OpeningKey>,
    /// Fixed when the store was created; every signed command names it.
    pub cluster: ClusterId,
    pub config: Config,
    /// Where `now` comes from: the system clock, or a hand-set one in tests.
    clock: Clock,
    /// When this conductor began serving: the re-sync window counts from
    /// here, not from opening the store (which may take a repair's time).
    started_ms: std::sync::atomic::AtomicU64,
    /// Observed: each node's last report and when it arrived.
    nodes: Mutex<BTreeMap<String, NodeSeen>>,
    /// Operator keys, decoded once (replaced whole after key commands, so
    /// a verification on the blocking pool holds its own copy).
    keyring: Mutex<Arc<OperatorKeys>>,
    /// Admitted nodes' keys, decoded once.
    node_keys: Mutex<HashMap<String, PublicKey>>,
    /// Desired state in memory, updated from what each commit wrote; it
    /// also wakes the long-polls of the nodes a commit touched.
    pub index: crate::index::Index,
    /// The last registry computed, until an endpoint changes.
    pub registry_cache: Mutex<Option<crate::registry::Cached>>,
    /// Wakes the reconciler early.
    pub wake: Notify,
    /// Bumped whenever the registry may have changed (a routable endpoint
    /// in a report, a commit, a node falling silent); watchers compare.
    pub registry_changed: watch::Sender<u64>,
    /// Round-robin position for `lookup --one`.
    pub lookup_next: std::sync::atomic::AtomicUsize,
    /// Who long-polls the registry (ingresses): the index each was last
    /// sent or said it has, and when. A leaving node waits until every
    /// one heard from lately has the registry without it.
    pub registry_watchers: Mutex<HashMap<String, (u64, u64)>>,
    /// True until the re-sync window after a start has closed: nothing is
    /// scheduled and no registry is published meanwhile.
    resyncing: AtomicBool,
    /// Derived by the last scheduler pass: apps with replicas that fit on
    /// no node, and why (shown by `status`).
    unplaced: Mutex<BTreeMap<String, String>>,
    /// The autoscaler's windows, last changes and per-app views.
    autoscale: Mutex<crate::autoscale::State>,
    /// Replica id → when the reconciler first saw it draining (observed,
    /// not stored: after a restart a drain lasts one more period).
    draining: Mutex<HashMap<String, u64>>,
    /// The budget of refusals from senders who proved no key.
    pub refusals: crate::refusals::Limiter,
    /// Turns for reading pages of the audit log (bounded memory).
    pub pages: tokio::sync::Semaphore,
    /// Counters for `/metrics`.
    pub metrics: crate::metrics::Metrics,
}

/// Where the conductor reads the time. Handlers and the reconciler ask
/// [`Conductor::now_ms`], so tests can drive them at a chosen moment.
#[derive(Debug)]
pub enum Clock {
    System,
    /// Set by hand (tests): Unix milliseconds.
    Manual(std::sync::atomic::AtomicU64),
}

impl Clock {
    pub fn manual(now_ms: u64) -> Clock {
        Clock::Manual(std::sync::atomic::AtomicU64::new(now_ms))
    }

    pub fn now_ms(&self) -> u64 {
        match self {
            Clock::System => skr8tr_proto::clock::now_ms(),
            Clock::Manual(t) => t.load(Ordering::Acquire),
        }
    }

    /// Moves a manual clock forward (a system clock is not moved).
    pub fn advance(&self, by: Duration) {
        if let Clock::Manual(t) = self {
            t.fetch_add(by.as_millis() as u64, Ordering::AcqRel);
        }
    }
}

impl Conductor {
    pub fn new(
        store: Store,
        key: SecretKey,
        sealing: skr8tr_proto::sealed::OpeningKey,
        config: Config,
        started_ms: u64,
    ) -> Result<Conductor, StoreError> {
        let cluster = store.cluster_id();
        let window_ms = config.refusal_window.as_millis() as u64;
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
            sealing: Arc::new(sealing),
            cluster,
            config,
            clock: Clock::System,
            started_ms: std::sync::atomic::AtomicU64::new(started_ms),
            nodes: Mutex::new(BTreeMap::new()),
            keyring: Mutex::new(Arc::new(keyring)),
            node_keys: Mutex::new(node_keys),
            index: crate::index::Index::default(),
            registry_cache: Mutex::new(None),
            registry_changed: watch::channel(0).0,
            lookup_next: std::sync::atomic::AtomicUsize::new(0),
            registry_watchers: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            resyncing: AtomicBool::new(true),
            unplaced: Mutex::new(BTreeMap::new()),
            autoscale: Mutex::new(crate::autoscale::State::default()),
            draining: Mutex::new(HashMap::new()),
            refusals: crate::refusals::Limiter::with_window(window_ms),
            pages: tokio::sync::Semaphore::new(crate::api::CONCURRENT_PAGES),
            metrics: crate::metrics::Metrics::default(),
        })
    }

    /// The same conductor, reading the time from `clock`.
    pub fn with_clock(mut self, clock: Clock) -> Conductor {
        self.clock = clock;
        self
    }

    /// Now, by this conductor's clock (Unix ms).
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub fn nodes(&self) -> MutexGuard<'_, BTreeMap<String, NodeSeen>> {
        lock(&self.nodes)
    }

    pub fn keyring(&self) -> Arc<OperatorKeys> {
        lock(&self.keyring).clone()
    }

    pub fn node_key(&self, node: &str) -> Option<PublicKey> {
        lock(&self.node_keys).get(node).cloned()
    }

    /// A revoked node: its key and its last report are gone.
    pub fn forget_node(&self, node: &str) {
        lock(&self.node_keys).remove(node);
        lock(&self.nodes).remove(node);
        self.index.forget(node);
        self.registry_moved();
    }

    pub fn set_node_key(&self, node: &str, key: PublicKey) {
        lock(&self.node_keys).insert(node.to_string(), key);
    }

    pub fn reload_keys(&self) -> Result<(), StoreError> {
        let fresh = OperatorKeys::load(&self.store)?;
        *lock(&self.keyring) = Arc::new(fresh);
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

    pub fn autoscale(&self) -> MutexGuard<'_, crate::autoscale::State> {
        lock(&self.autoscale)
    }

    pub fn unplaced(&self) -> MutexGuard<'_, BTreeMap<String, String>> {
        lock(&self.unplaced)
    }

    /// After a commit: the index catches up (waking the long-polls of the
    /// nodes it touched), registry watchers look again, the reconciler runs.
    pub fn bump(&self) {
        if let Err(e) = self.index.sync(&self.store) {
            // Each reader syncs again: the next one that can read catches up.
            crate::throttle::INDEX.warn(&e);
        }
        self.registry_moved();
        self.wake.notify_one();
    }

    /// Catches the index up with commits not in it yet, on the blocking
    /// pool: applying a large commit (10,000 placements take ~0.2 s) must
    /// not hold the async thread, which serves every connection. Readers
    /// on the async thread call this first; after it their own catch-up
    /// finds (nearly always) nothing left to do.
    pub async fn index_synced(self: &Arc<Self>) {
        if self.index.behind(&self.store) {
            let c = self.clone();
            let synced = tokio::task::spawn_blocking(move || c.index.sync(&c.store)).await;
            if let Ok(Err(e)) = synced {
                crate::throttle::INDEX.warn(&e);
            }
        }
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
