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
use std::time::{Duration, Instant};

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
    /// Order of first appearance in the window.
    first: usize,
}

#[derive(Debug, Default)]
struct Window {
    /// When it began, on a monotonic clock: a wall clock stepped back must
    /// not hold a window open.
    start: Option<Instant>,
    recorded: u32,
    sources: HashMap<IpAddr, Count>,
    /// Sources past `MAX_SOURCES`, together.
    others: Count,
}

#[derive(Debug)]
pub struct Limiter {
    window: Mutex<Window>,
    /// [`WINDOW_MS`], unless a test asks for a shorter one.
    length: Duration,
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
            length: Duration::from_millis(window_ms.max(1)),
        }
    }

    /// Counts one refusal from `from`: whether to record it, and the
    /// summary of the window that just ended, if it dropped any.
    pub fn admit(&self, from: IpAddr) -> (Decision, Option<String>) {
        self.admit_at(from, Instant::now())
    }

    /// Ends the window if it is over; its summary if it dropped any.
    pub fn roll(&self) -> Option<String> {
        let length = self.length;
        roll(&mut self.lock(), Instant::now(), length)
    }

    fn admit_at(&self, from: IpAddr, now: Instant) -> (Decision, Option<String>) {
        let length = self.length;
        let mut w = self.lock();
        let ended = roll(&mut w, now, length);
        let known = w.sources.len();
        let total_left = w.recorded < TOTAL_PER_WINDOW;
        let count = match w.sources.get_mut(&from) {
            Some(c) => c,
            None if known < MAX_SOURCES => w.sources.entry(from).or_insert(Count {
                first: known,
                ..Count::default()
            }),
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

    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        // Counters only: a panic elsewhere leaves nothing inconsistent.
        self.window.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn roll(w: &mut Window, now: Instant, length: Duration) -> Option<String> {
    let Some(start) = w.start else {
        w.start = Some(now);
        return None;
    };
    if now.saturating_duration_since(start) < length {
        return None;
    }
    let ended = std::mem::replace(
        w,
        Window {
            start: Some(now),
            ..Window::default()
        },
    );
    summary(&ended, length)
}

/// `unverified refusals in the last minute: 1,204 from 10.0.0.9 (1,180 not
/// recorded); …` — only for a window that dropped some. It names the
/// loudest sources, then the first others that came, so a quiet intruder
/// is not lost among the noise.
fn summary(w: &Window, length: Duration) -> Option<String> {
    let dropped = |c: &Count| c.seen - u64::from(c.recorded);
    let total_dropped: u64 = w.sources.values().map(dropped).sum::<u64>() + dropped(&w.others);
    if total_dropped == 0 {
        return None;
    }
    let mut by_count: Vec<(&IpAddr, &Count)> = w.sources.iter().collect();
    by_count.sort_by(|a, b| b.1.seen.cmp(&a.1.seen).then(a.1.first.cmp(&b.1.first)));
    let (loudest, rest) = by_count.split_at(by_count.len().min(NAMED_IN_SUMMARY));
    let mut rest: Vec<(&IpAddr, &Count)> = rest.to_vec();
    rest.sort_by_key(|(_, c)| c.first);
    let (early, unnamed) = rest.split_at(rest.len().min(NAMED_IN_SUMMARY));
    let name = |(ip, c): &(&IpAddr, &Count)| {
        format!(
            "{} from {ip} ({} not recorded)",
            thousands(c.seen),
            thousands(dropped(c))
        )
    };
    let mut parts: Vec<String> = loudest.iter().chain(early).map(name).collect();
    let others = unnamed
        .iter()
        .map(|(_, c)| **c)
        .chain(std::iter::once(w.others))
        .fold(Count::default(), |acc, c| Count {
            seen: acc.seen + c.seen,
            recorded: acc.recorded + c.recorded,
            first: 0,
        });
    if others.seen > 0 {
        parts.push(format!(
            "{} from other sources ({} not recorded)",
            thousands(others.seen),
            thousands(dropped(&others))
        ));
    }
    let window = if length == Duration::from_millis(WINDOW_MS) {
        "minute".to_string()
    } else {
        format!("{} ms", length.as_millis())
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
        let t = Instant::now();
        let recorded = |l: &Limiter, from: &str, n: u32| {
            (0..n)
                .filter(|_| l.admit_at(ip(from), t).0 == Decision::Record)
                .count()
        };
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
        // The window ends: its summary names the loudest source first, and
        // the first quiet ones too.
        let (_, summary) = l.admit_at(ip("10.0.0.9"), t + Duration::from_millis(WINDOW_MS));
        let summary = summary.unwrap();
        assert!(
            summary.starts_with(
                "unverified refusals in the last minute: 1,204 from 10.0.0.9 (1,199 not recorded)"
            ),
            "{summary}"
        );
        assert!(
            summary.contains("3 from 10.0.0.7 (0 not recorded)"),
            "{summary}"
        );
        assert!(summary.contains("from other sources"), "{summary}");
        // The new window has recorded the call that ended the old one; a
        // quiet window has nothing to say.
        assert_eq!(recorded(&l, "10.0.0.9", 1), 1);
        let later = t + Duration::from_millis(3 * WINDOW_MS);
        assert_eq!(roll(&mut l.lock(), later, l.length), None);
    }

    #[test]
    fn sources_beyond_the_table_are_counted_together() {
        let l = Limiter::default();
        let t = Instant::now();
        for i in 0..(MAX_SOURCES as u32 + 10) {
            l.admit_at(IpAddr::from(i.to_be_bytes()), t);
        }
        assert_eq!(l.lock().sources.len(), MAX_SOURCES);
        assert_eq!(l.lock().others.seen, 10);
        let summary = roll(
            &mut l.lock(),
            t + Duration::from_millis(WINDOW_MS),
            l.length,
        )
        .unwrap();
        assert!(
            summary.contains("; 4,096 from other sources ("),
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
