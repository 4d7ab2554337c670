//! The in-memory copy of desired state: built from the store at start,
//! then updated from what each commit wrote (`skr8tr_store::feed`), so a
//! reader costs what changed, not what exists. It keeps placements by node
//! and by app, and each node's assignment set with its version, rebuilt
//! only when a placement on that node (or the spec one of them names)
//! changes. A commit wakes the long-polls of the nodes it touched, and
//! only those.
//!
//! It is derived, never stored: after a restart it is read again from the
//! store. `tests::` checks it always equals a full read.

use crate::source::Desired;
use skr8tr_proto::command::ClusterId;
use skr8tr_proto::wire::{Assignment, Assignments};
use skr8tr_store::feed::{Changes, Touched};
use skr8tr_store::{Snapshot, Store, StoreError};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::watch;

pub struct Index {
    inner: Mutex<Inner>,
    /// The feed position the copy reflects, readable without the lock
    /// ([`UNBUILT`] until it is built): whether a reader would have to
    /// catch up costs an atomic load.
    at: AtomicU64,
    /// Per node: bumped when its assignment set changed. Made when the
    /// node first polls (an admitted node: names are checked by session).
    wakes: Mutex<HashMap<String, watch::Sender<u64>>>,
}

#[derive(Default)]
struct Inner {
    /// The feed position the copy reflects; `None`: not built yet.
    at: Option<u64>,
    desired: Arc<Desired>,
    by_node: HashMap<String, BTreeSet<String>>,
    by_app: HashMap<String, BTreeSet<String>>,
    /// Each node's set (its nonce unset) once asked for, until it changes.
    sets: HashMap<String, Arc<Assignments>>,
}

impl Default for Index {
    fn default() -> Index {
        Index {
            inner: Mutex::default(),
            at: AtomicU64::new(UNBUILT),
            wakes: Mutex::default(),
        }
    }
}

/// [`Index::at`] before the first build (a feed position never reaches it).
const UNBUILT: u64 = u64::MAX;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Index {
    /// Catches up with the store; the nodes whose assignment set changed
    /// (all known ones after a rebuild), their long-polls woken.
    pub fn sync(&self, store: &Store) -> Result<BTreeSet<String>, StoreError> {
        let touched = {
            let mut inner = lock(&self.inner);
            let touched = inner.catch_up(store)?;
            self.at
                .store(inner.at.unwrap_or(UNBUILT), Ordering::Release);
            touched
        };
        let wakes = lock(&self.wakes);
        for node in &touched {
            if let Some(w) = wakes.get(node) {
                w.send_modify(|v| *v = v.wrapping_add(1));
            }
        }
        Ok(touched)
    }

    /// Whether a commit is not in the copy yet: the next reader catches up
    /// (O(what it wrote)).
    pub fn behind(&self, store: &Store) -> bool {
        self.at.load(Ordering::Acquire) != store.feed().position()
    }

    /// Desired state as of now.
    pub fn desired(&self, store: &Store) -> Result<Arc<Desired>, StoreError> {
        self.sync(store)?;
        Ok(lock(&self.inner).desired.clone())
    }

    /// `node`'s assignment set as of now (its nonce unset).
    pub fn assignments(
        &self,
        store: &Store,
        cluster: ClusterId,
        node: &str,
    ) -> Result<Arc<Assignments>, StoreError> {
        self.sync(store)?;
        let mut inner = lock(&self.inner);
        if let Some(set) = inner.sets.get(node) {
            return Ok(set.clone());
        }
        let set = Arc::new(inner.build(cluster, node));
        inner.sets.insert(node.to_string(), set.clone());
        Ok(set)
    }

    /// The nodes that hold at least one placement (as of the last sync).
    pub fn placed_nodes(&self) -> Vec<String> {
        lock(&self.inner).by_node.keys().cloned().collect()
    }

    /// Changes whenever `node`'s assignment set may have.
    pub fn watch(&self, node: &str) -> watch::Receiver<u64> {
        lock(&self.wakes)
            .entry(node.to_string())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// A revoked node: its wake goes too.
    pub fn forget(&self, node: &str) {
        lock(&self.wakes).remove(node);
        lock(&self.inner).sets.remove(node);
    }
}

impl Inner {
    fn catch_up(&mut self, store: &Store) -> Result<BTreeSet<String>, StoreError> {
        match store.feed().since(self.at) {
            Changes::Keys { to, keys } if keys.is_empty() => {
                self.at = Some(to);
                Ok(BTreeSet::new())
            }
            Changes::Keys { to, keys } => {
                let snap = store.snapshot()?;
                let nodes = self.apply(&snap, keys)?;
                self.at = Some(to);
                Ok(nodes)
            }
            Changes::Rebuild { to } => {
                let snap = store.snapshot()?;
                let desired = Desired::load(&snap)?;
                let mut nodes: BTreeSet<String> = self.by_node.keys().cloned().collect();
                nodes.extend(self.sets.keys().cloned());
                self.by_node.clear();
                self.by_app.clear();
                self.sets.clear();
                for (id, p) in &desired.placements {
                    self.by_node
                        .entry(p.node.clone())
                        .or_default()
                        .insert(id.clone());
                    self.by_app
                        .entry(p.app.clone())
                        .or_default()
                        .insert(id.clone());
                }
                nodes.extend(self.by_node.keys().cloned());
                self.desired = Arc::new(desired);
                self.at = Some(to);
                Ok(nodes)
            }
        }
    }

    /// Reads each changed key's current value.
    fn apply(
        &mut self,
        snap: &Snapshot,
        keys: Vec<Touched>,
    ) -> Result<BTreeSet<String>, StoreError> {
        let d = Arc::make_mut(&mut self.desired);
        let mut nodes = BTreeSet::new();
        let mut apps = BTreeSet::new();
        let mut respecced = BTreeSet::new();
        for key in keys {
            match key {
                Touched::Placement(id) => {
                    if let Some(old) = d.placements.remove(&id) {
                        remove(&mut self.by_node, &old.node, &id);
                        remove(&mut self.by_app, &old.app, &id);
                        nodes.insert(old.node);
                        apps.insert(old.app);
                    }
                    if let Some(new) = snap.placement(&id)? {
                        self.by_node
                            .entry(new.node.clone())
                            .or_default()
                            .insert(id.clone());
                        self.by_app
                            .entry(new.app.clone())
                            .or_default()
                            .insert(id.clone());
                        nodes.insert(new.node.clone());
                        apps.insert(new.app.clone());
                        d.placements.insert(id, new);
                    }
                }
                Touched::App(app) => {
                    apps.insert(app);
                }
                Touched::Spec(app, generation) => {
                    d.specs.remove(&(app.clone(), generation));
                    respecced.insert(app.clone());
                    apps.insert(app);
                }
                Touched::Rollout(app) => {
                    match snap.rollout(&app)? {
                        Some(r) => d.rollouts.insert(app.clone(), r),
                        None => d.rollouts.remove(&app),
                    };
                    apps.insert(app);
                }
                Touched::Cordon(_) => {
                    d.cordoned = snap.cordoned()?.into_iter().map(|(n, _)| n).collect();
                }
            }
        }
        for app in &apps {
            refresh_app(d, snap, app, self.by_app.get(app))?;
        }
        for app in respecced {
            for id in self.by_app.get(&app).into_iter().flatten() {
                if let Some(p) = d.placements.get(id) {
                    nodes.insert(p.node.clone());
                }
            }
        }
        for node in &nodes {
            self.sets.remove(node);
        }
        Ok(nodes)
    }

    fn build(&self, cluster: ClusterId, node: &str) -> Assignments {
        let d = &self.desired;
        let replicas = self
            .by_node
            .get(node)
            .into_iter()
            .flatten()
            .filter_map(|id| {
                let p = d.placements.get(id)?;
                let spec = d.spec(&p.app, p.generation)?;
                Some(Assignment {
                    replica: id.clone(),
                    app: p.app.clone(),
                    generation: p.generation,
                    spec: spec.clone(),
                })
            })
            .collect();
        crate::assignments::set(cluster, node, replicas)
    }
}

fn remove(map: &mut HashMap<String, BTreeSet<String>>, key: &str, id: &str) {
    if let Some(set) = map.get_mut(key) {
        set.remove(id);
        if set.is_empty() {
            map.remove(key);
        }
    }
}

/// `app`'s record, its current spec and the specs its placements and
/// rollout name, as the store has them now (as `Desired::load` reads them).
fn refresh_app(
    d: &mut Desired,
    snap: &Snapshot,
    app: &str,
    placed: Option<&BTreeSet<String>>,
) -> Result<(), StoreError> {
    let record = snap.app(app)?;
    let mut wanted: BTreeSet<u64> = BTreeSet::new();
    if let Some(r) = &record {
        wanted.insert(r.generation);
    }
    for id in placed.into_iter().flatten() {
        if let Some(p) = d.placements.get(id) {
            wanted.insert(p.generation);
        }
    }
    if let Some(r) = d.rollouts.get(app) {
        wanted.insert(r.to_generation);
    }
    let stale: Vec<(String, u64)> = d
        .specs
        .range((app.to_string(), 0)..=(app.to_string(), u64::MAX))
        .map(|(k, _)| k.clone())
        .filter(|(_, g)| !wanted.contains(g))
        .collect();
    for k in stale {
        d.specs.remove(&k);
    }
    for g in wanted {
        let key = (app.to_string(), g);
        if !d.specs.contains_key(&key)
            && let Some(s) = snap.spec(app, g)?
        {
            d.specs.insert(key, s.spec);
        }
    }
    match record.and_then(|r| Some((d.spec(app, r.generation)?.clone(), r))) {
        Some((spec, r)) => d.apps.insert(app.to_string(), (r, spec)),
        None => d.apps.remove(app),
    };
    Ok(())
}

#[cfg(test)]
#[path = "index_tests.rs"]
mod tests;
