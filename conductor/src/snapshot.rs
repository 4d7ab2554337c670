//! Offline work on snapshot files (`skr8tr snapshot save` makes them, see
//! `api/snapshot.rs`): `restore` into an empty data directory, and the
//! audit chain verified from a file with no conductor running.
//!
//! A snapshot holds the store — apps, specs with their secret values
//! still sealed to the conductor's ML-KEM key, placements, operator and
//! node keys, the audit log, seen nonces — and nothing else. The
//! conductor's key files (`conductor.sec`/`.pub`: its signing identity,
//! which nodes pin; `conductor.kem`: what opens the secrets; `tls.crt`/
//! `tls.key`: the TLS identity every client pins) are backed up apart
//! from it, and `restore` takes them from a directory of their own.

use crate::{CONDUCTOR_PUBLIC_FILE, CONDUCTOR_SECRET_FILE, SEALING_KEY_FILE};
use sha2::{Digest, Sha256};
use skr8tr_proto::keys;
use skr8tr_proto::sealed::{self, OpeningKey};
use skr8tr_proto::wire::{SignedSnapshotHeader, SnapshotHeader};
use skr8tr_store::{ChainReport, DB_FILE, Options, Store};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The key files a restore needs, and the optional pin beside them.
pub const KEY_FILES: &[&str] = &[
    CONDUCTOR_SECRET_FILE,
    CONDUCTOR_PUBLIC_FILE,
    SEALING_KEY_FILE,
    skr8tr_net::tls::CERT_FILE,
    skr8tr_net::tls::KEY_FILE,
];

/// What a restore or a verification found.
#[derive(Debug)]
pub struct Checked {
    pub header: SnapshotHeader,
    pub report: ChainReport,
    pub apps: usize,
    pub secrets: usize,
}

/// Restores `file` into `data` (absent or empty), with the key files in
/// `keys`. Checks, in order: the preamble is signed by `keys`'
/// `conductor.pub` (whose secret half is beside it); the database is whole
/// (size and SHA-256); it opens as a store (an older schema is upgraded)
/// of the cluster the preamble names; its audit chain verifies up to the
/// preamble's head; every sealed secret opens with `keys`'
/// `conductor.kem`. Then the key files are copied beside it and the
/// restore is recorded in the audit log. Anything wrong leaves `data` as
/// it was.
pub fn restore(file: &Path, data: &Path, keys: &Path, now_ms: u64) -> Result<Checked, String> {
    if std::fs::read_dir(data).is_ok_and(|mut d| d.next().is_some()) {
        return Err(format!(
            "{} is not empty: a snapshot is restored only into an empty data directory \
             (it never overwrites a conductor's state)",
            data.display()
        ));
    }
    for name in KEY_FILES {
        if !keys.join(name).is_file() {
            return Err(format!(
                "{} has no {name}: give --keys the directory holding the conductor's key files \
                 ({})",
                keys.display(),
                KEY_FILES.join(", ")
            ));
        }
    }
    let public =
        keys::read_public_key(&keys.join(CONDUCTOR_PUBLIC_FILE)).map_err(|e| e.to_string())?;
    let secret =
        keys::read_secret_key(&keys.join(CONDUCTOR_SECRET_FILE)).map_err(|e| e.to_string())?;
    if secret.public() != public {
        return Err(format!(
            "{} and {} in {} are not one key pair",
            CONDUCTOR_SECRET_FILE,
            CONDUCTOR_PUBLIC_FILE,
            keys.display()
        ));
    }
    let opening = std::fs::read(keys.join(SEALING_KEY_FILE))
        .map_err(|e| e.to_string())
        .and_then(|b| OpeningKey::from_bytes(&b).map_err(|e| e.to_string()))
        .map_err(|e| format!("{}: {e}", keys.join(SEALING_KEY_FILE).display()))?;
    skr8tr_proto::files::private_dir(data).map_err(|e| e.to_string())?;
    let result = restore_into(file, data, keys, &public, &opening, now_ms);
    if result.is_err() {
        // Only what this wrote: the directory was empty.
        if let Ok(entries) = std::fs::read_dir(data) {
            for e in entries.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    result
}

fn restore_into(
    file: &Path,
    data: &Path,
    keys: &Path,
    public: &keys::PublicKey,
    opening: &OpeningKey,
    now_ms: u64,
) -> Result<Checked, String> {
    let signed = extract(file, data)?;
    let header = signed.open(public).map_err(|e| {
        format!(
            "{}: the snapshot is {e} ({}): these are not the key files of the conductor that took it",
            file.display(),
            keys.join(CONDUCTOR_PUBLIC_FILE).display()
        )
    })?;
    check_whole(data, &header)?;
    let checked = {
        let store = Store::open(data, Options::default()).map_err(|e| e.to_string())?;
        let checked = check_store(&store, header, Some(opening))?;
        let outcome = store
            .system(
                format!(
                    "restored from a snapshot taken at Unix ms {} (audit entry {}, database sha256 {})",
                    checked.header.taken_at_ms,
                    checked.header.audit_seq,
                    skr8tr_proto::hex::encode(&checked.header.db_sha256)
                ),
                Vec::new(),
                now_ms,
                |_| Ok(()),
            )
            .map_err(|e| format!("cannot record the restore: {e}"))?;
        if !matches!(outcome, skr8tr_store::Outcome::Accepted { .. }) {
            return Err("cannot record the restore in the audit log".into());
        }
        checked
    };
    let names = KEY_FILES
        .iter()
        .copied()
        .chain(std::iter::once(skr8tr_net::tls::PIN_FILE));
    for name in names {
        let from = keys.join(name);
        if !from.is_file() {
            continue;
        }
        let to = data.join(name);
        std::fs::copy(&from, &to).map_err(|e| format!("cannot copy {}: {e}", from.display()))?;
        skr8tr_proto::files::private_file(&to).map_err(|e| e.to_string())?;
    }
    Ok(checked)
}

/// Verifies a snapshot file with no conductor: its database is whole, it
/// opens as a store and its audit chain verifies to the preamble's head.
/// With `conductor_key`, the preamble's signature is checked too. The
/// database is opened from a copy under `scratch`, removed after.
pub fn verify(
    file: &Path,
    conductor_key: Option<&Path>,
    scratch: &Path,
) -> Result<(Checked, bool), String> {
    let dir = scratch.join(format!(
        "skr8tr-snapshot-{}-{}",
        std::process::id(),
        skr8tr_proto::clock::now_ms()
    ));
    skr8tr_proto::files::private_dir(&dir).map_err(|e| e.to_string())?;
    let result = (|| {
        let signed = extract(file, &dir)?;
        let (header, signed_ok) = match conductor_key {
            Some(path) => {
                let key = keys::read_public_key(path).map_err(|e| e.to_string())?;
                let header = signed.open(&key).map_err(|e| {
                    format!(
                        "{}: the snapshot is {e} ({})",
                        file.display(),
                        path.display()
                    )
                })?;
                (header, true)
            }
            None => (signed.claimed()?, false),
        };
        check_whole(&dir, &header)?;
        let store = Store::open(&dir, Options::default()).map_err(|e| e.to_string())?;
        Ok((check_store(&store, header, None)?, signed_ok))
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Writes the database part of `file` to `dir/DB_FILE`; returns the
/// preamble.
fn extract(file: &Path, dir: &Path) -> Result<SignedSnapshotHeader, String> {
    let mut input = File::open(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let signed = SignedSnapshotHeader::read_from(&mut input)
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let claimed = signed.claimed()?;
    let out_path = dir.join(DB_FILE);
    let mut out = private_create(&out_path)?;
    // Never more than the header says, plus one byte to see a longer file.
    let mut limited = input.take(claimed.db_bytes.saturating_add(1));
    std::io::copy(&mut limited, &mut out)
        .and_then(|_| out.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", out_path.display()))?;
    Ok(signed)
}

/// The extracted database has the size and digest the header says.
fn check_whole(dir: &Path, header: &SnapshotHeader) -> Result<(), String> {
    let path = dir.join(DB_FILE);
    let mut f = File::open(&path).map_err(|e| e.to_string())?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        total += n as u64;
    }
    if total != header.db_bytes {
        return Err(format!(
            "the snapshot holds {total} bytes of database where its header says {}: it is cut \
             short or has bytes added",
            header.db_bytes
        ));
    }
    let digest: [u8; 32] = hash.finalize().into();
    if digest != header.db_sha256 {
        return Err(
            "the snapshot's database does not match its checksum (sha256): it is damaged".into(),
        );
    }
    Ok(())
}

/// The store is the cluster the header names, its chain verifies to the
/// header's head, and (with `opening`) every sealed secret opens.
fn check_store(
    store: &Store,
    header: SnapshotHeader,
    opening: Option<&OpeningKey>,
) -> Result<Checked, String> {
    if store.cluster_id() != header.cluster {
        return Err(format!(
            "the snapshot's database is cluster {}, its header says {}",
            store.cluster_id(),
            header.cluster
        ));
    }
    let snap = store.snapshot().map_err(|e| e.to_string())?;
    let head = snap.audit_head().map_err(|e| e.to_string())?;
    if head != (header.audit_seq, header.audit_hash) {
        return Err(format!(
            "the snapshot's audit log ends at entry {}, its header says {}",
            head.0, header.audit_seq
        ));
    }
    let report = store.verify_audit().map_err(|e| e.to_string())?;
    let mut secrets = 0;
    let specs = snap.specs().map_err(|e| e.to_string())?;
    for (app, generation, record) in &specs {
        for (name, value) in &record.spec.secrets {
            let v = value.expose();
            if let Some(opening) = opening
                && sealed::is_sealed(v)
            {
                opening.open(app, name, v).map_err(|e| {
                    format!(
                        "secret `{name}` of app `{app}` (generation {generation}) does not open \
                         with this conductor.kem ({e}): give --keys the key files of the \
                         conductor that took the snapshot"
                    )
                })?;
            }
            secrets += 1;
        }
    }
    let apps = snap.apps().map_err(|e| e.to_string())?.len();
    Ok(Checked {
        header,
        report,
        apps,
        secrets,
    })
}

fn private_create(path: &PathBuf) -> Result<File, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    Ok(f)
}
