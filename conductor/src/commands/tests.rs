//! Each command's effect through the real store: accepted changes and
//! every refusal, with its code.

use crate::testing::Harness;
use skr8tr_proto::command::Command;
use skr8tr_proto::keys::SecretKey;
use skr8tr_store::Outcome;
use skr8tr_store::records::AppStatus;

const WEB: &str = "app web\n  exec /bin/web\n  replicas 2\n";

fn refused(outcome: Outcome<String>) -> (String, String) {
    match outcome {
        Outcome::Rejected { refusal, seq } => {
            assert!(seq.is_some(), "a refused command is recorded");
            (refusal.code.as_str().to_string(), refusal.message)
        }
        Outcome::Accepted { value, .. } => panic!("accepted: {value}"),
    }
}

fn accepted(outcome: Outcome<String>) -> String {
    match outcome {
        Outcome::Accepted { value, .. } => value,
        Outcome::Rejected { refusal, .. } => panic!("refused: {refusal:?}"),
    }
}

#[test]
fn up_creates_then_leaves_unchanged_then_rolls_out_a_change() {
    let h = Harness::new("cmd-up");
    let msg = accepted(h.up(WEB));
    assert_eq!(msg, "web: created, generation 1, 2 replicas");
    let snap = h.c.store.snapshot().unwrap();
    let app = snap.app("web").unwrap().unwrap();
    assert_eq!((app.generation, app.replicas), (1, 2));
    assert_eq!(app.status, AppStatus::Active);
    assert!(snap.rollout("web").unwrap().is_none());
    drop(snap);

    assert_eq!(accepted(h.up(WEB)), "web: unchanged (generation 1)");
    let msg = accepted(h.up(&WEB.replace("/bin/web", "/bin/web2")));
    assert!(
        msg.starts_with("web: rolling out generation 1 -> 2, 2 replicas"),
        "{msg}"
    );
    let snap = h.c.store.snapshot().unwrap();
    let rollout = snap.rollout("web").unwrap().unwrap();
    assert_eq!((rollout.from_generation, rollout.to_generation), (1, 2));
    assert_eq!(
        snap.spec("web", 2).unwrap().unwrap().spec.exec.as_deref(),
        Some("/bin/web2")
    );
    drop(snap);
    // A second change while it rolls is refused, and nothing changes.
    let (code, msg) = refused(h.up(&WEB.replace("/bin/web", "/bin/web3")));
    assert_eq!(code, "rollout-in-progress");
    assert!(msg.contains("from generation 1 to 2"), "{msg}");
    let (code, _) = refused(h.apply(Command::Scale {
        app: "web".into(),
        replicas: 3,
    }));
    assert_eq!(code, "rollout-in-progress");
    assert!(
        h.c.store
            .snapshot()
            .unwrap()
            .spec("web", 3)
            .unwrap()
            .is_none()
    );
}

#[test]
fn a_rollout_needs_an_existing_app_and_a_rollback_a_previous_generation() {
    let h = Harness::new("cmd-rollout");
    let (code, msg) = refused(h.apply(Command::Rollout {
        file: "t.skr8tr".into(),
        manifest: WEB.into(),
    }));
    assert_eq!(code, "unknown-app");
    assert!(msg.contains("skr8tr up t.skr8tr"), "{msg}");
    accepted(h.up(WEB));
    let (code, _) = refused(h.apply(Command::Rollback { app: "web".into() }));
    assert_eq!(code, "no-previous");
    let (code, msg) = refused(h.apply(Command::Rollback { app: "nope".into() }));
    assert_eq!(code, "unknown-app");
    assert!(msg.contains("skr8tr status"), "{msg}");
}

#[test]
fn scale_is_bounded_and_down_forgets_the_app_and_its_placements() {
    let h = Harness::new("cmd-scale");
    let (code, _) = refused(h.apply(Command::Scale {
        app: "web".into(),
        replicas: 1001,
    }));
    assert_eq!(code, "bad-count");
    let (code, _) = refused(h.apply(Command::Scale {
        app: "web".into(),
        replicas: 2,
    }));
    assert_eq!(code, "unknown-app");
    accepted(h.up(WEB));
    let msg = h.ok(Command::Scale {
        app: "web".into(),
        replicas: 5,
    });
    assert_eq!(msg, "web: 2 -> 5 replicas");
    h.report("n1", &[]);
    assert!(crate::reconciler::step(&h.c, h.now()).unwrap());
    assert_eq!(h.placements().len(), 5);
    let msg = h.ok(Command::Down { app: "web".into() });
    assert_eq!(msg, "web: stopping 5 replicas (generation 1)");
    assert!(h.placements().is_empty());
    assert!(h.c.store.snapshot().unwrap().app("web").unwrap().is_none());
    // A new app of the same name starts after the old generations.
    assert_eq!(
        accepted(h.up(WEB)),
        "web: created, generation 2, 2 replicas"
    );
}

#[test]
fn operator_keys_are_added_once_and_the_last_is_never_revoked() {
    let h = Harness::new("cmd-keys");
    let other = SecretKey::from_seed(&[9; 32]);
    let add = || Command::AddOperatorKey {
        name: "alice".into(),
        public_key: other.public().to_bytes(),
    };
    let msg = h.ok(add());
    assert!(msg.starts_with("operator key `alice`"), "{msg}");
    let (code, _) = refused(h.apply(add()));
    assert_eq!(code, "key-exists");
    let (code, _) = refused(h.apply(Command::AddOperatorKey {
        name: "bad".into(),
        public_key: vec![1, 2, 3],
    }));
    assert_eq!(code, "bad-key");
    h.ok(Command::RevokeOperatorKey {
        fingerprint: other.public().fingerprint(),
    });
    let (code, _) = refused(h.apply(Command::RevokeOperatorKey {
        fingerprint: other.public().fingerprint(),
    }));
    assert_eq!(code, "already-revoked");
    let (code, msg) = refused(h.apply(Command::RevokeOperatorKey {
        fingerprint: h.operator.public().fingerprint(),
    }));
    assert_eq!(code, "last-key");
    assert!(msg.contains("add another"), "{msg}");
    let (code, _) = refused(h.apply(Command::RevokeOperatorKey {
        fingerprint: SecretKey::from_seed(&[3; 32]).public().fingerprint(),
    }));
    assert_eq!(code, "no-such-key");
}

#[test]
fn secrets_must_come_beside_the_manifest_and_match_its_digests() {
    let h = Harness::new("cmd-secrets");
    let text = "app db\n  exec /bin/db\n  secret { DB_PASS hunter2 }\n";
    // Through `up` (redacted, value beside it): accepted, and the
    // stored spec carries the value for the node.
    accepted(h.up(text));
    let spec =
        h.c.store
            .snapshot()
            .unwrap()
            .spec("db", 1)
            .unwrap()
            .unwrap();
    // Sealed here before it was stored; it opens to the value.
    assert!(skr8tr_proto::sealed::is_sealed(
        spec.spec.secrets[0].1.expose()
    ));
    let opened = crate::commands::opened(&spec.spec, &h.c.sealing).unwrap();
    assert_eq!(opened.secrets[0].1.expose(), "hunter2");
    assert!(
        !spec.manifest.contains("hunter2"),
        "the signed text holds a digest"
    );
    // In clear in the signed text: refused.
    let clear = Command::Up {
        file: "t.skr8tr".into(),
        manifest: text.replace("db", "db2"),
    };
    let (code, msg) = refused(h.apply(clear));
    assert_eq!(code, "secret-in-clear");
    assert!(msg.contains("skr8tr up"), "{msg}");
    // Redacted but not sent, or sent with another value: refused.
    let (signed, _) =
        skr8tr_proto::manifest::secrets::redact("t", &text.replace("db", "db3"), || [1; 16])
            .unwrap();
    let up = Command::Up {
        file: "t.skr8tr".into(),
        manifest: signed,
    };
    let (code, _) = refused(h.apply_with(up.clone(), &[]));
    assert_eq!(code, "secret-missing");
    let wrong = skr8tr_proto::wire::SecretValue {
        app: "db3".into(),
        name: "DB_PASS".into(),
        value: "hunter3".into(),
    };
    let (code, _) = refused(h.apply_with(up, &[wrong]));
    assert_eq!(code, "secret-mismatch");
}

#[test]
fn an_invalid_manifest_and_a_join_ticket_sent_as_a_command_are_refused() {
    let h = Harness::new("cmd-invalid");
    let (code, msg) = refused(h.apply(Command::Up {
        file: "bad.skr8tr".into(),
        manifest: "app web\n  replcas 3\n".into(),
    }));
    assert_eq!(code, "invalid-manifest");
    assert!(msg.contains("bad.skr8tr:2:3"), "{msg}");
    let (code, msg) = refused(h.apply(Command::AdmitNode {
        name: "n1".into(),
        expires_at_ms: h.now() + 60_000,
    }));
    assert_eq!(code, "ticket");
    assert!(msg.contains("skr8tr node --name n1 --ticket"), "{msg}");
    let (code, _) = refused(h.apply(Command::Logs {
        app: "nope".into(),
        replica: None,
        follow: false,
    }));
    assert_eq!(code, "unknown-app");
}

/// `text` with its secret values sealed to the conductor, as `skr8tr up`
/// sends it (sealed for `as_app` instead of each value's own app, if given).
fn sealed_up(h: &Harness, text: &str, as_app: Option<&str>) -> Command {
    let to = skr8tr_proto::sealed::SealingKey::from_bytes(h.c.sealing.sealing_key()).unwrap();
    let (manifest, _) = skr8tr_proto::manifest::secrets::rewrite("t", text, |app, name, value| {
        to.seal(as_app.unwrap_or(app), name, value).unwrap()
    })
    .unwrap();
    Command::Up {
        file: "t.skr8tr".into(),
        manifest,
    }
}

#[test]
fn sealed_secrets_are_stored_sealed_compared_opened_and_rotated_by_secret_set() {
    let h = Harness::new("cmd-sealed");
    let text = "app db\n  exec /bin/db\n  secret { DB_PASS hunter2 }\n";
    accepted(h.apply(sealed_up(&h, text, None)));
    let stored =
        h.c.store
            .snapshot()
            .unwrap()
            .spec("db", 1)
            .unwrap()
            .unwrap();
    assert!(!stored.manifest.contains("hunter2") && !format!("{stored:?}").contains("hunter2"));
    let opened = crate::commands::opened(&stored.spec, &h.c.sealing).unwrap();
    assert_eq!(opened.secrets[0].1.expose(), "hunter2");
    // The same value sealed again (another ciphertext): unchanged.
    let again = accepted(h.apply(sealed_up(&h, text, None)));
    assert!(again.contains("unchanged"), "{again}");
    // Sealed for another app: does not open here.
    let (code, msg) = refused(h.apply(sealed_up(&h, &text.replace("db", "db2"), Some("x"))));
    assert_eq!(code, "secret-mismatch", "{msg}");

    // `secret set`: a new generation with the new value, rolled out.
    let to = skr8tr_proto::sealed::SealingKey::from_bytes(h.c.sealing.sealing_key()).unwrap();
    let set = |app: &str, name: &str, value: &str| Command::SetSecret {
        app: app.into(),
        name: name.into(),
        value: to.seal(app, name, value).unwrap(),
    };
    let msg = accepted(h.apply(set("db", "DB_PASS", "hunter3")));
    assert!(msg.contains("rolling out generation 1 -> 2"), "{msg}");
    let two =
        h.c.store
            .snapshot()
            .unwrap()
            .spec("db", 2)
            .unwrap()
            .unwrap();
    let opened = crate::commands::opened(&two.spec, &h.c.sealing).unwrap();
    assert_eq!(opened.secrets[0].1.expose(), "hunter3");
    assert_eq!(h.history().last().unwrap(), "secret set db DB_PASS");
    // Not while that rollout runs; not in clear; not for another name's
    // ciphertext; not for an unknown app.
    let (code, _) = refused(h.apply(set("db", "DB_PASS", "hunter4")));
    assert_eq!(code, "rollout-in-progress");
    let (code, _) = refused(h.apply(Command::SetSecret {
        app: "db".into(),
        name: "DB_PASS".into(),
        value: "clear".into(),
    }));
    assert_eq!(code, "secret-in-clear");
    let (code, _) = refused(h.apply(Command::SetSecret {
        app: "db".into(),
        name: "OTHER".into(),
        value: to.seal("db", "DB_PASS", "x").unwrap(),
    }));
    assert_eq!(code, "secret-mismatch");
    let (code, _) = refused(h.apply(set("nope", "DB_PASS", "x")));
    assert_eq!(code, "unknown-app");
}
