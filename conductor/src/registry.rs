//! The service registry: for each app, the endpoints of replicas that are
//! desired (`Run`, not draining) and reported ready by a live node. It is
//! derived, never stored: after a restart it is rebuilt from node reports,
//! and it is not published until the re-sync window has closed, so a
//! restart never hands routers an empty registry.

use crate::state::Conductor;
use sha2::{Digest, Sha256};
use skr8tr_proto::wire::{Endpoint, RegistrySnapshot, ReplicaState};
use skr8tr_store::StoreError;
use skr8tr_store::records::DesiredStatus;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// A computed registry, valid until the watch count moves (an endpoint
/// changed) or `valid_until` (the first moment one of the nodes serving in
/// it could be lost without a report saying so).
pub struct Cached {
    snapshot: Arc<RegistrySnapshot>,
    stamp: u64,
    /// The store's feed position it was computed at: any commit since,
    /// whoever made it and whether or not they told, recomputes it.
    feed: u64,
    valid_until: u64,
}

/// The registry as of `now`: the last one computed while no endpoint has
/// changed since, or a new one.
pub fn snapshot(c: &Conductor, now: u64) -> Result<Arc<RegistrySnapshot>, StoreError> {
    let stamp = *c.registry_changed.borrow();
    let feed = c.store.feed().position();
    if let Some(cached) = c
        .registry_cache
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        && cached.stamp == stamp
        && cached.feed == feed
        && now <= cached.valid_until
    {
        return Ok(cached.snapshot.clone());
    }
    let (snapshot, valid_until) = compute(c, now)?;
    let snapshot = Arc::new(snapshot);
    *c.registry_cache.lock().unwrap_or_else(|p| p.into_inner()) = Some(Cached {
        snapshot: snapshot.clone(),
        stamp,
        feed,
        valid_until,
    });
    Ok(snapshot)
}

/// Whether the last registry computed may be out of date by time alone
/// (a node serving in it fell silent): the reconciler's tick then tells
/// watchers to look again.
pub fn expired(c: &Conductor, now: u64) -> bool {
    c.registry_cache
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .is_some_and(|cached| now > cached.valid_until)
}

fn compute(c: &Conductor, now: u64) -> Result<(RegistrySnapshot, u64), StoreError> {
    let desired = c.index.desired(&c.store)?;
    let lost_after = c.config.lost_after.as_millis() as u64;
    let mut valid_until = u64::MAX;
    let mut ready: HashMap<(&str, &str), (String, u16)> = HashMap::new();
    let nodes = c.nodes();
    for (name, node) in nodes.iter() {
        if !c.is_alive(node, now) {
            continue;
        }
        let mut serves = false;
        for r in &node.report.replicas {
            if let (ReplicaState::Ready, Some(port)) = (r.state, r.port) {
                serves = true;
                ready.insert(
                    (r.replica.as_str(), name.as_str()),
                    (node.report.address.clone(), port),
                );
            }
        }
        if serves {
            valid_until = valid_until.min(node.last_ms.saturating_add(lost_after));
        }
    }
    let mut apps: BTreeMap<String, Vec<Endpoint>> = BTreeMap::new();
    for (id, p) in &desired.placements {
        if p.desired != DesiredStatus::Run {
            continue;
        }
        if let Some((address, port)) = ready.get(&(id.as_str(), p.node.as_str())) {
            apps.entry(p.app.clone()).or_default().push(Endpoint {
                replica: id.clone(),
                address: address.clone(),
                port: *port,
            });
        }
    }
    drop(nodes);
    // Routes from manifests move the index too (not in the snapshot
    // itself, whose fields older routers decode: they read `/v1/routes`).
    // A route record that cannot be read leaves the routes out of the
    // index rather than the whole registry unanswered.
    let routes = c.store.snapshot()?.routes().unwrap_or_else(|e| {
        crate::throttle::INDEX.warn(&e);
        Vec::new()
    });
    let digest = Sha256::digest(skr8tr_proto::wire::encode(&(&apps, &routes)));
    let mut index = [0u8; 8];
    index.copy_from_slice(&digest[..8]);
    Ok((
        RegistrySnapshot {
            index: u64::from_le_bytes(index).max(1),
            apps,
        },
        valid_until,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Harness;
    use skr8tr_proto::command::Command;
    use std::time::Duration;

    #[test]
    fn only_ready_run_replicas_of_live_nodes_are_routable() {
        let h = Harness::new("registry");
        h.up("app web\n  exec /bin/web\n  replicas 2\n");
        h.report("n1", &[]);
        h.report("n2", &[]);
        crate::reconciler::step(&h.c, h.now()).unwrap();
        let empty = snapshot(&h.c, h.now()).unwrap();
        assert!(empty.apps.is_empty(), "nothing ready yet");
        h.report("n1", &[("web/1/0", ReplicaState::Ready, Some(20000))]);
        h.report("n2", &[("web/1/1", ReplicaState::Starting, Some(20001))]);
        let one = snapshot(&h.c, h.now()).unwrap();
        assert_eq!(
            one.apps["web"],
            [Endpoint {
                replica: "web/1/0".into(),
                address: "127.0.0.9".into(),
                port: 20000,
            }]
        );
        assert_ne!(one.index, empty.index, "the index follows the content");
        assert_eq!(
            snapshot(&h.c, h.now()).unwrap(),
            one,
            "and only the content"
        );
        // A replica reported by a node it is not placed on is not routed.
        h.report("n2", &[("web/1/0", ReplicaState::Ready, Some(20005))]);
        assert_eq!(snapshot(&h.c, h.now()).unwrap().apps["web"].len(), 1);
        // A lost node's replicas leave the registry.
        h.advance(Duration::from_secs(6));
        h.report("n2", &[]);
        assert!(snapshot(&h.c, h.now()).unwrap().apps.is_empty());
    }

    #[test]
    fn a_draining_replica_leaves_the_registry_before_its_node_stops_it() {
        let h = Harness::new("registry-drain");
        h.up("app web\n  exec /bin/web\n  replicas 1\n");
        h.report("n1", &[]);
        crate::reconciler::step(&h.c, h.now()).unwrap();
        h.report("n1", &[("web/1/0", ReplicaState::Ready, Some(20000))]);
        assert_eq!(snapshot(&h.c, h.now()).unwrap().apps["web"].len(), 1);
        h.ok(Command::Rollout {
            file: "t".into(),
            manifest: "app web\n  exec /bin/v2\n  replicas 1\n".into(),
        });
        crate::reconciler::step(&h.c, h.now()).unwrap();
        h.report(
            "n1",
            &[
                ("web/1/0", ReplicaState::Ready, Some(20000)),
                ("web/2/0", ReplicaState::Ready, Some(20001)),
            ],
        );
        crate::reconciler::step(&h.c, h.now()).unwrap();
        // web/1/0 is now desired `Stop`: still placed, still running, not routed.
        assert!(h.placements().iter().any(|(id, _)| id == "web/1/0"));
        let routed: Vec<String> = snapshot(&h.c, h.now()).unwrap().apps["web"]
            .iter()
            .map(|e| e.replica.clone())
            .collect();
        assert_eq!(routed, ["web/2/0"]);
    }

    #[test]
    fn the_cached_registry_follows_a_commit_nobody_announced_and_a_node_falling_silent() {
        let h = Harness::new("registry-cache");
        h.up("app web\n  exec /bin/web\n  replicas 2\n");
        h.report("n1", &[]);
        crate::reconciler::step(&h.c, h.now()).unwrap();
        h.report(
            "n1",
            &[
                ("web/1/0", ReplicaState::Ready, Some(20000)),
                ("web/1/1", ReplicaState::Ready, Some(20001)),
            ],
        );
        let two = snapshot(&h.c, h.now()).unwrap();
        assert_eq!(two.apps["web"].len(), 2);
        assert!(
            Arc::ptr_eq(&two, &snapshot(&h.c, h.now()).unwrap()),
            "cached"
        );
        // Scaled down and removed by commits that neither bump nor tell
        // the registry: the store's feed moved, so the cache is over.
        h.ok(Command::Scale {
            app: "web".into(),
            replicas: 1,
        });
        crate::reconciler::step(&h.c, h.now()).unwrap();
        let one = snapshot(&h.c, h.now()).unwrap();
        assert_eq!(one.apps["web"].len(), 1, "{:?}", one.apps);
        // The only serving node falls silent with no report: past the
        // lost-node timeout the cache ends by time alone.
        assert!(!expired(&h.c, h.now()));
        h.advance(Duration::from_secs(6));
        assert!(expired(&h.c, h.now()));
        assert!(snapshot(&h.c, h.now()).unwrap().apps.is_empty());
    }
}
