//! Every store operation against a real redb file, with real ML-DSA keys.

// A test: an unwrap is an assertion (clippy allows it inside #[test]
// functions only; these helpers are part of the tests too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod util;

use skr8tr_proto::code::Code;
use skr8tr_proto::command::Command;
use skr8tr_proto::keys::Fingerprint;
use skr8tr_store::records::*;
use skr8tr_store::*;
use std::sync::Arc;
use util::*;

fn placement(app: &str, node: &str) -> PlacementRecord {
    PlacementRecord {
        app: app.into(),
        generation: 1,
        index: 0,
        node: node.into(),
        port: Some(8080),
        desired: DesiredStatus::Run,
    }
}

fn accepted<R>(o: Outcome<R>) -> (u64, R) {
    match o {
        Outcome::Accepted { seq, value } => (seq, value),
        Outcome::Rejected { refusal, .. } => panic!("rejected: {refusal:?}"),
    }
}

fn rejected<R: std::fmt::Debug>(o: Outcome<R>) -> (Option<u64>, Refusal) {
    match o {
        Outcome::Rejected { seq, refusal } => (seq, refusal),
        other => panic!("accepted: {other:?}"),
    }
}

#[test]
fn create_writes_genesis_and_open_finds_it_again() {
    let dir = Scratch::new("create");
    let store = create(dir.path());
    assert_eq!(store.cluster_id(), CLUSTER);
    let snap = store.snapshot().unwrap();
    let keys = snap.operator_keys().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].0, key(1).public().fingerprint());
    assert_eq!(keys[0].1.name, "alice");
    assert_eq!(keys[0].1.added_seq, 1);
    let log = snap.audit_all().unwrap();
    assert_eq!(log.len(), 1);
    assert!(matches!(log[0].event, AuditEvent::Genesis { .. }));
    assert_eq!(log[0].time_ms, T0);
    drop(snap);
    drop(store);

    let store = Store::open(dir.path(), Options::default()).unwrap();
    assert_eq!(store.cluster_id(), CLUSTER);
    assert_eq!(store.verify_audit().unwrap().entries, 1);
    drop(store);

    let err = Store::create(
        dir.path(),
        CLUSTER,
        "bob",
        &key(2).public(),
        T0,
        Options::default(),
    )
    .err()
    .unwrap();
    assert!(matches!(err, OpenError::Exists { .. }), "{err}");
    assert!(err.to_string().contains(&CLUSTER.to_string()), "{err}");
}

#[test]
fn opening_nothing_says_how_to_create() {
    let dir = Scratch::new("missing");
    let err = Store::open(dir.path(), Options::default()).err().unwrap();
    assert!(matches!(err, OpenError::Missing { .. }));
    assert!(err.to_string().contains("--init-key"), "{err}");
    std::fs::create_dir_all(dir.path()).unwrap();
    std::fs::write(dir.path().join(DB_FILE), b"").unwrap();
    assert!(matches!(
        Store::open(dir.path(), Options::default()),
        Err(OpenError::Missing { .. })
    ));
}

#[test]
fn a_second_open_of_the_same_directory_fails_at_once_naming_it() {
    let dir = Scratch::new("lock");
    let _first = create(dir.path());
    let started = std::time::Instant::now();
    let err = Store::open(dir.path(), Options::default()).err().unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert!(matches!(err, OpenError::Locked { .. }), "{err}");
    assert!(
        err.to_string().contains(&dir.path().display().to_string()),
        "{err}"
    );
}

#[test]
fn a_command_and_its_effect_commit_together_with_the_exact_envelope() {
    let dir = Scratch::new("command");
    let store = create(dir.path());
    let e = entry(&key(1), scale("api", 3), T0 + 1000);
    let envelope = e.envelope.clone();
    let (seq, value) = accepted(
        store
            .command(e, |tx| {
                tx.put_app("api", &app(1, 3))?;
                Ok(tx.seq() * 10)
            })
            .unwrap(),
    );
    assert_eq!(seq, 2);
    assert_eq!(value, 20, "the effect saw its own audit seq");
    let snap = store.snapshot().unwrap();
    assert_eq!(snap.app("api").unwrap(), Some(app(1, 3)));
    let log = snap.audit_all().unwrap();
    let last = log.last().unwrap();
    assert!(last.is_accepted());
    assert_eq!(last.time_ms, T0 + 1000);
    assert_eq!(last.actor(), key(1).public().fingerprint().to_string());
    assert_eq!(last.summary(), "scale api 3");
    match &last.event {
        AuditEvent::Command { envelope: kept, .. } => assert_eq!(kept, &envelope),
        other => panic!("{other:?}"),
    }
    assert_eq!(store.verify_audit().unwrap().signatures_verified, 1);
}

#[test]
fn a_replayed_nonce_is_rejected_even_after_a_restart() {
    let dir = Scratch::new("replay");
    let store = create(dir.path());
    let e = entry(&key(1), scale("api", 3), T0);
    accepted(
        store
            .command(e.clone(), |tx| Ok(tx.put_app("api", &app(1, 3))?))
            .unwrap(),
    );
    assert!(store.snapshot().unwrap().nonce_seen(&e.nonce).unwrap());

    let (seq, refusal) = rejected(
        store
            .command(e.clone(), |tx| Ok(tx.put_app("api", &app(1, 99))?))
            .unwrap(),
    );
    assert_eq!(seq, Some(3));
    assert_eq!(refusal.code, Code::Replayed);
    assert_eq!(
        store
            .snapshot()
            .unwrap()
            .app("api")
            .unwrap()
            .unwrap()
            .replicas,
        3
    );
    drop(store);

    let store = Store::open(dir.path(), Options::default()).unwrap();
    let (_, refusal) = rejected(
        store
            .command(e, |tx| Ok(tx.put_app("api", &app(1, 99))?))
            .unwrap(),
    );
    assert_eq!(refusal.code, Code::Replayed);
    let log = store.snapshot().unwrap().audit_all().unwrap();
    assert_eq!(log.len(), 4);
    assert!(matches!(
        &log[3].outcome,
        AuditOutcome::Rejected { code, .. } if code == "replayed"
    ));
    // Rejected entries are evidence too, and the chain still verifies.
    let report = store.verify_audit().unwrap();
    assert_eq!(
        (report.entries, report.signatures_verified, report.rejected),
        (4, 1, 2)
    );
}

#[test]
fn a_refusing_effect_leaves_nothing_but_the_refusal_and_burns_the_nonce() {
    let dir = Scratch::new("refuse");
    let store = create(dir.path());
    let e = entry(&key(1), scale("ghost", 2), T0);
    let (seq, refusal) = rejected(
        store
            .command(e.clone(), |tx| {
                // Writes first, then refuses: the write must not survive.
                tx.put_app("ghost", &app(1, 2))?;
                Err::<(), _>(Refusal::new(Code::UnknownApp, "no app named `ghost`").into())
            })
            .unwrap(),
    );
    assert_eq!(seq, Some(2));
    assert_eq!(refusal.code, Code::UnknownApp);
    let snap = store.snapshot().unwrap();
    assert_eq!(snap.app("ghost").unwrap(), None);
    assert!(
        snap.nonce_seen(&e.nonce).unwrap(),
        "a refused command cannot be replayed later"
    );
    let log = snap.audit_all().unwrap();
    assert!(
        matches!(&log[1].outcome, AuditOutcome::Rejected { code, .. } if code == "unknown-app")
    );
}

#[test]
fn rejections_and_system_changes_are_recorded() {
    let dir = Scratch::new("reject");
    let store = create(dir.path());
    let seq = store
        .reject(UnverifiedEntry {
            from: "10.0.0.9".into(),
            bytes: b"garbage".to_vec(),
            claimed_signer: None,
            summary: "unreadable".into(),
            refusal: Refusal::new(Code::Malformed, "not a signed command"),
            time_ms: T0 + 5,
        })
        .unwrap();
    assert_eq!(seq, 2);
    let (seq, ()) = accepted(
        store
            .system(
                "node n1 lost: api/1/0 moved to n2",
                vec!["api".into()],
                T0 + 6,
                |tx| Ok(tx.put_placement("api/1/0", &placement("api", "n2"))?),
            )
            .unwrap(),
    );
    assert_eq!(seq, 3);
    let (seq, _) = rejected(
        store
            .system("nothing", vec![], T0 + 7, |_| {
                Err::<(), _>(Refusal::new(Code::BadRequest, "nothing to do").into())
            })
            .unwrap(),
    );
    assert_eq!(seq, None, "a refused system change records nothing");
    let log = store.snapshot().unwrap().audit_all().unwrap();
    assert_eq!(log.len(), 3);
    assert_eq!(log[1].actor(), "10.0.0.9");
    assert!(
        log[1]
            .summary()
            .starts_with("unverified: unreadable (7 bytes, sha256 "),
        "{}",
        log[1].summary()
    );
    assert_eq!(log[2].actor(), "conductor");
    assert_eq!(log[2].summary(), "node n1 lost: api/1/0 moved to n2");
    assert_eq!(store.verify_audit().unwrap().rejected, 1);
}

#[test]
fn every_table_round_trips_through_tx_and_snapshot() {
    let dir = Scratch::new("tables");
    let store = create(dir.path());
    let bob = key(2).public();
    let node_key = key(3).public();
    let e = entry(&key(1), scale("all", 1), T0);
    let bob2 = bob.clone();
    let node_key2 = node_key.clone();
    accepted(
        store
            .command(e, move |tx| {
                tx.put_app("a", &app(1, 1))?;
                tx.put_app("ab", &app(2, 2))?;
                tx.put_spec("a", 1, &spec_record("a"))?;
                tx.put_spec("a", 2, &spec_record("a"))?;
                tx.put_spec("ab", 1, &spec_record("ab"))?;
                tx.put_placement("a/1/0", &placement("a", "n1"))?;
                tx.put_placement("a/1/1", &placement("a", "n2"))?;
                tx.put_placement("ab/1/0", &placement("ab", "n1"))?;
                tx.put_rollout(
                    "a",
                    &RolloutRecord {
                        from_generation: 1,
                        to_generation: 2,
                        step: 0,
                        phase: RolloutPhase::Surging,
                        started_at_ms: T0,
                        step_deadline_ms: T0 + 30_000,
                        reason: None,
                    },
                )?;
                tx.add_operator_key("bob", &bob2, Some(Fingerprint([1; 8])))?;
                tx.admit_node("n1", &node_key2, None)?;
                // Reads inside the transaction see its own writes.
                assert_eq!(tx.placements_of("a")?.len(), 2);
                Ok(())
            })
            .unwrap(),
    );
    let snap = store.snapshot().unwrap();
    assert_eq!(
        snap.apps()
            .unwrap()
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>(),
        ["a", "ab"]
    );
    assert_eq!(
        snap.specs_of("a")
            .unwrap()
            .iter()
            .map(|(g, _)| *g)
            .collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(snap.spec("ab", 1).unwrap().unwrap().spec.name, "ab");
    assert_eq!(snap.spec("ab", 2).unwrap(), None);
    let secret = &snap.spec("a", 1).unwrap().unwrap().spec.secrets[0].1;
    assert_eq!(
        secret.expose(),
        "hunter2",
        "secrets survive storage for the node"
    );
    let of_a: Vec<String> = snap
        .placements_of("a")
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(of_a, ["a/1/0", "a/1/1"], "`ab` placements are not `a`'s");
    assert_eq!(snap.placements().unwrap().len(), 3);
    assert_eq!(snap.placement("ab/1/0").unwrap().unwrap().node, "n1");
    assert_eq!(snap.rollout("a").unwrap().unwrap().to_generation, 2);
    assert_eq!(snap.rollouts().unwrap().len(), 1);
    let bob_record = snap.operator_key(&bob.fingerprint()).unwrap().unwrap();
    assert_eq!((bob_record.name.as_str(), bob_record.added_seq), ("bob", 2));
    assert_eq!(bob_record.public_key, bob.to_bytes());
    assert_eq!(
        snap.node_key("n1").unwrap().unwrap().public_key,
        node_key.to_bytes()
    );
    assert_eq!(snap.node_keys().unwrap().len(), 1);
    drop(snap);

    let bob_fp = bob.fingerprint();
    let e = entry(&key(1), scale("all", 0), T0 + 1);
    let (seq, revoked) = accepted(
        store
            .command(e, move |tx| {
                assert!(tx.remove_app("ab")?);
                assert!(!tx.remove_app("ab")?);
                assert!(tx.remove_spec("a", 1)?);
                assert!(tx.remove_placement("a/1/1")?);
                assert!(tx.remove_rollout("a")?);
                assert!(tx.remove_node_key("n1")?);
                let first = tx.revoke_operator_key(&bob_fp)?;
                let again = tx.revoke_operator_key(&bob_fp)?;
                let unknown = tx.revoke_operator_key(&Fingerprint([9; 8]))?;
                Ok((first, again, unknown))
            })
            .unwrap(),
    );
    assert_eq!(revoked, (true, false, false));
    let snap = store.snapshot().unwrap();
    assert_eq!(snap.apps().unwrap().len(), 1);
    assert_eq!(snap.specs_of("a").unwrap().len(), 1);
    assert_eq!(snap.placements_of("a").unwrap().len(), 1);
    assert_eq!(snap.rollouts().unwrap().len(), 0);
    assert_eq!(snap.node_keys().unwrap().len(), 0);
    assert_eq!(
        snap.operator_key(&bob_fp).unwrap().unwrap().revoked_seq,
        Some(seq)
    );
    assert_eq!(
        snap.audit_tail(2)
            .unwrap()
            .iter()
            .map(|r| r.seq)
            .collect::<Vec<_>>(),
        [2, 3]
    );
    assert_eq!(snap.audit(2, 1).unwrap()[0].seq, 2);
}

#[test]
fn expired_nonces_are_collected() {
    let dir = Scratch::new("nonces");
    let store = create(dir.path());
    for i in 0..20 {
        let e = entry(&key(1), scale("api", i), T0 + u64::from(i));
        accepted(store.command(e, |_| Ok(())).unwrap());
    }
    assert_eq!(store.snapshot().unwrap().nonce_count().unwrap(), 20);
    // Ten minutes later, every earlier nonce is past its expiry.
    let e = entry(&key(1), scale("api", 1), T0 + 600_000);
    let late_nonce = e.nonce;
    accepted(store.command(e, |_| Ok(())).unwrap());
    let snap = store.snapshot().unwrap();
    assert_eq!(snap.nonce_count().unwrap(), 1);
    assert!(snap.nonce_seen(&late_nonce).unwrap());
}

#[test]
fn concurrent_commands_share_commits_and_each_gets_its_own_entry() {
    let dir = Scratch::new("group");
    let store = Arc::new(create(dir.path()));
    let threads: Vec<_> = (0..32)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let signer = key(1);
                (0..5)
                    .map(|i| {
                        let e = entry(&signer, scale(&format!("t{t}"), i), T0 + 10);
                        let name = format!("t{t}-{i}");
                        let refuse = t == 7 && i == 2;
                        match store
                            .command(e, move |tx| {
                                tx.put_app(&name, &app(1, 1))?;
                                if refuse {
                                    return Err(Refusal::new(
                                        Code::BadRequest,
                                        "refused on purpose",
                                    )
                                    .into());
                                }
                                Ok(())
                            })
                            .unwrap()
                        {
                            Outcome::Accepted { seq, .. } => (seq, true),
                            Outcome::Rejected { seq, .. } => (seq.unwrap(), false),
                        }
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut seqs: Vec<(u64, bool)> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    seqs.sort();
    assert_eq!(
        seqs.iter().map(|s| s.0).collect::<Vec<_>>(),
        (2..=161).collect::<Vec<_>>()
    );
    assert_eq!(seqs.iter().filter(|s| !s.1).count(), 1);
    let snap = store.snapshot().unwrap();
    assert_eq!(snap.apps().unwrap().len(), 159);
    assert_eq!(
        snap.app("t7-2").unwrap(),
        None,
        "the refused effect left nothing"
    );
    let report = store.verify_audit().unwrap();
    assert_eq!(
        (report.entries, report.signatures_verified, report.rejected),
        (161, 159, 1)
    );
}

#[test]
fn key_changes_by_signed_command_are_honoured_by_the_chain_verifier() {
    let dir = Scratch::new("keys");
    let store = create(dir.path());
    let bob = key(2);
    let add = Command::AddOperatorKey {
        name: "bob".into(),
        public_key: bob.public().to_bytes(),
    };
    let bob_pub = bob.public();
    accepted(
        store
            .command(entry(&key(1), add, T0), move |tx| {
                let by = Some(Fingerprint([0; 8]));
                Ok(tx.add_operator_key("bob", &bob_pub, by)?)
            })
            .unwrap(),
    );
    accepted(
        store
            .command(entry(&bob, scale("api", 1), T0 + 1), |_| Ok(()))
            .unwrap(),
    );
    let revoke = Command::RevokeOperatorKey {
        fingerprint: bob.public().fingerprint(),
    };
    accepted(
        store
            .command(entry(&key(1), revoke, T0 + 2), |_| Ok(()))
            .unwrap(),
    );
    assert_eq!(store.verify_audit().unwrap().signatures_verified, 3);

    // A store that accepted a command from bob after his revocation (a bug,
    // or a forged log) fails verification at that entry.
    accepted(
        store
            .command(entry(&bob, scale("api", 2), T0 + 3), |_| Ok(()))
            .unwrap(),
    );
    let err = store.verify_audit().unwrap_err();
    assert!(err.to_string().contains("entry 5"), "{err}");
    assert!(err.to_string().contains("revoked"), "{err}");
}

#[test]
fn stored_specs_round_trip_through_postcard_versions() {
    let r = spec_record("x");
    let dir = Scratch::new("spec");
    let store = create(dir.path());
    let r2 = r.clone();
    accepted(
        store
            .command(entry(&key(1), scale("x", 1), T0), move |tx| {
                Ok(tx.put_spec("x", 1, &r2)?)
            })
            .unwrap(),
    );
    assert_eq!(store.snapshot().unwrap().spec("x", 1).unwrap(), Some(r));
}

#[test]
fn an_unverified_refusal_keeps_a_bounded_summary_of_any_size() {
    let dir = Scratch::new("unverified-bounded");
    let store = create(dir.path());
    let huge = vec![b'\n'; 1 << 20];
    store
        .reject(UnverifiedEntry {
            from: "10.0.0.9".into(),
            bytes: huge,
            claimed_signer: None,
            summary: "x".repeat(10_000),
            refusal: Refusal::new(Code::BadSignature, "bad signature"),
            time_ms: T0 + 5,
        })
        .unwrap();
    let log = store.snapshot().unwrap().audit_all().unwrap();
    let AuditEvent::Unverified {
        size,
        head,
        summary,
        ..
    } = &log[1].event
    else {
        panic!("{:?}", log[1].event);
    };
    assert_eq!(*size, 1 << 20);
    assert_eq!(head.len(), skr8tr_store::audit::UNVERIFIED_HEAD_BYTES);
    assert_eq!(
        summary.chars().count(),
        skr8tr_store::audit::UNVERIFIED_SUMMARY_CHARS
    );
    let file = std::fs::metadata(dir.path().join(DB_FILE)).unwrap().len();
    assert!(
        file < 512 * 1024,
        "a 1 MiB refusal did not land whole: {file} bytes"
    );
    assert_eq!(store.verify_audit().unwrap().rejected, 1);
}

#[test]
fn a_panicking_effect_fails_its_request_and_the_writer_goes_on() {
    let dir = Scratch::new("panic");
    let store = create(dir.path());
    let e = entry(&key(1), scale("api", 2), T0);
    let (seq, refusal) = rejected(
        store
            .command(e.clone(), |tx| -> Result<(), EffectError> {
                tx.put_app("api", &app(1, 2))?;
                panic!("a bug in an effect");
            })
            .unwrap(),
    );
    assert_eq!(refusal.code, Code::Internal);
    assert!(
        refusal.message.contains("a bug in an effect"),
        "{}",
        refusal.message
    );
    assert_eq!(seq, Some(2), "recorded as refused");
    assert_eq!(
        store.snapshot().unwrap().app("api").unwrap(),
        None,
        "nothing applied"
    );
    // The next command is served.
    let next = entry(&key(1), scale("api", 3), T0 + 1);
    let (seq, ()) = accepted(
        store
            .command(next, |tx| Ok(tx.put_app("api", &app(1, 3))?))
            .unwrap(),
    );
    assert_eq!(seq, 3);
    // And in a batch: the panicking one alone fails.
    let store = std::sync::Arc::new(store);
    let handles: Vec<_> = (0..8u32)
        .map(|i| {
            let store = store.clone();
            std::thread::spawn(move || {
                let e = entry(&key(1), scale("api", i + 10), T0 + 10 + u64::from(i));
                store
                    .command(e, move |tx| -> Result<(), EffectError> {
                        if i == 3 {
                            panic!("only this one");
                        }
                        Ok(tx.put_app(&format!("app{i}"), &app(1, i))?)
                    })
                    .unwrap()
            })
        })
        .collect();
    let outcomes: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for (i, o) in outcomes.iter().enumerate() {
        match o {
            Outcome::Rejected { refusal, .. } => {
                assert_eq!(i, 3, "only the panicking one fails: {refusal:?}");
                assert_eq!(refusal.code, Code::Internal);
            }
            Outcome::Accepted { .. } => assert_ne!(i, 3),
        }
    }
    assert!(store.verify_audit().is_ok());
}

#[test]
fn the_log_is_indexed_by_app_and_read_in_pages() {
    let dir = Scratch::new("index");
    let store = create(dir.path());
    for i in 0..30u64 {
        let app_name = if i % 3 == 0 { "web" } else { "api" };
        let e = entry(&key(1), scale(app_name, 2), T0 + i);
        accepted(
            store
                .command(e, |tx| Ok(tx.put_app("api", &app(1, 1))?))
                .unwrap(),
        );
    }
    let snap = store.snapshot().unwrap();
    let (web, more) = snap.audit_of_app("web", None, 100, usize::MAX).unwrap();
    assert_eq!((web.len(), more), (10, false));
    assert!(web.iter().all(|r| r.summary() == "scale web 2"));
    let (last_three, more) = snap.audit_of_app("web", None, 3, usize::MAX).unwrap();
    assert_eq!(
        last_three.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [23, 26, 29]
    );
    assert!(more);
    let (before, _) = snap.audit_of_app("web", Some(23), 2, usize::MAX).unwrap();
    assert_eq!(before.iter().map(|r| r.seq).collect::<Vec<_>>(), [17, 20]);
    let (tail, more) = snap.audit_before(None, 5, usize::MAX).unwrap();
    assert_eq!((tail.first().unwrap().seq, more), (27, true));
    assert_eq!(
        snap.audit_before(Some(3), 5, usize::MAX).unwrap(),
        (snap.audit(1, 2).unwrap(), false)
    );
    let (fwd, next) = snap.audit_from(25, 3, usize::MAX).unwrap();
    assert_eq!(
        (fwd.iter().map(|r| r.seq).collect::<Vec<_>>(), next),
        (vec![25, 26, 27], Some(28))
    );
    let (fwd, next) = snap.audit_from(30, 10, usize::MAX).unwrap();
    assert_eq!((fwd.len(), next), (2, None));
    let (fwd, next) = snap.audit_from(1, 10, 1).unwrap();
    assert_eq!((fwd.len(), next), (1, Some(2)));
    // A byte budget ends a page early (one entry at least), saying so.
    let (one, more) = snap.audit_before(None, 100, 1).unwrap();
    assert_eq!((one.len(), more), (1, true));
    let (one, more) = snap.audit_of_app("web", None, 100, 1).unwrap();
    assert_eq!((one.len(), one[0].seq, more), (1, 29, true));
    // Raw pages: by count, then by bytes (at least one entry each).
    let (page, next) = snap.audit_raw_page(1, 10, usize::MAX).unwrap();
    assert_eq!((page.len(), next), (10, Some(11)));
    let (page, next) = snap.audit_raw_page(29, 10, usize::MAX).unwrap();
    assert_eq!((page.len(), next), (3, None));
    let (page, next) = snap.audit_raw_page(1, 100, 1).unwrap();
    assert_eq!((page.len(), next), (1, Some(2)));
}

#[test]
fn a_replay_inside_the_commit_is_kept_as_a_bounded_summary() {
    let dir = Scratch::new("replay-summary");
    let store = create(dir.path());
    let e = entry(&key(1), scale("api", 2), T0).from("10.0.0.8");
    accepted(
        store
            .command(e.clone(), |tx| Ok(tx.put_app("api", &app(1, 2))?))
            .unwrap(),
    );
    let (_, refusal) = rejected(
        store
            .command(e.clone(), |tx| Ok(tx.put_app("api", &app(1, 3))?))
            .unwrap(),
    );
    assert_eq!(refusal.code, Code::Replayed);
    let log = store.snapshot().unwrap().audit_all().unwrap();
    let AuditEvent::Unverified {
        from,
        size,
        claimed_signer,
        ..
    } = &log[2].event
    else {
        panic!("a replay is not kept whole: {:?}", log[2].event);
    };
    assert_eq!(from, "10.0.0.8");
    assert_eq!(*size, e.envelope.len() as u64);
    assert_eq!(*claimed_signer, Some(e.signer));
    assert_eq!(store.verify_audit().unwrap().rejected, 1);
}
