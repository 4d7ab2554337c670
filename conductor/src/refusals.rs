//! The budget for refusals from senders who proved no key. Anyone who can
//! reach the API can send those, as fast as the network allows, so the
//! audit log records them within a fixed budget: at most
//! [`PER_SOURCE_PER_WINDOW`] per source address and [`TOTAL_PER_WINDOW`]
//! in all per [`WINDOW_MS`], each a bounded summary
//! (`AuditEvent::Unverified`: at most 256 bytes of the request, a 160
//! character claimed summary). The rest are counted, not recorded; when a
//! window that dropped some ends, one system entry says how many came
//! from where ("1,204 from 10.0.0.9 (1,180 not recorded)").
//!
//! So, whatever is sent, refusals add at most `TOTAL_PER_WINDOW + 1`
//! entries a minute to the log: under 64 KiB a minute of records
//! (measured in `chaos-tests/tests/bounds.rs`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// Length of one budget window.
pub const WINDOW_MS: u64 = 60_000;
/// Refusals recorded per source address and window.
pub const PER_SOURCE_PER_WINDOW: u32 = 5;
/// Refusals recorded per window, all sources together.
pub const TOTAL_PER_WINDOW: u32 = 30;
/// Sources counted one by one per window; the rest are counted together.
pub const MAX_SOURCES: usize = 4096;
/// Sources named in a window's summary; the rest are summed up.
const NAMED_IN_SUMMARY: usize = 5;

/// Whether one refusal goes in the audit log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Record,
    /// Over budget: counted only.
    Drop,
}

#[derive(Clone, Copy, Debug, Default)]
struct Count {
    seen: u64,
    recorded: u32,
}

#[derive(Debug, Default)]
struct Window {
    start_ms: u64,
    recorded: u32,
    sources: HashMap<IpAddr, Count>,
    /// Sources past `MAX_SOURCES`, together.
    others: Count,
}

#[derive(Debug)]
pub struct Limiter {
    window: Mutex<Window>,
    /// [`WINDOW_MS`], unless a test asks for a shorter one.
    window_ms: u64,
}

impl Default for Limiter {
    fn default() -> Limiter {
        Limiter::with_window(WINDOW_MS)
    }
}

impl Limiter {
    /// A limiter whose windows last `window_ms` (tests shorten them to see
    /// a window end; the budget per window is the same).
    pub fn with_window(window_ms: u64) -> Limiter {
        Limiter {
            window: Mutex::new(Window::default()),
            window_ms: window_ms.max(1),
        }
    }

    /// Counts one refusal from `from` at `now_ms`: whether to record it,
    /// and the summary of the window that just ended, if it dropped any.
    pub fn admit(&self, from: IpAddr, now_ms: u64) -> (Decision, Option<String>) {
        let mut w = self.lock();
        let ended = roll(&mut w, now_ms, self.window_ms);
        let known = w.sources.len();
        let total_left = w.recorded < TOTAL_PER_WINDOW;
        let count = match w.sources.get_mut(&from) {
            Some(c) => c,
            None if known < MAX_SOURCES => w.sources.entry(from).or_default(),
            None => &mut w.others,
        };
        count.seen += 1;
        let decision = if total_left && count.recorded < PER_SOURCE_PER_WINDOW {
            count.recorded += 1;
            Decision::Record
        } else {
            Decision::Drop
        };
        if decision == Decision::Record {
            w.recorded += 1;
        }
        (decision, ended)
    }

    /// Ends the window if it is over; its summary if it dropped any.
    pub fn roll(&self, now_ms: u64) -> Option<String> {
        roll(&mut self.lock(), now_ms, self.window_ms)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        // Counters only: a panic elsewhere leaves nothing inconsistent.
        self.window.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn roll(w: &mut Window, now_ms: u64, window_ms: u64) -> Option<String> {
    if now_ms < w.start_ms.saturating_add(window_ms) {
        return None;
    }
    let ended = std::mem::replace(
        w,
        Window {
            start_ms: now_ms,
            ..Window::default()
        },
    );
    summary(&ended, window_ms)
}

/// `unverified refusals in the last minute: 1,204 from 10.0.0.9 (1,180 not
/// recorded); …` — only for a window that dropped some.
fn summary(w: &Window, window_ms: u64) -> Option<String> {
    let dropped = |c: &Count| c.seen - u64::from(c.recorded);
    let total_dropped: u64 = w.sources.values().map(dropped).sum::<u64>() + dropped(&w.others);
    if total_dropped == 0 {
        return None;
    }
    let mut by_count: Vec<(&IpAddr, &Count)> = w.sources.iter().collect();
    by_count.sort_by(|a, b| b.1.seen.cmp(&a.1.seen).then(a.0.cmp(b.0)));
    let mut parts: Vec<String> = by_count
        .iter()
        .take(NAMED_IN_SUMMARY)
        .map(|(ip, c)| {
            format!(
                "{} from {ip} ({} not recorded)",
                thousands(c.seen),
                thousands(dropped(c))
            )
        })
        .collect();
    let rest = by_count
        .iter()
        .skip(NAMED_IN_SUMMARY)
        .map(|(_, c)| **c)
        .chain(std::iter::once(w.others))
        .fold(Count::default(), |acc, c| Count {
            seen: acc.seen + c.seen,
            recorded: acc.recorded + c.recorded,
        });
    if rest.seen > 0 {
        parts.push(format!(
            "{} from other sources ({} not recorded)",
            thousands(rest.seen),
            thousands(dropped(&rest))
        ));
    }
    let window = if window_ms == WINDOW_MS {
        "minute".to_string()
    } else {
        format!("{} ms", window_ms)
    };
    Some(format!(
        "unverified refusals in the last {window}: {}",
        parts.join("; ")
    ))
}

/// `1204` → `1,204`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn each_source_and_all_together_stay_within_the_budget() {
        let l = Limiter::default();
        let t = 1_000_000;
        let recorded = |l: &Limiter, from: &str, n: u32| {
            (0..n)
                .filter(|_| l.admit(ip(from), t).0 == Decision::Record)
                .count()
        };
        // The first call opens the window.
        assert_eq!(
            recorded(&l, "10.0.0.9", 1204),
            PER_SOURCE_PER_WINDOW as usize
        );
        assert_eq!(recorded(&l, "10.0.0.7", 3), 3);
        // Many sources: the total budget holds.
        let mut others = 0;
        for i in 0..100 {
            others += recorded(&l, &format!("10.1.0.{i}"), 2);
        }
        assert_eq!(
            PER_SOURCE_PER_WINDOW as usize + 3 + others,
            TOTAL_PER_WINDOW as usize
        );
        // The window ends: its summary names the loudest source.
        let summary = l.roll(t + WINDOW_MS).unwrap();
        assert!(
            summary.starts_with(
                "unverified refusals in the last minute: 1,204 from 10.0.0.9 (1,199 not recorded)"
            ),
            "{summary}"
        );
        assert!(summary.contains("from other sources"), "{summary}");
        // A fresh window records again; a quiet one has nothing to say.
        assert_eq!(recorded(&l, "10.0.0.9", 1), 1);
        assert_eq!(l.roll(t + 2 * WINDOW_MS), None);
    }

    #[test]
    fn sources_beyond_the_table_are_counted_together() {
        let l = Limiter::default();
        for i in 0..(MAX_SOURCES as u32 + 10) {
            l.admit(IpAddr::from(i.to_be_bytes()), 5);
        }
        assert_eq!(l.lock().sources.len(), MAX_SOURCES);
        assert_eq!(l.lock().others.seen, 10);
        let summary = l.roll(5 + WINDOW_MS).unwrap();
        assert!(
            summary.contains("; 4,101 from other sources ("),
            "{summary}"
        );
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }
}
