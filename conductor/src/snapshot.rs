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
/// `conductor.kem`. It is built in a directory beside `data` (key files
/// first, then the database, then the restore recorded in the audit log)
/// that is renamed to `data` last: anything wrong, or an interrupted
/// restore, leaves `data` as it was.
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
    // Built beside `data` and renamed into place last: an interrupted
    // restore leaves no data directory that would start without its keys.
    let parent = data
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = data
        .file_name()
        .ok_or_else(|| format!("{} is not a directory name", data.display()))?;
    let staging = parent.join(format!(
        ".{}.restore-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&staging);
    skr8tr_proto::files::private_dir(&staging).map_err(|e| e.to_string())?;
    let result = guarded(|| restore_into(file, &staging, keys, &public, &opening, now_ms))
        .and_then(|checked| {
            // An empty `data` is replaced; a rename never merges.
            if data.exists() {
                std::fs::remove_dir(data).map_err(|e| format!("{}: {e}", data.display()))?;
            }
            std::fs::rename(&staging, data)
                .map_err(|e| format!("cannot move the restore into {}: {e}", data.display()))?;
            Ok(checked)
        });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
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
    // The signature first: nothing of an unsigned file is trusted.
    let (signed, mut input) = preamble(file)?;
    let header = signed.open(public).map_err(|e| {
        format!(
            "{}: the snapshot is {e} ({}): these are not the key files of the conductor that took it",
            file.display(),
            keys.join(CONDUCTOR_PUBLIC_FILE).display()
        )
    })?;
    // The keys go in first, then the database.
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
    extract(&mut input, &header, data)?;
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
    Ok(checked)
}

/// Runs `f`, a panic (a store file crafted to pass redb's page checks)
/// turned into an error.
fn guarded<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err("the snapshot's database is malformed".into()))
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
    let result = guarded(|| {
        let (signed, mut input) = preamble(file)?;
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
        extract(&mut input, &header, &dir)?;
        let store = Store::open(&dir, Options::default()).map_err(|e| e.to_string())?;
        Ok((check_store(&store, header, None)?, signed_ok))
    });
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Opens a snapshot file and reads its preamble. Only a regular file
/// whose size is exactly what its header says is taken, so what is copied
/// out of it is bounded by the file itself.
fn preamble(file: &Path) -> Result<(SignedSnapshotHeader, File), String> {
    let mut input = File::open(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let meta = input.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", file.display()));
    }
    let signed = SignedSnapshotHeader::read_from(&mut input)
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let claimed = signed.claimed()?;
    let at = std::io::Seek::stream_position(&mut input).map_err(|e| e.to_string())?;
    if meta.len() != at.saturating_add(claimed.db_bytes) {
        return Err(format!(
            "{}: the snapshot holds {} bytes of database where its header says {}: it is cut \
             short or has bytes added",
            file.display(),
            meta.len().saturating_sub(at),
            claimed.db_bytes
        ));
    }
    Ok((signed, input))
}

/// Writes the database part to `dir/DB_FILE`, checking its size and
/// digest against the header as it goes.
fn extract(input: &mut File, header: &SnapshotHeader, dir: &Path) -> Result<(), String> {
    let out_path = dir.join(DB_FILE);
    let mut out = private_create(&out_path)?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    let mut limited = input.take(header.db_bytes);
    loop {
        let n = limited.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        total += n as u64;
        std::io::Write::write_all(&mut out, &buf[..n])
            .map_err(|e| format!("cannot write {}: {e}", out_path.display()))?;
    }
    out.sync_all().map_err(|e| e.to_string())?;
    let digest: [u8; 32] = hash.finalize().into();
    if total != header.db_bytes || digest != header.db_sha256 {
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
