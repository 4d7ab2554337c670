//! What every request shares: the configuration, the last good registry
//! snapshot, the round-robin position, ejected endpoints and the pooled
//! client. Locks are `std::sync`: nothing awaits while holding one.

use crate::Config;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use skr8tr_proto::wire::{Endpoint, RegistrySnapshot};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// An endpoint that refused a connection is skipped this long.
const EJECT_FOR: Duration = Duration::from_secs(5);

pub struct Shared {
    pub config: Config,
    pub client: Client<HttpConnector, Full<Bytes>>,
    registry: RwLock<Arc<RegistrySnapshot>>,
    next: AtomicUsize,
    ejected: Mutex<HashMap<String, Instant>>,
    /// Set once the first snapshot arrived.
    pub loaded: std::sync::atomic::AtomicBool,
}

impl Shared {
    pub fn new(config: Config, client: Client<HttpConnector, Full<Bytes>>) -> Shared {
        Shared {
            config,
            client,
            registry: RwLock::new(Arc::new(RegistrySnapshot::default())),
            next: AtomicUsize::new(0),
            ejected: Mutex::new(HashMap::new()),
            loaded: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub fn set_registry(&self, snapshot: RegistrySnapshot) {
        *self.registry.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(snapshot);
        self.loaded.store(true, Ordering::Release);
    }

    pub fn registry(&self) -> Arc<RegistrySnapshot> {
        self.registry
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The app's endpoints that are not ejected (all of them if every one
    /// is: a guess beats a certain 503).
    pub fn endpoints(&self, app: &str) -> Vec<Endpoint> {
        let all = self.registry().apps.get(app).cloned().unwrap_or_default();
        let now = Instant::now();
        let mut ejected = self.ejected.lock().unwrap_or_else(|p| p.into_inner());
        ejected.retain(|_, until| *until > now);
        let healthy: Vec<Endpoint> = all
            .iter()
            .filter(|e| !ejected.contains_key(&format!("{}:{}", e.address, e.port)))
            .cloned()
            .collect();
        if healthy.is_empty() { all } else { healthy }
    }

    pub fn eject(&self, addr: &str) {
        let mut ejected = self.ejected.lock().unwrap_or_else(|p| p.into_inner());
        ejected.insert(addr.to_string(), Instant::now() + EJECT_FOR);
    }

    pub fn next_index(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed)
    }
}
