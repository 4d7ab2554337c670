//! When a replica that ended is started again, and how long it waits.

use super::{BACKOFF_FIRST, BACKOFF_MAX, BACKOFF_RESET_AFTER};
use skr8tr_proto::manifest::Restart;
use std::time::Duration;

/// Whether a replica that ended with `code` (`None`: killed by a signal)
/// is started again.
pub fn should_restart(policy: Restart, code: Option<i32>) -> bool {
    match policy {
        Restart::Always => true,
        Restart::OnFailure => code != Some(0),
        Restart::Never => false,
    }
}

/// Waits between restarts: doubling from [`BACKOFF_FIRST`] to
/// [`BACKOFF_MAX`], back to the start after a run of at least
/// [`BACKOFF_RESET_AFTER`].
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            next: BACKOFF_FIRST,
        }
    }
}

impl Backoff {
    /// The wait after a process that ran for `ran_for`.
    pub fn next(&mut self, ran_for: Duration) -> Duration {
        if ran_for >= BACKOFF_RESET_AFTER {
            self.next = BACKOFF_FIRST;
        }
        let wait = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        wait
    }
}
