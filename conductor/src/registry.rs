//! The service registry: for each app, the endpoints of replicas that are
//! desired (`Run`, not draining) and reported ready by a live node. It is
//! derived, never stored: after a restart it is rebuilt from node reports,
//! and it is not published until the re-sync window has closed, so a
//! restart never hands routers an empty registry.

use crate::state::Conductor;
use sha2::{Digest, Sha256};
use skr8tr_proto::wire::{Endpoint, RegistrySnapshot, ReplicaState};
use skr8tr_store::StoreError;
use skr8tr_store::records::Desired;
use std::collections::{BTreeMap, HashMap};

pub fn snapshot(c: &Conductor, now: u64) -> Result<RegistrySnapshot, StoreError> {
    let placements = c.store.snapshot()?.placements()?;
    let mut ready: HashMap<(String, String), (String, u16)> = HashMap::new();
    for (name, node) in c.nodes().iter() {
        if !c.is_alive(node, now) {
            continue;
        }
        for r in &node.report.replicas {
            if let (ReplicaState::Ready, Some(port)) = (r.state, r.port) {
                ready.insert(
                    (r.replica.clone(), name.clone()),
                    (node.report.address.clone(), port),
                );
            }
        }
    }
    let mut apps: BTreeMap<String, Vec<Endpoint>> = BTreeMap::new();
    for (id, p) in placements {
        if p.desired != Desired::Run {
            continue;
        }
        if let Some((address, port)) = ready.get(&(id.clone(), p.node.clone())) {
            apps.entry(p.app.clone()).or_default().push(Endpoint {
                replica: id,
                address: address.clone(),
                port: *port,
            });
        }
    }
    let digest = Sha256::digest(skr8tr_proto::wire::encode(&apps));
    let mut index = [0u8; 8];
    index.copy_from_slice(&digest[..8]);
    Ok(RegistrySnapshot {
        index: u64::from_le_bytes(index).max(1),
        apps,
    })
}
