//! The ingress's Prometheus metrics (`--metrics-listen`): requests by
//! route and status, backend latency, retries, ejections, open client
//! connections.
//!
//! Kept cheap on the request path: a route's label values are shared
//! strings made once per route (a request clones two reference counts, it
//! copies no text), and no label comes from the request itself — an
//! unrouted request counts under `route=""` whatever its path, so no
//! client can grow the page.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use skr8tr_net::metrics::Registry;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: Arc<str>,
    app: Arc<str>,
    code: Status,
}

/// A status code as a label: a registered one as its number, anything
/// else a backend made up (hyper passes 100–999) as `other`, so a backend
/// cannot grow the page either.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct Status(u16);

impl Status {
    fn of(code: u16) -> Status {
        let known = hyper::StatusCode::from_u16(code)
            .ok()
            .and_then(|s| s.canonical_reason())
            .is_some();
        Status(if known { code } else { 0 })
    }
}

impl EncodeLabelValue for Status {
    fn encode(&self, e: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        use std::fmt::Write;
        match self.0 {
            0 => e.write_str("other"),
            n => write!(e, "{n}"),
        }
    }
}

pub struct Metrics {
    /// Off without `--metrics-listen`: nothing is counted, so the request
    /// path pays one branch.
    on: bool,
    none: Arc<str>,
    requests: Family<RequestLabels, Counter>,
    upstream_seconds: Histogram,
    retries: Counter,
    ejections: Counter,
    connections: Gauge,
}

impl Metrics {
    pub fn new(on: bool) -> Metrics {
        Metrics {
            on,
            none: Arc::from(""),
            requests: Family::default(),
            // 0.1 ms to ~3 s: a local backend up to a slow one.
            upstream_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 15)),
            retries: Counter::default(),
            ejections: Counter::default(),
            connections: Gauge::default(),
        }
    }

    /// A request answered with `code`; `route` is the label and app of
    /// the route that took it, if one did.
    pub fn request(&self, route: Option<&(Arc<str>, Arc<str>)>, code: u16) {
        if !self.on {
            return;
        }
        let (route, app) = match route {
            Some((r, a)) => (r.clone(), a.clone()),
            None => (self.none.clone(), self.none.clone()),
        };
        self.requests
            .get_or_create(&RequestLabels {
                route,
                app,
                code: Status::of(code),
            })
            .inc();
    }

    /// A backend answered (its response head) after `took`.
    pub fn upstream(&self, took: Duration) {
        if !self.on {
            return;
        }
        self.upstream_seconds.observe(took.as_secs_f64());
    }

    pub fn retry(&self) {
        self.retries.inc();
    }

    pub fn ejection(&self) {
        self.ejections.inc();
    }

    /// Counts a client connection open until the guard drops (an
    /// upgraded tunnel takes one of its own, as it outlives its HTTP
    /// connection).
    pub fn connection(self: &Arc<Self>) -> Open {
        if !self.on {
            return Open(None);
        }
        self.connections.inc();
        Open(Some(self.clone()))
    }

    pub fn registry(&self) -> Registry {
        let mut r = Registry::with_prefix("skr8tr_ingress");
        r.register(
            "requests",
            "Requests answered, by route (its prefix, empty when unrouted), app and status code",
            self.requests.clone(),
        );
        r.register(
            "upstream_duration_seconds",
            "Time from sending a request to a backend to its response head",
            self.upstream_seconds.clone(),
        );
        r.register(
            "retries",
            "Requests sent again to another backend after one failed",
            self.retries.clone(),
        );
        r.register(
            "ejections",
            "Backends set aside for a while after a connection to them failed",
            self.ejections.clone(),
        );
        r.register(
            "open_connections",
            "Client connections open",
            self.connections.clone(),
        );
        r
    }
}

/// One open client connection, counted (when metrics are on).
pub struct Open(Option<Arc<Metrics>>);

impl Drop for Open {
    fn drop(&mut self) {
        if let Some(m) = &self.0 {
            m.connections.dec();
        }
    }
}
