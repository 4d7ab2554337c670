//! Schema migrations for the conductor's store.
//!
//! The store keeps its schema version in the `meta` table. At open, a
//! database older than [`CURRENT`] is brought up to date by running every
//! [`Step`] from its version onwards, in order, inside the one write
//! transaction the store commits afterwards: an upgrade either completes or
//! leaves the file as it was. A database newer than this binary is refused
//! before anything is written.
//!
//! Layout:
//! - this file: the version record, [`Step`], [`STEPS`] and the runner.
//! - `fixtures/`: a database written by each released schema; the store's
//!   tests open a copy of every one, so a schema change that forgets its
//!   upgrade step fails the build's tests.
//!
//! How to change the schema: freeze the old record type in a module here
//! (`v1.rs`), add a step that rewrites the affected tables, bump
//! [`CURRENT`], write a fixture with the new schema, and keep the old ones.

#![forbid(unsafe_code)]

pub mod v1;
pub mod v2;
pub mod v3;

use redb::{ReadableTable, TableDefinition, WriteTransaction};

/// The schema this binary writes.
pub const CURRENT: u32 = 4;

/// `meta`: small named values (schema version, cluster id, creation time).
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// The `meta` key of the schema version (u32, little-endian).
pub const SCHEMA_VERSION_KEY: &str = "schema_version";
/// `audit`: sequence number -> versioned audit record (schema 1 on).
pub const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
/// `audit_by_app`: (app, sequence number) -> (), the entries about each
/// app (schema 2 on).
pub const AUDIT_BY_APP: TableDefinition<(&str, u64), ()> = TableDefinition::new("audit_by_app");
/// `specs`: (app, generation) -> versioned spec record.
pub const SPECS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("specs");

/// One upgrade, from schema `from` to `from + 1`.
pub struct Step {
    pub from: u32,
    /// What the step does, for logs and errors.
    pub name: &'static str,
    pub run: fn(&WriteTransaction) -> Result<(), MigrationError>,
}

/// Every step, in order: `STEPS[i].from == i + 1`.
pub const STEPS: &[Step] = &[
    Step {
        from: 1,
        name: "index the audit log by app",
        run: index_audit_by_app,
    },
    Step {
        from: 2,
        name: "add placement and identity keys to app specs",
        run: specs_with_placement,
    },
    Step {
        from: 3,
        name: "add the disconnect block to app specs",
        run: specs_with_disconnect,
    },
];

/// 3 -> 4: app specs gain `disconnect { stop-after }`. Every stored spec
/// is read as schema 3 wrote it (`v3`) and written back without one, which
/// is what it meant: replicas run on through a disconnect. Schema 4 also
/// adds the `cordoned` table (`skr8tr node drain`), created empty with the
/// rest at open.
fn specs_with_disconnect(txn: &WriteTransaction) -> Result<(), MigrationError> {
    rewrite_specs(txn, "add the disconnect block to app specs", 3, |bytes| {
        Ok(postcard::to_allocvec(&v3::decode(bytes)?.upgrade()))
    })
}

/// 2 -> 3: app specs gain `constraint`, `spread`, `user`, `group` and the
/// path of a `vm` block's hypervisor. Every stored spec is read as schema 2
/// wrote it (`v2`) and written back with those empty, which is what they
/// meant.
fn specs_with_placement(txn: &WriteTransaction) -> Result<(), MigrationError> {
    rewrite_specs(
        txn,
        "add placement and identity keys to app specs",
        2,
        |bytes| Ok(postcard::to_allocvec(&v2::decode(bytes)?.upgrade())),
    )
}

/// Rewrites every `specs` value with `convert` (decode as schema `from`
/// wrote it, encode as the next one), in the caller's transaction.
fn rewrite_specs(
    txn: &WriteTransaction,
    step: &'static str,
    from: u32,
    convert: impl Fn(&[u8]) -> Result<Result<Vec<u8>, postcard::Error>, String>,
) -> Result<(), MigrationError> {
    let mut specs = txn.open_table(SPECS)?;
    let mut rows: Vec<((String, u64), Vec<u8>)> = Vec::new();
    for row in specs.iter()? {
        let (key, value) = row?;
        let (app, generation) = key.value();
        let bytes = convert(value.value())
            .map_err(|reason| MigrationError::StepFailed {
                step,
                from,
                reason: format!("spec of {app} generation {generation}: {reason}"),
            })?
            .map_err(|e| MigrationError::StepFailed {
                step,
                from,
                reason: e.to_string(),
            })?;
        rows.push(((app.to_string(), generation), bytes));
    }
    for ((app, generation), bytes) in rows {
        specs.insert((app.as_str(), generation), bytes.as_slice())?;
    }
    Ok(())
}

/// 1 -> 2: `history --app` reads a per-app index instead of scanning the
/// whole log. Builds it for the entries schema 1 wrote, finding each
/// entry's apps the way schema 1 did (`v1::apps_of`). Schema 2 also adds
/// the audit event for unverified refusals, which schema 1 cannot read:
/// the version number keeps an older binary from opening the file.
fn index_audit_by_app(txn: &WriteTransaction) -> Result<(), MigrationError> {
    let audit = txn.open_table(AUDIT)?;
    let mut index = txn.open_table(AUDIT_BY_APP)?;
    for row in audit.iter()? {
        let (seq, value) = row?;
        let record = v1::decode(value.value()).map_err(|reason| MigrationError::StepFailed {
            step: "index the audit log by app",
            from: 1,
            reason: format!("audit entry {}: {reason}", seq.value()),
        })?;
        for app in v1::apps_of(&record) {
            index.insert((app.as_str(), record.seq), ())?;
        }
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error(
        "the database has schema version {found}, newer than this skr8tr understands \
         ({supported}); run a newer skr8tr, or restore a backup made by this version"
    )]
    Newer { found: u32, supported: u32 },
    #[error("no migration step from schema version {0}; this database cannot be upgraded")]
    MissingStep(u32),
    #[error("the schema version record is damaged ({0} bytes, expected 4)")]
    BadVersion(usize),
    #[error("migration `{step}` (schema {from} -> {}) failed: {reason}", from + 1)]
    StepFailed {
        step: &'static str,
        from: u32,
        reason: String,
    },
    #[error("database error during migration: {0}")]
    Database(#[from] redb::Error),
}

impl From<redb::TableError> for MigrationError {
    fn from(e: redb::TableError) -> Self {
        MigrationError::Database(e.into())
    }
}

impl From<redb::StorageError> for MigrationError {
    fn from(e: redb::StorageError) -> Self {
        MigrationError::Database(e.into())
    }
}

/// The schema version recorded in `txn`, or `None` for a database that
/// was never initialised.
pub fn version(txn: &WriteTransaction) -> Result<Option<u32>, MigrationError> {
    let meta = txn.open_table(META)?;
    let Some(raw) = meta.get(SCHEMA_VERSION_KEY)? else {
        return Ok(None);
    };
    let bytes: [u8; 4] = raw
        .value()
        .try_into()
        .map_err(|_| MigrationError::BadVersion(raw.value().len()))?;
    Ok(Some(u32::from_le_bytes(bytes)))
}

/// Records `version` as the schema of the database.
pub fn set_version(txn: &WriteTransaction, version: u32) -> Result<(), MigrationError> {
    let mut meta = txn.open_table(META)?;
    meta.insert(SCHEMA_VERSION_KEY, version.to_le_bytes().as_slice())?;
    Ok(())
}

/// Checks that `found` can be opened by this binary, without writing.
pub fn check_supported(found: u32) -> Result<(), MigrationError> {
    if found > CURRENT {
        return Err(MigrationError::Newer {
            found,
            supported: CURRENT,
        });
    }
    Ok(())
}

/// Brings the database in `txn` from `from` to [`CURRENT`]; returns the
/// names of the steps run. The caller commits (or drops) `txn`.
pub fn upgrade(txn: &WriteTransaction, from: u32) -> Result<Vec<&'static str>, MigrationError> {
    upgrade_with(txn, from, CURRENT, STEPS)
}

/// [`upgrade`] with an explicit target and step list (tests use their own).
pub fn upgrade_with(
    txn: &WriteTransaction,
    from: u32,
    target: u32,
    steps: &[Step],
) -> Result<Vec<&'static str>, MigrationError> {
    if from > target {
        return Err(MigrationError::Newer {
            found: from,
            supported: target,
        });
    }
    let mut ran = Vec::new();
    for version in from..target {
        let step = steps
            .iter()
            .find(|s| s.from == version)
            .ok_or(MigrationError::MissingStep(version))?;
        (step.run)(txn)?;
        set_version(txn, version + 1)?;
        ran.push(step.name);
    }
    Ok(ran)
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::{Database, ReadableDatabase};

    const ITEMS: TableDefinition<&str, u64> = TableDefinition::new("items");

    fn scratch(name: &str) -> (Database, std::path::PathBuf) {
        let path = std::env::temp_dir().join(format!(
            "skr8tr-migrations-{}-{name}.redb",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&path);
        (Database::create(&path).unwrap(), path)
    }

    fn double(txn: &WriteTransaction) -> Result<(), MigrationError> {
        let mut t = txn.open_table(ITEMS)?;
        let all: Vec<(String, u64)> = t
            .iter()?
            .map(|r| r.map(|(k, v)| (k.value().to_string(), v.value())))
            .collect::<Result<_, _>>()?;
        for (k, v) in all {
            t.insert(k.as_str(), v * 2)?;
        }
        Ok(())
    }

    fn add_ten(txn: &WriteTransaction) -> Result<(), MigrationError> {
        let mut t = txn.open_table(ITEMS)?;
        let v = t.get("a")?.map(|g| g.value()).unwrap_or(0);
        t.insert("a", v + 10)?;
        Ok(())
    }

    fn fail(_: &WriteTransaction) -> Result<(), MigrationError> {
        Err(MigrationError::StepFailed {
            step: "fail",
            from: 3,
            reason: "deliberate".into(),
        })
    }

    const TEST_STEPS: &[Step] = &[
        Step {
            from: 1,
            name: "double",
            run: double,
        },
        Step {
            from: 2,
            name: "add ten",
            run: add_ten,
        },
        Step {
            from: 3,
            name: "fail",
            run: fail,
        },
    ];

    fn seed(db: &Database, version: u32) {
        let txn = db.begin_write().unwrap();
        set_version(&txn, version).unwrap();
        txn.open_table(ITEMS).unwrap().insert("a", 1).unwrap();
        txn.commit().unwrap();
    }

    fn read(db: &Database) -> (u32, u64) {
        let txn = db.begin_read().unwrap();
        let meta = txn.open_table(META).unwrap();
        let v = u32::from_le_bytes(
            meta.get(SCHEMA_VERSION_KEY)
                .unwrap()
                .unwrap()
                .value()
                .try_into()
                .unwrap(),
        );
        let a = txn
            .open_table(ITEMS)
            .unwrap()
            .get("a")
            .unwrap()
            .unwrap()
            .value();
        (v, a)
    }

    #[test]
    fn steps_run_in_order_from_any_version() {
        let (db, path) = scratch("order");
        seed(&db, 1);
        let txn = db.begin_write().unwrap();
        assert_eq!(
            upgrade_with(&txn, 1, 3, TEST_STEPS).unwrap(),
            ["double", "add ten"]
        );
        txn.commit().unwrap();
        // double then add ten: (1 * 2) + 10; the other order would give 22.
        assert_eq!(read(&db), (3, 12));

        seed(&db, 2);
        let txn = db.begin_write().unwrap();
        assert_eq!(upgrade_with(&txn, 2, 3, TEST_STEPS).unwrap(), ["add ten"]);
        txn.commit().unwrap();
        assert_eq!(read(&db), (3, 11));
        drop(db);
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn a_failing_step_leaves_the_database_as_it_was() {
        let (db, path) = scratch("atomic");
        seed(&db, 1);
        let txn = db.begin_write().unwrap();
        let err = upgrade_with(&txn, 1, 4, TEST_STEPS).unwrap_err();
        assert!(err.to_string().contains("deliberate"), "{err}");
        drop(txn); // not committed: nothing of steps 1 and 2 survives
        assert_eq!(read(&db), (1, 1));
        drop(db);
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn newer_and_unknown_versions_are_refused() {
        assert!(check_supported(CURRENT).is_ok());
        let err = check_supported(CURRENT + 1).unwrap_err();
        assert!(err.to_string().contains("newer than this skr8tr"), "{err}");
        let (db, path) = scratch("missing");
        let txn = db.begin_write().unwrap();
        assert!(matches!(
            upgrade_with(&txn, 1, 3, &TEST_STEPS[1..]),
            Err(MigrationError::MissingStep(1))
        ));
        drop(txn);
        drop(db);
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn the_real_step_list_is_complete_and_ordered() {
        for (i, step) in STEPS.iter().enumerate() {
            assert_eq!(
                step.from as usize,
                i + 1,
                "step `{}` is out of order",
                step.name
            );
        }
        assert_eq!(
            STEPS.len() as u32,
            CURRENT - 1,
            "every version below CURRENT needs a step"
        );
    }
}
