//! Reading desired state the same way from a snapshot or from inside the
//! transaction that changes it, and computing one node's assignments.

use sha2::{Digest, Sha256};
use skr8tr_proto::command::ClusterId;
use skr8tr_proto::manifest::AppSpec;
use skr8tr_proto::wire::{Assignment, Assignments};
use skr8tr_store::records::{AppRecord, PlacementRecord, RolloutRecord, SpecRecord};
use skr8tr_store::{Snapshot, StoreError, Tx};
use std::collections::BTreeMap;

pub trait Source {
    fn apps(&self) -> Result<Vec<(String, AppRecord)>, StoreError>;
    fn spec(&self, app: &str, generation: u64) -> Result<Option<SpecRecord>, StoreError>;
    fn placements(&self) -> Result<Vec<(String, PlacementRecord)>, StoreError>;
    fn rollouts(&self) -> Result<Vec<(String, RolloutRecord)>, StoreError>;
}

macro_rules! source {
    ($t:ty) => {
        impl Source for $t {
            fn apps(&self) -> Result<Vec<(String, AppRecord)>, StoreError> {
                <$t>::apps(self)
            }
            fn spec(&self, app: &str, generation: u64) -> Result<Option<SpecRecord>, StoreError> {
                <$t>::spec(self, app, generation)
            }
            fn placements(&self) -> Result<Vec<(String, PlacementRecord)>, StoreError> {
                <$t>::placements(self)
            }
            fn rollouts(&self) -> Result<Vec<(String, RolloutRecord)>, StoreError> {
                <$t>::rollouts(self)
            }
        }
    };
}

source!(Snapshot);
source!(Tx<'_>);

pub type Apps = BTreeMap<String, (AppRecord, AppSpec)>;
pub type Placements = BTreeMap<String, PlacementRecord>;

/// Every app with the spec of its current generation, and every placement.
pub fn load(src: &impl Source) -> Result<(Apps, Placements), StoreError> {
    let mut apps = BTreeMap::new();
    for (name, app) in src.apps()? {
        if let Some(spec) = src.spec(&name, app.generation)? {
            apps.insert(name, (app, spec.spec));
        }
    }
    Ok((apps, src.placements()?.into_iter().collect()))
}

/// The replicas `node` should run, and a version that changes whenever
/// they do (a digest of the set, so no counter has to be stored).
pub fn assignments(
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
    let digest = Sha256::digest(skr8tr_proto::wire::encode(&replicas));
    let mut v = [0u8; 8];
    v.copy_from_slice(&digest[..8]);
    Ok(Assignments {
        cluster,
        node: node.to_string(),
        version: u64::from_le_bytes(v).max(1),
        replicas,
    })
}
