//! Shared helpers: scratch directories, real keys, signed commands.

#![allow(dead_code)]

use skr8tr_proto::command::{ClusterId, Command};
use skr8tr_proto::envelope::{self, Envelope, Nonce, Payload};
use skr8tr_proto::keys::SecretKey;
use skr8tr_store::records::{AppRecord, AppStatus, SpecRecord};
use skr8tr_store::{CommandEntry, Options, Store};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

pub const CLUSTER: ClusterId = ClusterId([0x5c; 16]);
pub const T0: u64 = 1_800_000_000_000;

pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "skr8tr-store-{}-{}-{name}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        Scratch(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn key(n: u8) -> SecretKey {
    SecretKey::from_seed(&[n; 32])
}

pub fn create(dir: &Path) -> Store {
    Store::create(
        dir,
        CLUSTER,
        "alice",
        &key(1).public(),
        T0,
        Options::default(),
    )
    .unwrap()
}

/// A command signed by `signer` at `time_ms` with a fresh nonce, as the
/// conductor would record it after verification.
pub fn entry(signer: &SecretKey, command: Command, time_ms: u64) -> CommandEntry {
    let payload = Payload {
        command,
        cluster: CLUSTER,
        issued_at_ms: time_ms,
        nonce: Nonce::generate().unwrap(),
    };
    entry_for(signer, &payload, time_ms)
}

pub fn entry_for(signer: &SecretKey, payload: &Payload, time_ms: u64) -> CommandEntry {
    let bytes = Envelope::sign_payload(signer, payload).unwrap().to_bytes();
    let ring = [signer.public()];
    let verified = envelope::verify(&bytes, &ring[..], &CLUSTER, time_ms).unwrap();
    CommandEntry::new(bytes, &verified, time_ms)
}

pub fn scale(app: &str, n: u32) -> Command {
    Command::Scale {
        app: app.into(),
        replicas: n,
    }
}

/// An active app record at `generation` with `replicas`.
pub fn app(generation: u64, replicas: u32) -> AppRecord {
    AppRecord {
        generation,
        previous_generation: generation.checked_sub(1).filter(|g| *g > 0),
        replicas,
        status: AppStatus::Active,
    }
}

/// A spec record of app `name` (with a secret), as `up` stores it.
pub fn spec_record(name: &str) -> SpecRecord {
    let text = format!("app {name}\n  exec /bin/{name}\n  secret {{ TOKEN hunter2 }}\n");
    let spec = skr8tr_proto::manifest::parse("t.skr8tr", &text)
        .unwrap()
        .remove(0);
    SpecRecord {
        spec,
        file: "t.skr8tr".into(),
        manifest: text,
        hash: [1; 32],
    }
}
