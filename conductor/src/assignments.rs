//! One node's assignments: the replicas placed on it, each with the spec
//! of its generation, and a version that is a digest of the set.

use crate::source::Source;
use sha2::{Digest, Sha256};
use skr8tr_proto::command::ClusterId;
use skr8tr_proto::wire::{Assignment, Assignments};
use skr8tr_store::StoreError;

/// The replicas `node` should run, and a version that changes whenever
/// they do (a digest of the set, so no counter has to be stored), read
/// from the store: what `crate::index` keeps in memory must equal it.
pub fn of_node(
    src: &impl Source,
    cluster: ClusterId,
    node: &str,
) -> Result<Assignments, StoreError> {
    let mut replicas = Vec::new();
    for (id, p) in src.placements()? {
        // Draining (`Stop`) replicas keep running until their placement is
        // removed: they have left the registry, not yet the node.
        if p.node != node {
            continue;
        }
        if let Some(spec) = src.spec(&p.app, p.generation)? {
            replicas.push(Assignment {
                replica: id,
                app: p.app,
                generation: p.generation,
                spec: spec.spec,
            });
        }
    }
    Ok(set(cluster, node, replicas))
}

/// The set of `replicas` for `node`, versioned by their digest.
pub fn set(cluster: ClusterId, node: &str, replicas: Vec<Assignment>) -> Assignments {
    let digest = Sha256::digest(skr8tr_proto::wire::encode(&replicas));
    let mut v = [0u8; 8];
    v.copy_from_slice(&digest[..8]);
    Assignments {
        cluster,
        node: node.to_string(),
        version: u64::from_le_bytes(v).max(1),
        replicas,
        // Set to the poll's nonce when it is answered.
        nonce: [0; 16],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Harness;
    use skr8tr_proto::command::Command;

    #[test]
    fn a_node_gets_its_own_placements_with_their_specs_and_a_version_that_follows_them() {
        let h = Harness::new("assignments");
        h.up("app web\n  exec /bin/web\n  replicas 3\n");
        h.report("n1", &[]);
        h.report("n2", &[]);
        crate::reconciler::step(&h.c, h.now()).unwrap();
        let snap = h.c.store.snapshot().unwrap();
        let n1 = of_node(&snap, h.c.cluster, "n1").unwrap();
        let n2 = of_node(&snap, h.c.cluster, "n2").unwrap();
        let ids = |a: &Assignments| -> Vec<String> {
            a.replicas.iter().map(|r| r.replica.clone()).collect()
        };
        assert_eq!(ids(&n1), ["web/1/0", "web/1/2"]);
        assert_eq!(ids(&n2), ["web/1/1"]);
        assert_eq!(n1.node, "n1");
        assert_eq!(n1.cluster, h.c.cluster);
        assert!(
            n1.replicas
                .iter()
                .all(|r| r.spec.exec.as_deref() == Some("/bin/web"))
        );
        assert_ne!(n1.version, n2.version);
        let none = of_node(&snap, h.c.cluster, "n3").unwrap();
        assert!(none.replicas.is_empty() && none.version >= 1);
        assert_eq!(of_node(&snap, h.c.cluster, "n1").unwrap(), n1, "stable");
        drop(snap);
        h.ok(Command::Scale {
            app: "web".into(),
            replicas: 1,
        });
        crate::reconciler::step(&h.c, h.now()).unwrap();
        let snap = h.c.store.snapshot().unwrap();
        let after = of_node(&snap, h.c.cluster, "n1").unwrap();
        assert_eq!(ids(&after), ["web/1/0"]);
        assert_ne!(after.version, n1.version);
    }

    #[test]
    fn a_transaction_reads_desired_state_as_a_snapshot_does() {
        let h = Harness::new("source");
        h.up("app web\n  exec /bin/web\n  replicas 2\n");
        h.report("n1", &[]);
        crate::reconciler::step(&h.c, h.now()).unwrap();
        let from_snapshot = crate::source::load(&h.c.store.snapshot().unwrap()).unwrap();
        let expected = from_snapshot.clone();
        let outcome =
            h.c.store
                .system("test: read only", vec![], h.now(), move |tx| {
                    let from_tx = crate::source::load(tx)?;
                    Ok(from_tx == expected)
                })
                .unwrap();
        assert!(matches!(
            outcome,
            skr8tr_store::Outcome::Accepted { value: true, .. }
        ));
        assert_eq!(from_snapshot.1.len(), 2);
    }
}
