//! The network edge shared by Skr8tr's processes: the one HTTP client the
//! CLI, node agents, the ingress's registry watcher and the test harness
//! use to talk to the conductor (postcard bodies, a timeout and a size cap
//! on every exchange).
//!
//! Layout:
//! - [`client`]: [`Client`] — GET/POST with timeouts, capped bodies,
//!   streaming responses, errors that say what to check.

#![forbid(unsafe_code)]

pub mod client;

pub use client::{Client, HttpError};
