//! `disconnect { stop-after 20s }`: what a replica does when its node
//! loses the conductor. By default it keeps running (availability first);
//! with `stop-after` it is stopped once its node has been out of contact
//! that long, and the conductor waits longer than that before it starts a
//! replacement, so two copies never run at once.

use super::super::check::Checker;
use super::super::spec::{Disconnect, MIN_STOP_AFTER};
use super::super::tree::Entry;
use super::super::values;
use super::{keys, missing};

pub(crate) fn disconnect(c: &mut Checker<'_>, e: &Entry) -> Option<Disconnect> {
    let entries = c.block(e, "disconnect { stop-after 20s }")?;
    let known = keys("disconnect", &["stop-after"], &[]);
    let mut stop_after = None;
    let mut ok = true;
    for (key, entry) in c.known(entries, &known) {
        if key == "stop-after" {
            match c.parsed(entry, "stop-after 20s", values::duration) {
                Some(d) if d < MIN_STOP_AFTER => {
                    c.sink.error_hint(
                        entry.value_at,
                        format!(
                            "`stop-after` of {} is shorter than a node's heartbeat allows",
                            entry.value
                        ),
                        format!(
                            "give at least {} s: a node out of contact for less is not yet known to be",
                            MIN_STOP_AFTER.as_secs()
                        ),
                    );
                    ok = false;
                }
                Some(d) => stop_after = Some(d),
                None => ok = false,
            }
        }
    }
    if !ok {
        return None;
    }
    let Some(stop_after) = stop_after else {
        missing(c, e, "stop-after", "stop-after 20s");
        return None;
    };
    Some(Disconnect { stop_after })
}
