//! The replica table: what the node observes of each replica (state, pid,
//! port, restarts), plus the handles that drive its task. Updated by the
//! replica tasks, read by `reports`.

use crate::logs::SharedLog;
use crate::process::Sampler;
use skr8tr_proto::wire::{Assignment, ReplicaState};
use std::collections::BTreeMap;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub(super) struct Table {
    pub(super) replicas: BTreeMap<String, Entry>,
    /// The last assignment set, by replica id: a replica that stops while
    /// assigned again is started anew.
    pub(super) desired: BTreeMap<String, Assignment>,
    pub(super) next_port: u16,
    pub(super) shutting_down: bool,
}

/// One replica as observed, plus the handles to drive it.
pub(super) struct Entry {
    pub(super) app: String,
    pub(super) generation: u64,
    pub(super) state: ReplicaState,
    pub(super) pid: Option<u32>,
    pub(super) port: Option<u16>,
    pub(super) restarts: u32,
    /// Why the last start failed, until one succeeds.
    pub(super) error: Option<String>,
    pub(super) started_at_ms: u64,
    pub(super) sampler: Sampler,
    pub(super) log: SharedLog,
    pub(super) stop: watch::Sender<bool>,
    pub(super) task: Option<JoinHandle<()>>,
}
