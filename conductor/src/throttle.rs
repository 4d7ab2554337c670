//! Logs that repeat while a condition lasts (a full disk fails every
//! reconcile pass, four a second) are written once, then at most once a
//! minute with how many were left out: the conductor's log has a bound
//! too.

use std::fmt::Display;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const EVERY: Duration = Duration::from_secs(60);

pub struct Throttled {
    what: &'static str,
    state: Mutex<Option<(Instant, u64)>>,
}

/// Writes to the store that failed (a full disk, a disk error).
pub static STORE_FULL: Throttled = Throttled::new("store write failed");
/// Reconcile passes that failed.
pub static RECONCILE: Throttled = Throttled::new("reconcile failed");
/// The in-memory index could not read the store.
pub static INDEX: Throttled = Throttled::new("index sync failed");
/// Autoscale passes that failed.
pub static AUTOSCALE: Throttled = Throttled::new("autoscale failed");

impl Throttled {
    pub const fn new(what: &'static str) -> Throttled {
        Throttled {
            what,
            state: Mutex::new(None),
        }
    }

    /// Logs `e` as an error unless one was logged in the last minute; then
    /// it is counted, and the count is told with the next one logged.
    pub fn warn(&self, e: &dyn Display) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        match &mut *state {
            Some((last, left_out)) if now.duration_since(*last) < EVERY => *left_out += 1,
            _ => {
                let left_out = state.map_or(0, |(_, n)| n);
                if left_out > 0 {
                    tracing::error!(
                        "{}: {e} ({left_out} more like it in the last minute)",
                        self.what
                    );
                } else {
                    tracing::error!("{}: {e}", self.what);
                }
                *state = Some((now, 0));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_what_it_leaves_out() {
        let t = Throttled::new("t");
        for _ in 0..1000 {
            t.warn(&"disk full");
        }
        let (_, left_out) = t.state.lock().unwrap().unwrap();
        assert_eq!(left_out, 999);
    }
}
