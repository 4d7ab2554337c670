//! `POST /v1/snapshot` through the real handler: only a signed
//! `snapshot save` is taken there (and only there), strangers' bodies are
//! turned away before anything is recorded, and a taken snapshot is a
//! preamble the conductor signed followed by exactly the database it
//! describes, with no copy left behind.

use super::*;
use sha2::Digest;
use skr8tr_proto::wire::SignedSnapshotHeader;

fn leftovers(h: &Harness) -> Vec<String> {
    std::fs::read_dir(&h.c.config.data_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("snapshot."))
        .collect()
}

#[tokio::test]
async fn only_a_signed_snapshot_save_is_taken_and_it_is_whole() {
    let h = Harness::new("api-snapshot");
    let recorded = h.history().len();
    // Another command, or 10,000 bodies of garbage: turned away unrecorded.
    let down = h.request(Command::Down { app: "web".into() });
    let (status, answer) = call(&h, "POST", "/v1/snapshot", down).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let reply: CommandReply = wire::decode(&answer).unwrap();
    assert!(
        reply.message.contains("only signed `snapshot save`"),
        "{}",
        reply.message
    );
    for i in 0..10_000u32 {
        let (status, _) = call(&h, "POST", "/v1/snapshot", i.to_le_bytes().repeat(8)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
    // Not taken on /v1/commands, where it would record a snapshot never sent.
    let misplaced = h.request(Command::SnapshotSave);
    let (status, answer) = call(&h, "POST", "/v1/commands", misplaced).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        wire::decode::<CommandReply>(&answer)
            .unwrap()
            .message
            .contains("/v1/snapshot")
    );
    assert_eq!(h.history().len(), recorded, "nothing recorded");
    // A stranger's key: refused and recorded as such, no copy made.
    let stranger = SecretKey::from_seed(&[77; 32]);
    let forged = h.request_by(&stranger, Command::SnapshotSave, vec![]);
    let (status, _) = call(&h, "POST", "/v1/snapshot", forged).await;
    assert!(status.is_client_error(), "{status}");
    assert!(leftovers(&h).is_empty());
    // The operator's: the conductor's signed preamble, then the database.
    let (status, body) = call(&h, "POST", "/v1/snapshot", h.request(Command::SnapshotSave)).await;
    assert_eq!(status, StatusCode::OK);
    let start = body.iter().position(|b| *b != b'\n').unwrap();
    let mut reader = &body[start..];
    let signed = SignedSnapshotHeader::read_from(&mut reader).unwrap();
    let header = signed.open(&h.c.key.public()).unwrap();
    assert_eq!(header.cluster, h.c.cluster);
    assert_eq!(reader.len() as u64, header.db_bytes);
    let digest: [u8; 32] = sha2::Sha256::digest(reader).into();
    assert_eq!(digest, header.db_sha256);
    assert!(h.history().iter().any(|s| s.contains("snapshot save")));
    wait_until_gone(&h).await;
}

/// The copy is removed by the task that sent it, just after the last byte.
async fn wait_until_gone(h: &Harness) {
    for _ in 0..200 {
        if leftovers(h).is_empty() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the snapshot's copy was left behind: {:?}", leftovers(h));
}
