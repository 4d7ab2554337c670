//! `Store::backup`: a consistent copy taken while commands commit, opened
//! as a store of its own, on real redb files with real ML-DSA keys.

// A test: an unwrap is an assertion (clippy allows it inside #[test]
// functions only; these helpers are part of the tests too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod util;

use skr8tr_store::*;
use std::sync::Arc;
use util::*;

#[test]
fn a_backup_taken_while_commands_commit_opens_as_the_same_store() {
    let dir = Scratch::new("backup");
    let store = Arc::new(create(dir.path()));
    let alice = key(1);
    for i in 0..20u32 {
        let e = entry(&alice, scale("api", i + 1), T0 + u64::from(i));
        store
            .command(e, move |tx| {
                tx.put_app("api", &app(1, i + 1))?;
                tx.put_spec("api", 1, &spec_record("api"))?;
                Ok(())
            })
            .unwrap();
    }
    // Commands keep committing while the copy is made.
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            for i in 0..50u32 {
                let e = entry(&key(1), scale("api", i + 100), T0 + 1000 + u64::from(i));
                let _ = store.command(e, move |tx| Ok(tx.put_app("api", &app(1, i + 100))?));
            }
        })
    };
    let copy_dir = Scratch::new("backup-copy");
    std::fs::create_dir_all(copy_dir.path()).unwrap();
    let head = store.backup(&copy_dir.path().join(DB_FILE)).unwrap();
    writer.join().unwrap();
    assert!(
        store.backup(&copy_dir.path().join(DB_FILE)).is_err(),
        "never overwrites"
    );
    let copy = Store::open(copy_dir.path(), Options::default()).unwrap();
    assert_eq!(copy.cluster_id(), CLUSTER);
    let snap = copy.snapshot().unwrap();
    assert_eq!(snap.audit_head().unwrap(), head, "one consistent view");
    let report = copy.verify_audit().unwrap();
    assert_eq!(report.entries, head.0);
    assert_eq!(snap.operator_keys().unwrap().len(), 1);
    assert!(snap.spec("api", 1).unwrap().is_some());
    assert!(head.0 >= 21, "the first 20 commands at least: {head:?}");
    // The copy takes commands as the original does.
    let next = entry(&alice, scale("api", 7), T0 + 5000);
    assert!(matches!(
        copy.command(next, |tx| Ok(tx.put_app("api", &app(1, 7))?))
            .unwrap(),
        Outcome::Accepted { .. }
    ));
}
