//! Everything that crosses a Skr8tr process boundary, and nothing that does
//! I/O on a socket or a database.
//!
//! Layout:
//! - [`manifest`]: the `.skr8tr` parser and the typed [`manifest::AppSpec`].
//! - [`files`]: private data directories (0700) and files (0600).
//! - [`keys`]: ML-DSA-65 key pairs, PEM key files, fingerprints.
//! - [`sealed`]: secret values sealed to the conductor (ML-KEM-768 +
//!   ChaCha20-Poly1305).
//! - [`command`]: operator commands and the cluster id they are bound to.
//! - [`envelope`]: the signed-command envelope: sign, encode, verify.
//! - [`wire`]: conductor/node/CLI messages; conductor-signed assignments.
//! - [`code`]: refusal codes, their wire names and HTTP statuses.
//! - [`clock`]: the wall clock as Unix milliseconds (one place reads it).
//! - [`hex`]: lowercase hex for ids shown to people.

#![forbid(unsafe_code)]

pub mod clock;
pub mod code;
pub mod command;
pub mod envelope;
pub mod files;
pub mod hex;
pub mod keys;
pub mod manifest;
pub mod sealed;
pub mod wire;
