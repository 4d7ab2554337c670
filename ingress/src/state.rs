//! What every request shares: the configuration, the last good registry
//! snapshot, the round-robin position, ejected endpoints and the pool of
//! backend connections. Locks are `std::sync`: nothing awaits while
//! holding one.

use crate::Config;
use skr8tr_proto::wire::RegistrySnapshot;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// An endpoint that refused a connection is skipped this long.
const EJECT_FOR: Duration = Duration::from_secs(5);

/// A backend, its `host:port` formatted once per registry change rather
/// than once per request (and shared, not copied, by each request).
#[derive(Clone, Debug)]
pub struct Backend {
    pub addr: Arc<str>,
}

/// Per app, its backends.
type Table = std::collections::HashMap<String, Arc<Vec<Backend>>>;

pub struct Shared {
    pub config: Config,
    /// Keep-alive connections to backends.
    pub pool: crate::pool::Pool,
    /// Room for request bodies held at once.
    pub bodies: skr8tr_net::server::BodyBudget,
    /// Requests in flight.
    pub gate: Arc<crate::gate::Gate>,
    backends: RwLock<Arc<Table>>,
    /// `--route` flags and the apps' manifest routes, swapped whole.
    routes: RwLock<Arc<crate::routes::Table>>,
    any_ejected: std::sync::atomic::AtomicBool,
    next: AtomicUsize,
    ejected: Mutex<HashMap<String, Instant>>,
    /// Set once the first snapshot arrived.
    pub loaded: std::sync::atomic::AtomicBool,
    /// Counters for `/metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl Shared {
    pub fn new(config: Config) -> Shared {
        Shared {
            bodies: skr8tr_net::server::BodyBudget::new(config.limits.max_buffered_bytes),
            gate: crate::gate::Gate::new(
                skr8tr_net::server::effective_max_connections(
                    config.limits.clients.max_connections,
                    skr8tr_net::server::file_limit(),
                ),
                config.limits.clients.max_per_ip,
            ),
            metrics: Arc::new(crate::metrics::Metrics::new(
                config.metrics_listen.is_some(),
            )),
            routes: RwLock::new(Arc::new(crate::routes::Table::new(&config.routes, &[]))),
            config,
            pool: crate::pool::Pool::default(),
            backends: RwLock::new(Arc::new(Table::new())),
            any_ejected: std::sync::atomic::AtomicBool::new(false),
            next: AtomicUsize::new(0),
            ejected: Mutex::new(HashMap::new()),
            loaded: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub fn set_registry(&self, snapshot: RegistrySnapshot) {
        let table: Table = snapshot
            .apps
            .iter()
            .map(|(app, endpoints)| {
                let backends = endpoints
                    .iter()
                    .map(|e| Backend {
                        addr: format!("{}:{}", e.address, e.port).into(),
                    })
                    .collect();
                (app.clone(), Arc::new(backends))
            })
            .collect();
        *self.backends.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(table);
        self.loaded.store(true, Ordering::Release);
    }

    /// The routes in use.
    pub fn routes(&self) -> Arc<crate::routes::Table> {
        self.routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The manifest routes changed: flags first, then these.
    pub fn set_manifest_routes(&self, manifest: &[crate::routes::Route]) {
        let table = crate::routes::Table::new(&self.config.routes, manifest);
        *self.routes.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(table);
    }

    /// The app's backends that are not ejected (all of them if every one
    /// is: a guess beats a certain 503).
    pub fn endpoints(&self, app: &str) -> Arc<Vec<Backend>> {
        let all = self
            .backends
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(app)
            .cloned()
            .unwrap_or_default();
        if !self.any_ejected.load(Ordering::Relaxed) {
            return all;
        }
        let now = Instant::now();
        let mut ejected = self.ejected.lock().unwrap_or_else(|p| p.into_inner());
        ejected.retain(|_, until| *until > now);
        if ejected.is_empty() {
            self.any_ejected.store(false, Ordering::Relaxed);
            return all;
        }
        let healthy: Vec<Backend> = all
            .iter()
            .filter(|b| !ejected.contains_key(&*b.addr))
            .cloned()
            .collect();
        if healthy.is_empty() {
            all
        } else {
            Arc::new(healthy)
        }
    }

    pub fn eject(&self, addr: &str) {
        let mut ejected = self.ejected.lock().unwrap_or_else(|p| p.into_inner());
        ejected.insert(addr.to_string(), Instant::now() + EJECT_FOR);
        self.any_ejected.store(true, Ordering::Relaxed);
        self.metrics.ejection();
    }

    pub fn next_index(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed)
    }
}
