//! The key secret values are sealed to, and the one-time sealing of
//! values a store from before sealing at rest kept in clear.

use crate::state::Conductor;
use crate::{SEALING_KEY_FILE, StartError, commands};
use std::path::Path;

/// The ML-KEM key secrets are sealed to, `DATA/conductor.kem` (0600),
/// made on the first start.
pub(crate) fn load_or_create(dir: &Path) -> Result<skr8tr_proto::sealed::OpeningKey, StartError> {
    use skr8tr_proto::sealed::OpeningKey;
    let path = dir.join(SEALING_KEY_FILE);
    let bad = |e: String| StartError::Sealing(format!("{}: {e}", path.display()));
    if path.exists() {
        skr8tr_proto::files::private_file(&path)?;
        let bytes = std::fs::read(&path).map_err(|e| bad(e.to_string()))?;
        return OpeningKey::from_bytes(&bytes).map_err(|e| bad(e.to_string()));
    }
    let key = OpeningKey::generate().map_err(|e| bad(e.to_string()))?;
    let bytes = key.to_bytes().map_err(|e| bad(e.to_string()))?;
    let tmp = path.with_extension("kem.tmp");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| bad(e.to_string()))?;
        f.write_all(&bytes)
            .and_then(|()| f.sync_all())
            .map_err(|e| bad(e.to_string()))?;
    }
    std::fs::rename(&tmp, &path).map_err(|e| bad(e.to_string()))?;
    tracing::info!(
        "created the key secret values are sealed to: {}",
        path.display()
    );
    Ok(key)
}

/// Seals, in one audited system commit, every secret value a store from
/// before sealing at rest kept in clear (a no-op once done).
pub(crate) fn seal_stored_secrets(c: &Conductor, now: u64) -> Result<(), StartError> {
    let mut todo = Vec::new();
    for (app, generation, record) in c.store.snapshot()?.specs()? {
        if let Some(spec) = commands::sealed_at_rest(&record.spec, &c.sealing) {
            todo.push((app, generation, spec));
        }
    }
    if todo.is_empty() {
        return Ok(());
    }
    let n = todo.len();
    let apps: Vec<String> = todo.iter().map(|(a, _, _)| a.clone()).collect();
    let outcome = c.store.system(
        format!("sealed the secret values of {n} stored generation(s) at rest"),
        apps,
        now,
        move |tx| {
            for (app, generation, spec) in &todo {
                if let Some(mut record) = tx.spec(app, *generation)? {
                    record.spec = spec.clone();
                    tx.put_spec(app, *generation, &record)?;
                }
            }
            Ok(())
        },
    )?;
    if let skr8tr_store::Outcome::Rejected { refusal, .. } = outcome {
        return Err(StartError::Sealing(refusal.message));
    }
    tracing::info!("sealed the secret values of {n} stored generation(s) at rest");
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::testing::Harness;

    /// The fixture the conductor from before sealing at rest wrote (see
    /// `store/tests/fixtures.rs`): its first start here seals the value,
    /// and the chain — the old `up`, signed over a salted digest — still
    /// verifies.
    #[test]
    fn a_store_written_before_sealing_opens_sealed_and_verifies() {
        let dir = crate::testing::Scratch::new("sealing-fixture");
        std::fs::create_dir_all(dir.path()).unwrap();
        std::fs::copy(
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../migrations/fixtures/v3-secrets.redb"
            ),
            dir.path().join(skr8tr_store::DB_FILE),
        )
        .unwrap();
        // Without its key files a store with history does not start.
        let missing = crate::open(crate::Config::new(dir.path().to_path_buf()), None);
        assert!(
            matches!(missing, Err(crate::StartError::MissingKey { .. })),
            "a keyless store with history starts"
        );
        // With them (as the conductor that wrote it had), it does.
        skr8tr_proto::keys::write_key_files(
            dir.path(),
            crate::CONDUCTOR_SECRET_FILE,
            crate::CONDUCTOR_PUBLIC_FILE,
            &skr8tr_proto::keys::SecretKey::from_seed(&[9; 32]),
            false,
        )
        .unwrap();
        let c = crate::open(crate::Config::new(dir.path().to_path_buf()), None).unwrap();
        let spec = c
            .store
            .snapshot()
            .unwrap()
            .spec("db", 1)
            .unwrap()
            .unwrap()
            .spec;
        assert!(sealed::is_sealed(spec.secrets[0].1.expose()));
        let opened = crate::commands::opened(&spec, &c.sealing).unwrap();
        assert_eq!(opened.secrets[0].1.expose(), "fixture-hunter2");
        let report = c.store.verify_audit().unwrap();
        assert_eq!(report.signatures_verified, 1, "the old up still verifies");
        let last = c.store.snapshot().unwrap().audit_tail(1).unwrap();
        assert!(
            last[0].summary().contains("sealed the secret values of 1"),
            "{}",
            last[0].summary()
        );
        drop(c);
        // A second start finds nothing left to seal.
        let c = crate::open(crate::Config::new(dir.path().to_path_buf()), None).unwrap();
        assert_eq!(c.store.snapshot().unwrap().audit_tail(5).unwrap().len(), 3);
    }
    use skr8tr_proto::manifest::{self, Secret};
    use skr8tr_proto::sealed;

    /// A store written before values were sealed at rest kept them in
    /// clear in its specs (the signed manifest held salted digests): the
    /// first start seals them in one audited commit, nodes still get the
    /// values, and the chain still verifies.
    #[test]
    fn clear_values_of_an_older_store_are_sealed_once_on_start() {
        let h = Harness::new("sealing-upgrade");
        assert!(matches!(
            h.up("app web\n  exec /bin/web\n  secret { DB_PASS placeholder }\n"),
            skr8tr_store::Outcome::Accepted { .. }
        ));
        // Put the value back in clear, as the older conductor stored it.
        let clear = {
            let mut spec = manifest::parse("t", "app web\n  exec /bin/web\n")
                .unwrap()
                .remove(0);
            spec.secrets = vec![("DB_PASS".into(), Secret::new("hunter2-old".into()))];
            spec
        };
        let outcome =
            h.c.store
                .system(
                    "an older conductor's spec",
                    vec!["web".into()],
                    h.now(),
                    move |tx| {
                        let mut record = tx.spec("web", 1)?.unwrap();
                        record.spec = clear.clone();
                        tx.put_spec("web", 1, &record)?;
                        Ok(())
                    },
                )
                .unwrap();
        assert!(matches!(outcome, skr8tr_store::Outcome::Accepted { .. }));
        let entries = h.history().len();

        super::seal_stored_secrets(&h.c, h.now()).unwrap();
        let spec =
            h.c.store
                .snapshot()
                .unwrap()
                .spec("web", 1)
                .unwrap()
                .unwrap()
                .spec;
        let (_, value) = &spec.secrets[0];
        assert!(sealed::is_sealed(value.expose()), "sealed at rest");
        let opened = crate::commands::opened(&spec, &h.c.sealing).unwrap();
        assert_eq!(opened.secrets[0].1.expose(), "hunter2-old");
        assert_eq!(h.history().len(), entries + 1, "one audited commit");
        assert!(
            h.history()
                .last()
                .unwrap()
                .contains("sealed the secret values of 1")
        );
        // Done once: a second start changes nothing.
        super::seal_stored_secrets(&h.c, h.now()).unwrap();
        assert_eq!(h.history().len(), entries + 1);
        h.c.store.verify_audit().unwrap();
    }
}
