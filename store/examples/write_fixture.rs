//! Writes the fixture database of the current schema:
//! `cargo run -p skr8tr-store --example write_fixture -- migrations/fixtures/vN.redb`
//!
//! Run it once per released schema and check the file in; never regenerate
//! an old one. `store/tests/fixtures.rs` opens a copy of every fixture and
//! checks what this program wrote, so a schema change must upgrade it.

// Test tooling: a failed expectation here is a failed test or benchmark,
// and `expect` says which.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use skr8tr_proto::code::Code;
use skr8tr_proto::command::{ClusterId, Command};
use skr8tr_proto::envelope::{self, Envelope, Nonce, Payload};
use skr8tr_proto::keys::SecretKey;
use skr8tr_proto::manifest;
use skr8tr_store::records::*;
use skr8tr_store::*;
use std::path::PathBuf;

const T0: u64 = 1_790_000_000_000;

fn main() {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .expect("usage: write_fixture OUT.redb"),
    );
    let dir = std::env::temp_dir().join(format!("skr8tr-fixture-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let admin = SecretKey::from_seed(&[0x11; 32]);
    let bob = SecretKey::from_seed(&[0x22; 32]);
    let cluster = ClusterId([0xf1; 16]);
    let store = Store::create(
        &dir,
        cluster,
        "fixture-admin",
        &admin.public(),
        T0,
        Options::default(),
    )
    .expect("create");

    let entry = |key: &SecretKey, command: Command, t: u64, nonce: u8| {
        let payload = Payload {
            command,
            cluster,
            issued_at_ms: t,
            nonce: Nonce([nonce; 16]),
        };
        let bytes = Envelope::sign_payload(key, &payload)
            .expect("sign")
            .to_bytes();
        let ring = [key.public()];
        let verified = envelope::verify(&bytes, &ring[..], &cluster, t).expect("verify");
        CommandEntry::new(bytes, &verified, t)
    };

    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/api.skr8tr"
    ))
    .expect("examples/api.skr8tr");
    let spec = manifest::parse("api.skr8tr", &text)
        .expect("example parses")
        .remove(0);
    let up = Command::Up {
        file: "api.skr8tr".into(),
        manifest: text.clone(),
    };
    store
        .command(entry(&admin, up, T0 + 1_000, 1), move |tx| {
            tx.put_app(
                "api-server",
                &AppRecord {
                    generation: 1,
                    previous_generation: None,
                    replicas: 3,
                    status: AppStatus::Active,
                },
            )?;
            tx.put_spec(
                "api-server",
                1,
                &SpecRecord {
                    spec: spec.clone(),
                    file: "api.skr8tr".into(),
                    manifest: text.clone(),
                    hash: [7; 32],
                },
            )?;
            for i in 0..3u32 {
                tx.put_placement(
                    &format!("api-server/1/{i}"),
                    &PlacementRecord {
                        app: "api-server".into(),
                        generation: 1,
                        index: i,
                        node: format!("node-{}", i % 2),
                        port: Some(8080),
                        desired: DesiredStatus::Run,
                    },
                )?;
            }
            tx.put_rollout(
                "api-server",
                &RolloutRecord {
                    from_generation: 1,
                    to_generation: 2,
                    step: 1,
                    phase: RolloutPhase::Draining,
                    started_at_ms: T0 + 1_000,
                    step_deadline_ms: T0 + 31_000,
                    reason: None,
                },
            )?;
            Ok(())
        })
        .expect("up");
    let bob_pub = bob.public();
    let add = Command::AddOperatorKey {
        name: "bob".into(),
        public_key: bob.public().to_bytes(),
    };
    let admin_fp = admin.public().fingerprint();
    store
        .command(entry(&admin, add, T0 + 2_000, 2), move |tx| {
            Ok(tx.add_operator_key("bob", &bob_pub, Some(admin_fp))?)
        })
        .expect("add key");
    let node = SecretKey::from_seed(&[0x33; 32]).public();
    store
        .system("node node-0 admitted", vec![], T0 + 3_000, move |tx| {
            Ok(tx.admit_node("node-0", &node, None)?)
        })
        .expect("admit");
    store
        .reject(UnverifiedEntry {
            from: "192.0.2.7".into(),
            bytes: vec![1, 2, 3],
            claimed_signer: None,
            summary: "unreadable".into(),
            refusal: Refusal::new(Code::Malformed, "not a signed command"),
            time_ms: T0 + 4_000,
        })
        .expect("reject");
    let revoke = Command::RevokeOperatorKey {
        fingerprint: bob.public().fingerprint(),
    };
    let bob_fp = bob.public().fingerprint();
    store
        .command(entry(&admin, revoke, T0 + 5_000, 3), move |tx| {
            tx.revoke_operator_key(&bob_fp)?;
            Ok(())
        })
        .expect("revoke");
    // Schema 4: a spec with `disconnect { stop-after }`, a cordoned node.
    let worker_text = "app worker\n  exec /bin/worker\n  disconnect { stop-after 20s }\n";
    let worker = manifest::parse("worker.skr8tr", worker_text)
        .expect("worker parses")
        .remove(0);
    store
        .system(
            "fixture: worker spec, node-1 cordoned",
            vec!["worker".into()],
            T0 + 6_000,
            move |tx| {
                tx.put_spec(
                    "worker",
                    1,
                    &SpecRecord {
                        spec: worker.clone(),
                        file: "worker.skr8tr".into(),
                        manifest: worker_text.into(),
                        hash: [8; 32],
                    },
                )?;
                tx.cordon("node-1", Some(admin_fp))?;
                Ok(())
            },
        )
        .expect("schema 4 records");
    drop(store);
    std::fs::copy(dir.join(DB_FILE), &out).expect("copy fixture");
    let _ = std::fs::remove_dir_all(&dir);
    println!("wrote {}", out.display());
}
