//! What each commit changed, for readers that keep desired state in
//! memory (the conductor's index) and want to update it by what changed
//! instead of reading everything again.
//!
//! The writer publishes the keys a commit's effects wrote, after the
//! commit is durable and before any caller hears of it. A reader asks for
//! the changes after the position it has, then takes a snapshot, which
//! then holds at least those changes (a later one too, perhaps: reading a
//! key's current value twice is harmless). The feed keeps a bounded tail;
//! a reader further behind is told to read everything again.

use std::collections::VecDeque;
use std::sync::Mutex;

/// A key of desired state that a commit wrote or removed.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Touched {
    App(String),
    Spec(String, u64),
    Placement(String),
    Rollout(String),
    Cordon(String),
}

/// At most this many keys are kept, all commits together: past it, the
/// oldest commits are forgotten (a reader that far behind rebuilds).
pub const KEPT_KEYS: usize = 200_000;

#[derive(Default)]
pub struct Feed {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Commits published so far (the position after the newest).
    next: u64,
    /// The position of the oldest kept commit.
    oldest: u64,
    log: VecDeque<Vec<Touched>>,
    keys: usize,
}

/// What a reader at some position must do to catch up.
#[derive(Debug, PartialEq, Eq)]
pub enum Changes {
    /// These keys changed; the reader is then at `to`.
    Keys { to: u64, keys: Vec<Touched> },
    /// Some changes are no longer kept: read everything; then at `to`.
    Rebuild { to: u64 },
}

impl Feed {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Called by the writer once a commit is durable.
    pub(crate) fn publish(&self, keys: Vec<Touched>) {
        if keys.is_empty() {
            return;
        }
        let mut f = self.lock();
        f.keys += keys.len();
        f.log.push_back(keys);
        f.next += 1;
        while f.keys > KEPT_KEYS && f.log.len() > 1 {
            if let Some(old) = f.log.pop_front() {
                f.keys -= old.len();
                f.oldest += 1;
            }
        }
    }

    /// The position after the newest published commit.
    pub fn position(&self) -> u64 {
        self.lock().next
    }

    /// What changed after position `since` (`None`: the reader has
    /// nothing yet).
    pub fn since(&self, since: Option<u64>) -> Changes {
        let f = self.lock();
        match since {
            Some(s) if s >= f.oldest && s <= f.next => {
                let skip = (s - f.oldest) as usize;
                let mut keys: Vec<Touched> = f.log.iter().skip(skip).flatten().cloned().collect();
                keys.sort();
                keys.dedup();
                Changes::Keys { to: f.next, keys }
            }
            _ => Changes::Rebuild { to: f.next },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_gets_what_changed_after_its_position_or_is_told_to_rebuild() {
        let feed = Feed::default();
        assert_eq!(feed.since(None), Changes::Rebuild { to: 0 });
        feed.publish(vec![Touched::App("a".into())]);
        feed.publish(vec![]);
        feed.publish(vec![
            Touched::Placement("a/1/0".into()),
            Touched::App("a".into()),
        ]);
        assert_eq!(feed.position(), 2, "an empty commit is not published");
        assert_eq!(
            feed.since(Some(1)),
            Changes::Keys {
                to: 2,
                keys: vec![Touched::App("a".into()), Touched::Placement("a/1/0".into())]
            }
        );
        assert_eq!(
            feed.since(Some(2)),
            Changes::Keys {
                to: 2,
                keys: vec![]
            }
        );
        // A position the feed never had (another store's) rebuilds.
        assert_eq!(feed.since(Some(9)), Changes::Rebuild { to: 2 });
        // Past the bound, the oldest commits go and their readers rebuild.
        let many: Vec<Touched> = (0..KEPT_KEYS)
            .map(|i| Touched::Placement(i.to_string()))
            .collect();
        feed.publish(many);
        assert_eq!(feed.since(Some(0)), Changes::Rebuild { to: 3 });
        assert!(matches!(feed.since(Some(2)), Changes::Keys { to: 3, .. }));
    }
}
