//! Reading desired state the same way from a store snapshot or from
//! inside the transaction that changes it ([`Source`]), so a plan computed
//! from a snapshot can be recomputed and checked inside its commit.

use skr8tr_proto::manifest::AppSpec;
use skr8tr_store::records::{AppRecord, CordonRecord, PlacementRecord, RolloutRecord, SpecRecord};
use skr8tr_store::{Snapshot, StoreError, Tx};
use std::collections::BTreeMap;

pub trait Source {
    fn apps(&self) -> Result<Vec<(String, AppRecord)>, StoreError>;
    fn spec(&self, app: &str, generation: u64) -> Result<Option<SpecRecord>, StoreError>;
    fn placements(&self) -> Result<Vec<(String, PlacementRecord)>, StoreError>;
    fn rollouts(&self) -> Result<Vec<(String, RolloutRecord)>, StoreError>;
    fn cordoned(&self) -> Result<Vec<(String, CordonRecord)>, StoreError>;
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
            fn cordoned(&self) -> Result<Vec<(String, CordonRecord)>, StoreError> {
                <$t>::cordoned(self)
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

/// `nodes` with the cordoned ones (as `src` has them) unschedulable.
pub fn with_cordons(
    src: &impl Source,
    nodes: &BTreeMap<String, crate::scheduler::NodeFit>,
) -> Result<BTreeMap<String, crate::scheduler::NodeFit>, StoreError> {
    let mut nodes = nodes.clone();
    for (name, _) in src.cordoned()? {
        if let Some(n) = nodes.get_mut(&name) {
            n.schedulable = false;
        }
    }
    Ok(nodes)
}
