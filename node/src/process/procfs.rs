//! Reading `/proc`: the fields of `/proc/PID/stat` (state, start time, CPU
//! time), resident memory from `statm`, and a CPU/RSS [`Sampler`]. The one
//! parser of `/proc/PID/stat` in Skr8tr: the node's tests and the chaos
//! harness use it too.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// What `/proc/PID/stat` says of a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    /// Field 3: `R` running, `S` sleeping, `Z` zombie, `T` stopped, …
    pub state: char,
    /// Field 4: the parent's pid.
    pub ppid: u32,
    /// Field 5: the process group.
    pub pgrp: u32,
    /// Fields 14 and 15, utime + stime: CPU time used so far, clock ticks.
    pub cpu_ticks: u64,
    /// Field 22: when the process started, clock ticks since boot.
    pub start_time: u64,
}

impl Stat {
    /// Parses the text of `/proc/PID/stat`. The command name (field 2) may
    /// itself hold spaces and parentheses, so fields are counted from the
    /// last `)`.
    pub fn parse(text: &str) -> Option<Stat> {
        let rest = text.get(text.rfind(')')? + 1..)?;
        let mut words = rest.split_ascii_whitespace();
        let state = words.next()?.chars().next()?;
        // Index 0 is field 4 from here on.
        let fields: Vec<u64> = words.map(|w| w.parse().unwrap_or(0)).collect();
        let field = |n: usize| fields.get(n - 4).copied();
        Some(Stat {
            state,
            ppid: u32::try_from(field(4)?).ok()?,
            pgrp: u32::try_from(field(5)?).ok()?,
            cpu_ticks: field(14)?.saturating_add(field(15)?),
            start_time: field(22)?,
        })
    }
}

/// The stat of a process, `None` if there is no such process.
pub fn stat(pid: u32) -> Option<Stat> {
    Stat::parse(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Whether the process exists and has not exited: a zombie (exited, not
/// yet reaped) does not count.
pub fn is_running(pid: u32) -> bool {
    stat(pid).is_some_and(|s| s.state != 'Z')
}

/// Process start time in clock ticks since boot (field 22).
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    stat(pid).map(|s| s.start_time)
}

/// CPU time used so far (utime + stime), in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    stat(pid).map(|s| s.cpu_ticks)
}

/// CPU time used so far (utime + stime).
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let ticks = cpu_ticks(pid)?;
    Some(Duration::from_micros(
        ticks.saturating_mul(1_000_000) / clock_ticks_per_second(),
    ))
}

/// Resident memory in bytes (`/proc/PID/statm` field 2 × page size).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = text.split_ascii_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

fn clock_ticks_per_second() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    // SAFETY: sysconf takes a plain integer and only reads configuration.
    *TICKS.get_or_init(|| match unsafe { libc::sysconf(libc::_SC_CLK_TCK) } {
        n if n > 0 => n as u64,
        _ => 100,
    })
}

fn page_size() -> u64 {
    static PAGE: OnceLock<u64> = OnceLock::new();
    // SAFETY: as above.
    *PAGE.get_or_init(|| match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as u64,
        _ => 4096,
    })
}

/// What a process uses right now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// CPU over the last sampling interval, thousandths of a core.
    pub cpu_millis: u64,
    pub rss_bytes: u64,
}

/// Samples one process's CPU (the difference between two readings of its
/// CPU time, so the first reading of a pid reports 0) and resident memory,
/// at most once per `every`: between readings it repeats the last figures.
#[derive(Debug, Default)]
pub struct Sampler {
    last: Option<(u32, Instant, u64)>,
    usage: Usage,
}

impl Sampler {
    pub fn sample(&mut self, pid: u32, now: Instant, every: Duration) -> Usage {
        if let Some((last_pid, at, _)) = self.last
            && last_pid == pid
            && now.saturating_duration_since(at) < every
        {
            return self.usage;
        }
        let Some(ticks) = cpu_ticks(pid) else {
            return Usage::default();
        };
        let cpu_millis = match self.last {
            Some((last_pid, at, before)) if last_pid == pid => millicores(
                ticks.saturating_sub(before),
                now.saturating_duration_since(at),
            ),
            _ => 0,
        };
        self.usage = Usage {
            cpu_millis,
            rss_bytes: rss_bytes(pid).unwrap_or(0),
        };
        self.last = Some((pid, now, ticks));
        self.usage
    }
}

/// `ticks` of CPU time over `elapsed` wall time, in thousandths of a core.
pub fn millicores(ticks: u64, elapsed: Duration) -> u64 {
    let elapsed_ms = elapsed.as_millis() as u64;
    if elapsed_ms == 0 {
        return 0;
    }
    // ticks / hz seconds of CPU over elapsed_ms / 1000 seconds, × 1000.
    ticks * 1_000_000 / clock_ticks_per_second() / elapsed_ms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millicores_converts_ticks() {
        let hz = clock_ticks_per_second();
        assert_eq!(millicores(hz, Duration::from_secs(1)), 1000);
        assert_eq!(millicores(hz / 2, Duration::from_secs(1)), 500);
        assert_eq!(millicores(5, Duration::ZERO), 0);
    }

    #[test]
    fn stat_lines_parse_whatever_the_command_name_holds() {
        // A real line of a process called `a) b (c`, with made-up numbers.
        let line = "4242 (a) b (c) S 17 4242 4242 0 -1 4194560 100 0 0 0 \
                    30 12 0 0 20 0 1 0 987654 1000000 200 18446744073709551615";
        assert_eq!(
            Stat::parse(line),
            Some(Stat {
                state: 'S',
                ppid: 17,
                pgrp: 4242,
                cpu_ticks: 42,
                start_time: 987654,
            })
        );
        assert_eq!(
            Stat::parse("1 (x) Z 0 1").map(|s| s.state),
            None,
            "too short"
        );
        assert_eq!(Stat::parse("no parenthesis"), None);
        assert_eq!(Stat::parse(""), None);
    }

    #[test]
    fn own_process_has_cpu_and_memory_figures() {
        let me = std::process::id();
        assert!(rss_bytes(me).unwrap() > 0);
        assert!(cpu_ticks(me).is_some());
        assert!(start_time(me).unwrap() > 0);
        assert!(cpu_ticks(u32::MAX).is_none());
        assert!(cpu_time(me).is_some_and(|t| t < Duration::from_secs(3600)));
        assert!(is_running(me));
        assert!(!is_running(u32::MAX));
        assert_eq!(
            stat(me).map(|s| s.ppid),
            Some(std::os::unix::process::parent_id())
        );
    }
}
