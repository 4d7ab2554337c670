//! The network edge shared by Skr8tr's processes: the one HTTP client the
//! CLI, node agents, the ingress's registry watcher and the test harness
//! use to talk to the conductor (postcard bodies, a timeout and a size cap
//! on every exchange), and the bounded listener every daemon serves on.
//!
//! Layout:
//! - [`client`]: [`Client`] — GET/POST with timeouts, capped bodies,
//!   streaming responses, errors that say what to check.
//! - [`server`]: [`server::serve`] — connection caps (in all and per
//!   address), header, idle and body timeouts, accept errors backed off.

#![forbid(unsafe_code)]

pub mod client;
pub mod server;

pub use client::{Client, HttpError};
