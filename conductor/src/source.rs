//! Reading desired state the same way from a store snapshot or from
//! inside the transaction that changes it ([`Source`]), so a plan computed
//! from a snapshot can be recomputed and checked inside its commit.

use skr8tr_proto::manifest::AppSpec;
use skr8tr_store::records::{AppRecord, CordonRecord, PlacementRecord, RolloutRecord, SpecRecord};
use skr8tr_store::{Snapshot, StoreError, Tx};
use std::collections::{BTreeMap, BTreeSet};

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

/// Desired state as the scheduler, the rollout engine and the nodes'
/// assignment sets read it. The conductor keeps one in memory
/// (`crate::index`), updated from what each commit wrote; inside a commit
/// the plan is checked against one loaded from the transaction.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Desired {
    /// Every app with the spec of its current generation.
    pub apps: Apps,
    pub placements: Placements,
    pub rollouts: BTreeMap<String, RolloutRecord>,
    pub cordoned: BTreeSet<String>,
    /// The spec of every generation an app, a placement or a rollout names.
    pub specs: BTreeMap<(String, u64), AppSpec>,
}

impl Desired {
    pub fn load(src: &impl Source) -> Result<Desired, StoreError> {
        let (apps, placements) = load(src)?;
        let rollouts: BTreeMap<String, RolloutRecord> = src.rollouts()?.into_iter().collect();
        let records: BTreeMap<String, AppRecord> = src.apps()?.into_iter().collect();
        let mut wanted: BTreeSet<(String, u64)> = BTreeSet::new();
        for (name, r) in &records {
            wanted.insert((name.clone(), r.generation));
        }
        for p in placements.values() {
            wanted.insert((p.app.clone(), p.generation));
        }
        for (app, r) in &rollouts {
            wanted.insert((app.clone(), r.to_generation));
        }
        let mut specs = BTreeMap::new();
        for (app, generation) in wanted {
            if let Some(s) = src.spec(&app, generation)? {
                specs.insert((app, generation), s.spec);
            }
        }
        Ok(Desired {
            apps,
            placements,
            rollouts,
            cordoned: src.cordoned()?.into_iter().map(|(n, _)| n).collect(),
            specs,
        })
    }

    pub fn spec(&self, app: &str, generation: u64) -> Option<&AppSpec> {
        self.specs.get(&(app.to_string(), generation))
    }

    /// Apps in a rolling update.
    pub fn rolling(&self) -> BTreeSet<String> {
        self.rollouts.keys().cloned().collect()
    }

    /// `nodes` with the cordoned ones unschedulable.
    pub fn with_cordons(
        &self,
        nodes: &BTreeMap<String, crate::scheduler::NodeFit>,
    ) -> BTreeMap<String, crate::scheduler::NodeFit> {
        let mut nodes = nodes.clone();
        for name in &self.cordoned {
            if let Some(n) = nodes.get_mut(name) {
                n.schedulable = false;
            }
        }
        nodes
    }
}

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
