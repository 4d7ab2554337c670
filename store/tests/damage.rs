//! A damaged database file gives a clear error naming it — never a panic,
//! never a store that silently lost data.

// A test: an unwrap is an assertion (clippy allows it inside #[test]
// functions only; these helpers are part of the tests too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod util;

use skr8tr_store::*;
use std::path::Path;
use util::*;

/// A store with some commands in it; returns its file's bytes and the app names.
fn pristine(dir: &Path) -> (Vec<u8>, Vec<String>) {
    let store = create(dir);
    for i in 0..30 {
        let name = format!("app-{i}");
        let e = entry(&key(1), scale(&name, i), T0 + u64::from(i));
        store
            .command(e, move |tx| {
                let record = records::AppRecord {
                    generation: 1,
                    previous_generation: None,
                    replicas: 1,
                    status: records::AppStatus::Active,
                };
                Ok(tx.put_app(&name, &record)?)
            })
            .unwrap();
    }
    let names = store
        .snapshot()
        .unwrap()
        .apps()
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    drop(store);
    (std::fs::read(dir.join(DB_FILE)).unwrap(), names)
}

fn assert_clear(err: &OpenError, file: &Path) {
    let text = err.to_string();
    assert!(
        text.contains(&file.display().to_string()),
        "error does not name the file: {text}"
    );
    assert!(
        matches!(
            err,
            OpenError::Corrupt { .. }
                | OpenError::Store { .. }
                | OpenError::Schema { .. }
                | OpenError::Missing { .. }
        ),
        "unexpected kind: {err:?}"
    );
}

#[test]
fn truncated_files_are_refused_with_the_file_named() {
    let scratch = Scratch::new("truncate");
    let (bytes, _) = pristine(scratch.path());
    let file = scratch.path().join(DB_FILE);
    for len in [bytes.len() / 2, bytes.len() / 4, 4096, 100, 1] {
        std::fs::write(&file, &bytes[..len]).unwrap();
        match Store::open(scratch.path(), Options::default()) {
            Err(err) => {
                assert_clear(&err, &file);
                eprintln!("truncated to {len}: {err}");
            }
            Ok(store) => panic!(
                "a file truncated to {len} of {} bytes opened with {} apps",
                bytes.len(),
                store.snapshot().unwrap().apps().unwrap().len()
            ),
        }
    }
}

#[test]
fn a_file_that_is_not_a_database_is_refused() {
    let scratch = Scratch::new("garbage");
    std::fs::create_dir_all(scratch.path()).unwrap();
    let file = scratch.path().join(DB_FILE);
    std::fs::write(
        &file,
        b"this is not a redb file, it is a text file\n".repeat(200),
    )
    .unwrap();
    let err = Store::open(scratch.path(), Options::default())
        .err()
        .unwrap();
    assert!(matches!(err, OpenError::Corrupt { .. }), "{err:?}");
    assert!(
        err.to_string().contains("restore it from a backup"),
        "{err}"
    );
    assert_clear(&err, &file);
}

/// Flips bytes all over the file, one position per trial: each trial either
/// refuses to open with a clear error, or opens with every app and a
/// verifying audit chain — damage to unused space is harmless.
#[test]
fn flipped_bytes_are_detected_or_harmless() {
    let scratch = Scratch::new("flip");
    let (bytes, names) = pristine(scratch.path());
    let file = scratch.path().join(DB_FILE);
    let (mut refused, mut harmless) = (0, 0);
    let step = (bytes.len() / 97).max(1);
    for pos in (0..bytes.len()).step_by(step) {
        let mut damaged = bytes.clone();
        damaged[pos] ^= 0x5a;
        std::fs::write(&file, &damaged).unwrap();
        match Store::open(scratch.path(), Options::default()) {
            Err(err) => {
                assert_clear(&err, &file);
                refused += 1;
            }
            Ok(store) => {
                let snap = store.snapshot().unwrap();
                let got: Vec<String> = snap.apps().unwrap().into_iter().map(|(n, _)| n).collect();
                assert_eq!(got, names, "byte {pos} flipped: data changed silently");
                store
                    .verify_audit()
                    .unwrap_or_else(|e| panic!("byte {pos} flipped: audit changed silently: {e}"));
                harmless += 1;
            }
        }
    }
    eprintln!("{refused} damaged files refused, {harmless} opened intact");
    assert!(
        refused > 0,
        "no flipped byte was detected: the check is not running"
    );
}
