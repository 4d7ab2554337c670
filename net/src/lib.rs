//! The network edge shared by Skr8tr's processes: TLS, and the one HTTP client the
//! CLI, node agents, the ingress's registry watcher and the test harness
//! use to talk to the conductor (postcard bodies, a timeout and a size cap
//! on every exchange), and the bounded listener every daemon serves on.
//!
//! Layout:
//! - [`client`]: [`Client`] — TLS to a pinned identity, kept connections,
//!   GET/POST with timeouts, capped bodies, streaming responses, errors
//!   that say what to check.
//! - [`session`]: [`Auth`] — the proof a client opens each connection with.
//! - [`tls`]: [`Identity`](tls::Identity), [`Pin`], the rustls
//!   configurations (aws-lc-rs, TLS 1.3, X25519MLKEM768 first), the
//!   exporter, [`tls::accept`] (which answers plain HTTP with a refusal).
//! - [`metrics`]: [`metrics::serve`] — `GET /metrics` (prometheus-client's
//!   text; the classic format for clients that do not ask for OpenMetrics).
//! - [`server`]: [`server::serve`] — connection caps (in all and per
//!   address), header, idle and body timeouts, accept errors backed off.

#![forbid(unsafe_code)]

pub mod client;
pub mod metrics;
pub mod server;
pub mod session;
pub mod tls;

pub use client::{Client, HttpError};
pub use session::Auth;
pub use tls::Pin;
