//! Databases written by released schemas open with this binary and read
//! back as written; a database from the future is refused untouched.

// A test: an unwrap is an assertion (clippy allows it inside #[test]
// functions only; these helpers are part of the tests too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod util;

use redb::{ReadableDatabase, ReadableTableMetadata};
use skr8tr_proto::command::ClusterId;
use skr8tr_proto::keys::SecretKey;
use skr8tr_store::records::*;
use skr8tr_store::*;
use std::path::Path;
use util::*;

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../migrations/fixtures")
        .join(name)
}

/// A copy of a fixture in a scratch data directory (fixtures are never opened in place).
fn copy_fixture(name: &str, scratch: &Scratch) {
    std::fs::create_dir_all(scratch.path()).unwrap();
    std::fs::copy(fixture(name), scratch.path().join(DB_FILE)).unwrap();
}

/// What `store/examples/write_fixture.rs` wrote, as read back now.
fn check_fixture_contents(store: &Store) {
    check_fixture_entries(store, 6);
}

/// [`check_fixture_contents`] of a fixture with `entries` audit entries
/// (schema 4's adds one).
fn check_fixture_entries(store: &Store, entries: u64) {
    assert_eq!(store.cluster_id(), ClusterId([0xf1; 16]));
    let snap = store.snapshot().unwrap();

    let app = snap.app("api-server").unwrap().unwrap();
    assert_eq!(
        (app.generation, app.replicas, app.status),
        (1, 3, AppStatus::Active)
    );
    let spec = snap.spec("api-server", 1).unwrap().unwrap();
    assert_eq!(spec.spec.name, "api-server");
    assert_eq!(spec.spec.exec.as_deref(), Some("/usr/local/bin/myapi"));
    assert_eq!(spec.spec.scale.as_ref().map(|s| s.max), Some(8));
    assert!(spec.manifest.contains("cpu-above 80"));
    assert_eq!(snap.placements_of("api-server").unwrap().len(), 3);
    assert_eq!(
        snap.placement("api-server/1/2").unwrap().unwrap().port,
        Some(8080)
    );
    let rollout = snap.rollout("api-server").unwrap().unwrap();
    assert_eq!((rollout.step, rollout.phase), (1, RolloutPhase::Draining));

    let admin = SecretKey::from_seed(&[0x11; 32]).public().fingerprint();
    let bob = SecretKey::from_seed(&[0x22; 32]).public().fingerprint();
    let keys = snap.operator_keys().unwrap();
    assert_eq!(keys.len(), 2);
    let bob_record = snap.operator_key(&bob).unwrap().unwrap();
    assert_eq!(bob_record.added_by, Some(admin));
    assert_eq!(bob_record.revoked_seq, Some(6));
    assert!(snap.node_key("node-0").unwrap().is_some());

    let log = snap.audit_all().unwrap();
    let summaries: Vec<String> = log.iter().map(|r| r.summary()).collect();
    assert_eq!(summaries[1], "up api.skr8tr");
    assert_eq!(summaries[3], "node node-0 admitted");
    // The per-app index finds the `up` by the apps of its manifest.
    let (about, _) = snap
        .audit_of_app("api-server", None, 10, usize::MAX)
        .unwrap();
    assert_eq!(about.iter().map(|r| r.seq).collect::<Vec<_>>(), [2]);
    drop(snap);
    let report = store.verify_audit().unwrap();
    assert_eq!(
        (report.entries, report.signatures_verified, report.rejected),
        (entries, 3, 1)
    );
}

#[test]
fn schema_v1_fixture_migrates_and_reads_back() {
    let scratch = Scratch::new("fixture-v1");
    copy_fixture("v1.redb", &scratch);
    let store = Store::open(scratch.path(), Options::default()).unwrap();
    check_fixture_contents(&store);
    let log = store.snapshot().unwrap().audit_all().unwrap();
    assert_eq!(log[4].summary(), "unreadable", "schema 1's refusal record");
    drop(store);
    assert_eq!(
        raw_version(&scratch.path().join(DB_FILE)).0,
        skr8tr_migrations::CURRENT,
        "upgraded in place"
    );
}

#[test]
fn schema_v2_fixture_opens_and_reads_back() {
    let scratch = Scratch::new("fixture-v2");
    copy_fixture("v2.redb", &scratch);
    let store = Store::open(scratch.path(), Options::default()).unwrap();
    check_fixture_contents(&store);
    let log = store.snapshot().unwrap().audit_all().unwrap();
    assert!(
        log[4]
            .summary()
            .starts_with("unverified: unreadable (3 bytes, sha256 "),
        "{}",
        log[4].summary()
    );
    assert_eq!(log[4].actor(), "192.0.2.7");
    drop(store);
    assert_eq!(
        raw_version(&scratch.path().join(DB_FILE)).0,
        skr8tr_migrations::CURRENT,
        "specs rewritten with the placement keys, in place"
    );
}

#[test]
fn schema_v3_fixture_opens_and_reads_back() {
    let scratch = Scratch::new("fixture-v3");
    copy_fixture("v3.redb", &scratch);
    let store = Store::open(scratch.path(), Options::default()).unwrap();
    check_fixture_contents(&store);
    let spec = store
        .snapshot()
        .unwrap()
        .spec("api-server", 1)
        .unwrap()
        .unwrap();
    assert!(spec.spec.constraints.is_empty() && spec.spec.user.is_none());
}

/// Written by the conductor from before secret values were sealed at
/// rest (commit 9b3a38e): `up` of one app with a secret, whose spec holds
/// the value in clear and whose signed manifest a salted digest. The store
/// opens it as it is; the conductor seals the value on its first start
/// (`conductor/src/sealing.rs`).
#[test]
fn schema_v3_fixture_with_a_clear_secret_opens_and_verifies() {
    let scratch = Scratch::new("fixture-v3-secrets");
    copy_fixture("v3-secrets.redb", &scratch);
    let store = Store::open(scratch.path(), Options::default()).unwrap();
    let spec = store.snapshot().unwrap().spec("db", 1).unwrap().unwrap();
    assert_eq!(spec.spec.secrets[0].1.expose(), "fixture-hunter2");
    assert!(spec.manifest.contains("sha256:"), "{}", spec.manifest);
    assert_eq!(store.verify_audit().unwrap().signatures_verified, 1);
}

#[test]
fn schema_v3_fixture_gains_no_disconnect_and_no_cordon() {
    let scratch = Scratch::new("fixture-v3-to-4");
    copy_fixture("v3.redb", &scratch);
    let store = Store::open(scratch.path(), Options::default()).unwrap();
    let snap = store.snapshot().unwrap();
    let spec = snap.spec("api-server", 1).unwrap().unwrap();
    assert_eq!(spec.spec.disconnect, None, "replicas run on, as before");
    assert!(snap.cordoned().unwrap().is_empty());
    drop(snap);
    drop(store);
    assert_eq!(raw_version(&scratch.path().join(DB_FILE)).0, 4);
}

#[test]
fn schema_v4_fixture_opens_and_reads_back() {
    let scratch = Scratch::new("fixture-v4");
    copy_fixture("v4.redb", &scratch);
    let store = Store::open(scratch.path(), Options::default()).unwrap();
    check_fixture_entries(&store, 7);
    let snap = store.snapshot().unwrap();
    let worker = snap.spec("worker", 1).unwrap().unwrap();
    assert_eq!(
        worker.spec.disconnect.map(|d| d.stop_after),
        Some(std::time::Duration::from_secs(20))
    );
    let cordoned = snap.cordoned().unwrap();
    assert_eq!(cordoned.len(), 1);
    assert_eq!(cordoned[0].0, "node-1");
    assert_eq!(cordoned[0].1.since_seq, 7);
}

#[test]
fn every_fixture_is_tested() {
    let mut names: Vec<String> = std::fs::read_dir(fixture(""))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    // A new schema adds its fixture here and a test above.
    assert_eq!(
        names,
        [
            "v1.redb",
            "v2.redb",
            "v3-secrets.redb",
            "v3.redb",
            "v4.redb"
        ]
    );
    assert_eq!(
        skr8tr_migrations::CURRENT,
        4,
        "a schema change needs a fixture and a test"
    );
}

fn raw_version(file: &Path) -> (u32, u64) {
    let db = redb::Database::open(file).unwrap();
    let txn = db.begin_read().unwrap();
    let meta = txn.open_table(skr8tr_migrations::META).unwrap();
    let v = meta
        .get(skr8tr_migrations::SCHEMA_VERSION_KEY)
        .unwrap()
        .unwrap();
    let version = u32::from_le_bytes(v.value().try_into().unwrap());
    let audit: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("audit");
    let entries = txn.open_table(audit).unwrap().len().unwrap();
    (version, entries)
}

#[test]
fn a_database_from_a_newer_skr8tr_is_refused_and_left_alone() {
    let scratch = Scratch::new("newer");
    drop(create(scratch.path()));
    let file = scratch.path().join(DB_FILE);
    {
        let db = redb::Database::open(&file).unwrap();
        let txn = db.begin_write().unwrap();
        skr8tr_migrations::set_version(&txn, skr8tr_migrations::CURRENT + 1).unwrap();
        txn.commit().unwrap();
    }
    let before = raw_version(&file);
    let err = Store::open(scratch.path(), Options::default())
        .err()
        .unwrap();
    assert!(matches!(err, OpenError::Schema { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("newer than this skr8tr understands"),
        "{text}"
    );
    assert!(text.contains(&file.display().to_string()), "{text}");
    assert_eq!(raw_version(&file), before, "nothing was changed");
}
