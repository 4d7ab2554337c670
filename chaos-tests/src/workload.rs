//! What the store programs write: one signed `scale` command per app, whose
//! effect writes three records (app, spec, placement) that must appear
//! together or not at all.

pub use skr8tr_proto::clock::now_ms;
use skr8tr_proto::code::Code;
use skr8tr_proto::command::{ClusterId, Command};
use skr8tr_proto::envelope::{self, Envelope, Nonce, Payload};
use skr8tr_proto::keys::SecretKey;
use skr8tr_proto::manifest;
use skr8tr_store::records::*;
use skr8tr_store::{CommandEntry, EffectError, Snapshot, StoreError, Tx};

/// The operator key of the crash test and the benchmark.
pub fn operator_key() -> SecretKey {
    SecretKey::from_seed(&[0x42; 32])
}

/// A verified, ready-to-record command to scale `app`.
pub fn signed_entry(key: &SecretKey, cluster: ClusterId, app: &str, n: u32) -> CommandEntry {
    let now = now_ms();
    let payload = Payload {
        command: Command::Scale {
            app: app.to_string(),
            replicas: n,
        },
        cluster,
        issued_at_ms: now,
        nonce: Nonce::generate().expect("the OS random number generator works"),
    };
    let bytes = Envelope::sign_payload(key, &payload)
        .expect("signing with a valid key succeeds")
        .to_bytes();
    let ring = [key.public()];
    let verified = envelope::verify(&bytes, &ring[..], &cluster, now)
        .expect("a command signed just now verifies");
    CommandEntry::new(bytes, &verified, now)
}

/// The effect of the workload's command: three records in one commit.
pub fn write_app(tx: &mut Tx<'_>, app: &str) -> Result<(), EffectError> {
    let text = format!("app {app}\n  exec /bin/true\n  replicas 1\n");
    let spec = manifest::parse("workload.skr8tr", &text)
        .map_err(|d| skr8tr_store::Refusal::new(Code::InvalidManifest, d.to_string()))?
        .remove(0);
    tx.put_app(
        app,
        &AppRecord {
            generation: 1,
            previous_generation: None,
            replicas: 1,
            status: AppStatus::Active,
        },
    )?;
    tx.put_spec(
        app,
        1,
        &SpecRecord {
            spec,
            file: "workload.skr8tr".into(),
            manifest: text,
            hash: [0; 32],
        },
    )?;
    tx.put_placement(
        &format!("{app}/1/0"),
        &PlacementRecord {
            app: app.to_string(),
            generation: 1,
            index: 0,
            node: "n1".into(),
            port: None,
            desired: DesiredStatus::Run,
        },
    )?;
    Ok(())
}

/// Whether all three records of `app` are there (`Some(true)`), none of
/// them (`Some(false)`), or only some (`None`: a half-written command).
pub fn app_state(snap: &Snapshot, app: &str) -> Result<Option<bool>, StoreError> {
    let parts = [
        snap.app(app)?.is_some(),
        snap.spec(app, 1)?.is_some(),
        snap.placement(&format!("{app}/1/0"))?.is_some(),
    ];
    Ok(match parts {
        [true, true, true] => Some(true),
        [false, false, false] => Some(false),
        _ => None,
    })
}
