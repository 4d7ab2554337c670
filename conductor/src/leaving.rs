//! A node that shuts down with its replicas (`NodeReport::leaving`) stops
//! them only once nothing of it is routed: its replicas moved away
//! surge-first (it is unschedulable while leaving, as a cordoned node is)
//! and every router watching the registry was sent the registry without
//! them. This file keeps who watches the registry and answers "may it stop
//! now?" (`ReportAck::left`).

use crate::state::Conductor;
use skr8tr_store::StoreError;
use skr8tr_store::records::DesiredStatus;

/// A watcher not heard from for this long past the long-poll is gone (an
/// ingress that stopped): it is not waited for.
const GONE_AFTER_MS: u64 = 5_000;

/// Most watchers remembered: each is an admitted key, so this is far more
/// than a fleet has; past it the oldest is forgotten.
const MAX_WATCHERS: usize = 1024;

/// `who` has registry `index` (it was sent it, or asked with it) at `now`.
pub fn watched(c: &Conductor, who: String, index: u64, now: u64) {
    let mut w = c
        .registry_watchers
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if w.len() >= MAX_WATCHERS
        && !w.contains_key(&who)
        && let Some(oldest) = w
            .iter()
            .min_by_key(|(_, (_, at))| *at)
            .map(|(k, _)| k.clone())
    {
        w.remove(&oldest);
    }
    w.insert(who, (index, now));
}

/// Whether leaving node `node` may stop its replicas: none of its
/// placements is desired `Run`, and every router heard from lately has
/// the current registry.
pub fn left(c: &Conductor, node: &str, now: u64) -> Result<bool, StoreError> {
    let desired = c.index.desired(&c.store)?;
    if desired
        .placements
        .values()
        .any(|p| p.node == node && p.desired == DesiredStatus::Run)
    {
        return Ok(false);
    }
    let current = crate::registry::snapshot(c, now)?.index;
    let fresh = c.config.long_poll.as_millis() as u64 + GONE_AFTER_MS;
    let w = c
        .registry_watchers
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    Ok(w.values()
        .filter(|(_, at)| now.saturating_sub(*at) <= fresh)
        .all(|(index, _)| *index == current))
}
