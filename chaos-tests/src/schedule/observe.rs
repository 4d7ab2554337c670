//! What the schedule runner watches and checks: copies of each app
//! sampled every 100 ms (most at once, against desired + surge outside
//! fault windows; `guard` never two), acknowledged commands found again in
//! the history and the chain verified, failed requests split by whether
//! the app's only replica was unreachable, convergence after the last
//! heal, and no replica process the conductor does not know.

use super::copies;
use crate::harness::{Cluster, block_on, processes_with, workload_bin};
use crate::load::LoadReport;
use skr8tr_proto::wire::{self, HistoryPage};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// After a fault ends: the lost-node timeout (5 s), a report, a drain and
/// a start — while the cut-off copies may still run beside replacements,
/// and an app's only replica may be unreachable.
const AFTER_FAULT: Duration = Duration::from_secs(12);

/// A fault (or operator action) and when it lasted.
#[derive(Clone, Debug)]
pub struct Window {
    pub kind: &'static str,
    pub node: Option<String>,
    /// The apps whose every replica was on its node when it began.
    pub held_all: Vec<&'static str>,
    pub start: Instant,
    pub end: Instant,
}

impl Window {
    fn covers(&self, t: Instant) -> bool {
        t >= self.start && t <= self.end + AFTER_FAULT
    }

    fn is_fault(&self) -> bool {
        !self.kind.starts_with("operator")
    }
}

type Samples = Vec<(Instant, BTreeMap<&'static str, usize>)>;

pub struct Observer {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Samples>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// (since, app, desired count).
    desired: Vec<(Instant, &'static str, usize)>,
    windows: Vec<Window>,
    /// (seq, summary) of every acknowledged command.
    acked: Vec<(u64, String)>,
    refused_full: u32,
    refused_other: Vec<String>,
}

pub struct Report {
    pub text: String,
    pub violations: Vec<String>,
}

impl Observer {
    pub fn start(apps: &[(&'static str, usize)]) -> Observer {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let names: Vec<&'static str> = apps.iter().map(|(a, _)| *a).collect();
        let (s, out) = (stop.clone(), samples.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let counts = names.iter().map(|a| (*a, copies(a))).collect();
                out.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((Instant::now(), counts));
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let now = Instant::now();
        Observer {
            stop,
            samples,
            thread: Some(thread),
            desired: apps.iter().map(|(a, n)| (now, *a, *n)).collect(),
            windows: Vec::new(),
            acked: Vec::new(),
            refused_full: 0,
            refused_other: Vec::new(),
        }
    }

    /// Records a fault or action, and says it on stderr (a replay reads
    /// the same lines).
    pub fn window(&mut self, w: Window) {
        let t0 = self.desired.first().map_or(w.start, |(t, _, _)| *t);
        eprintln!(
            "{:>7.1}s {:>5.1}s  {}{}",
            w.start.duration_since(t0).as_secs_f64(),
            w.end.duration_since(w.start).as_secs_f64(),
            w.kind,
            w.node
                .as_deref()
                .map(|n| format!(" {n}"))
                .unwrap_or_default()
        );
        self.windows.push(w);
    }

    pub fn desired(&mut self, app: &'static str, n: usize) {
        self.desired.push((Instant::now(), app, n));
    }

    /// The desired count of each app now.
    pub fn desired_now(&self) -> BTreeMap<&'static str, usize> {
        let mut now = BTreeMap::new();
        for (_, app, n) in &self.desired {
            now.insert(*app, *n);
        }
        now
    }

    /// A command's `--json` reply: its audit seq, if it was accepted.
    pub fn acked(&mut self, out: &std::process::Output, summary: String) {
        let text = String::from_utf8_lossy(&out.stdout);
        let seq = text
            .split("\"seq\":")
            .nth(1)
            .and_then(|rest| {
                rest.trim_start()
                    .split(|ch: char| !ch.is_ascii_digit())
                    .next()
            })
            .and_then(|n| n.parse().ok());
        match seq {
            Some(seq) => self.acked.push((seq, summary)),
            None => self
                .refused_other
                .push(format!("{summary}: no seq in {text}")),
        }
    }

    pub fn refused_full(&mut self, stderr: &str) {
        if stderr.contains("store-full") {
            self.refused_full += 1;
        } else {
            self.refused_other
                .push(format!("on a full disk: {}", stderr.trim()));
        }
    }

    /// The most `app` may run at `t` outside fault windows: the most it
    /// was asked for in the last 5 s, plus one surge replica.
    fn allowed(&self, app: &str, t: Instant) -> usize {
        let mut current = 0;
        let mut most = 0;
        for (since, a, n) in &self.desired {
            if *a != app {
                continue;
            }
            if *since <= t {
                current = *n;
            }
            if *since <= t && *since + Duration::from_secs(5) >= t {
                most = most.max(*n);
            }
        }
        most.max(current) + if app == "guard" { 0 } else { 1 }
    }

    pub fn finish(
        mut self,
        c: &Cluster,
        served: BTreeMap<&str, LoadReport>,
        converge: Option<Duration>,
        minutes: f64,
        seed: u64,
    ) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let samples = std::mem::take(&mut *self.samples.lock().unwrap_or_else(|p| p.into_inner()));
        let mut v = Vec::new();
        let mut text = String::new();
        let mut line = |k: &str, val: String| text.push_str(&format!("{k:<34} {val}\n"));
        line(
            "schedule",
            format!(
                "seed {seed}, {minutes} min, 3 nodes, apps web (2-5), solo (1), guard (1, stop-after 6s)"
            ),
        );
        // Faults by kind.
        let mut kinds: BTreeMap<&str, u32> = BTreeMap::new();
        for w in &self.windows {
            *kinds.entry(w.kind).or_default() += 1;
        }
        let faults: Vec<String> = kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
        line("faults and actions", faults.join(", "));
        // Commands: acknowledged, then found in the history.
        let history = history(c);
        let found = self
            .acked
            .iter()
            .filter(|(seq, summary)| {
                history
                    .get(seq)
                    .is_some_and(|(s, accepted)| *accepted && s.starts_with(summary.as_str()))
            })
            .count();
        if found != self.acked.len() {
            v.push(format!(
                "{} acknowledged commands are not in the history",
                self.acked.len() - found
            ));
        }
        let verify = c.skr8tr(&["history", "--verify"]);
        let verified = verify.status.success();
        if !verified {
            v.push(format!(
                "history --verify failed: {}",
                String::from_utf8_lossy(&verify.stderr)
            ));
        }
        line(
            "commands acknowledged / found",
            format!(
                "{} / {found}; refused store-full {}; audit chain {}",
                self.acked.len(),
                self.refused_full,
                if verified { "verified" } else { "BROKEN" }
            ),
        );
        v.extend(self.refused_other.iter().cloned());
        // Requests.
        for (app, r) in &served {
            let (mut only, mut slow, mut other) = (0, 0, Vec::new());
            for (at, what) in r.failed_at.iter().zip(&r.failed) {
                let excused = self.windows.iter().any(|w| {
                    w.covers(*at)
                        && (w.held_all.contains(app)
                            || (*app == "solo" && w.kind == "kill -9 replica"))
                });
                // Waiting out TCP's backoff on a lossy link: slow, not refused.
                let lossy = what.contains("did not answer within")
                    && self
                        .windows
                        .iter()
                        .any(|w| w.covers(*at) && w.kind == "20% packet loss");
                if excused {
                    only += 1;
                } else if lossy {
                    slow += 1;
                } else {
                    other.push(what.clone());
                }
            }
            line(
                &format!("requests {app}"),
                format!(
                    "{} ok; failed {} while every replica of it was unreachable, {} slower than 5 s on a lossy link, {} otherwise",
                    r.ok,
                    only,
                    slow,
                    other.len()
                ),
            );
            if !other.is_empty() {
                let t0 = self.desired.first().map(|(t, _, _)| *t);
                let first = r
                    .failed_at
                    .iter()
                    .zip(&r.failed)
                    .find(|(_, w)| **w == other[0])
                    .map(|(t, _)| *t);
                let when = match (first, t0) {
                    (Some(f), Some(t0)) => {
                        let near: Vec<String> = self
                            .windows
                            .iter()
                            .filter(|w| w.covers(f))
                            .map(|w| format!("{} {}", w.kind, w.node.as_deref().unwrap_or("")))
                            .collect();
                        format!(
                            " at {:.1}s, during: {}",
                            f.duration_since(t0).as_secs_f64(),
                            if near.is_empty() {
                                "no fault".into()
                            } else {
                                near.join(", ")
                            }
                        )
                    }
                    _ => String::new(),
                };
                v.push(format!(
                    "{app}: {} requests failed while some replica of it was reachable (first: {}{when})",
                    other.len(),
                    other[0]
                ));
            }
        }
        // Replica counts.
        let last = samples.last().map(|(_, m)| m.clone()).unwrap_or_default();
        for app in ["web", "solo", "guard"] {
            let most = samples
                .iter()
                .filter_map(|(_, m)| m.get(app))
                .max()
                .copied()
                .unwrap_or(0);
            let over_at: Vec<(Instant, usize)> = samples
                .iter()
                .filter_map(|(t, m)| Some((*t, *m.get(app)?)))
                .filter(|(t, n)| {
                    *n > self.allowed(app, *t)
                        && (app == "guard"
                            || !self.windows.iter().any(|w| w.is_fault() && w.covers(*t)))
                })
                .collect();
            // `guard` never runs twice; the others may be over their bound
            // for a lost-node timeout plus a report (6 s), not longer.
            let over = if app == "guard" {
                over_at.clone()
            } else {
                lasting(&samples, app, &over_at, Duration::from_secs(6))
            };
            line(
                &format!("replicas {app} (max / final)"),
                format!(
                    "{most} / {} (desired {}); over desired+surge outside faults: {}",
                    last.get(app).copied().unwrap_or(0),
                    self.desired_now().get(app).copied().unwrap_or(0),
                    over.len()
                ),
            );
            if !over.is_empty() {
                let t0 = self.desired.first().map_or(over[0].0, |(t, _, _)| *t);
                let at: Vec<String> = over
                    .iter()
                    .take(5)
                    .map(|(t, n)| format!("{n} at {:.1}s", t.duration_since(t0).as_secs_f64()))
                    .collect();
                v.push(format!(
                    "{app}: {} samples over its bound (most {}; {})",
                    over.len(),
                    over.iter().map(|(_, n)| *n).max().unwrap_or(0),
                    at.join(", ")
                ));
            }
        }
        match converge {
            Some(d) => line(
                "converged after the last heal",
                format!("{:.1} s", d.as_secs_f64()),
            ),
            None => {
                line("converged after the last heal", "NOT within 90 s".into());
                v.push("did not converge within 90 s of the last heal".into());
            }
        }
        let unknown = unknown_processes(c);
        line(
            "replica processes unknown to it",
            format!("{}", unknown.len()),
        );
        if !unknown.is_empty() {
            v.push(format!(
                "replica processes the conductor does not know: {unknown:?}"
            ));
        }
        line(
            "invariants",
            if v.is_empty() {
                "all hold".into()
            } else {
                format!("{} broken", v.len())
            },
        );
        Report {
            text,
            violations: v,
        }
    }
}

/// The over-bound samples that belong to a run of them lasting longer
/// than `bound` (consecutive samples of `app` all over).
fn lasting(
    samples: &Samples,
    app: &str,
    over: &[(Instant, usize)],
    bound: Duration,
) -> Vec<(Instant, usize)> {
    let is_over = |t: &Instant| over.iter().any(|(o, _)| o == t);
    let mut out = Vec::new();
    let mut run: Vec<(Instant, usize)> = Vec::new();
    for (t, m) in samples {
        if is_over(t) {
            run.push((*t, m.get(app).copied().unwrap_or(0)));
            continue;
        }
        if run.len() > 1 && run[run.len() - 1].0.duration_since(run[0].0) > bound {
            out.append(&mut run);
        }
        run.clear();
    }
    if run.len() > 1 && run[run.len() - 1].0.duration_since(run[0].0) > bound {
        out.append(&mut run);
    }
    out
}

/// seq -> (summary, accepted), the whole history.
fn history(c: &Cluster) -> BTreeMap<u64, (String, bool)> {
    let client = c.client();
    let mut out = BTreeMap::new();
    let mut from = 1;
    for _ in 0..10_000 {
        let Ok((_, body)) = block_on(client.get(
            &format!("/v1/history?from={from}&limit=500"),
            Duration::from_secs(10),
        )) else {
            break;
        };
        let Ok(page) = wire::decode::<HistoryPage>(&body) else {
            break;
        };
        if page.entries.is_empty() {
            break;
        }
        for e in page.entries {
            out.insert(e.seq, (e.summary, e.accepted));
        }
        match page.next {
            Some(n) if n > from => from = n,
            _ => break,
        }
    }
    out
}

/// Workload processes whose pid no replica of the conductor has.
fn unknown_processes(c: &Cluster) -> Vec<u32> {
    let known: Vec<u32> = ["web", "solo", "guard"]
        .iter()
        .flat_map(|a| c.replicas(a))
        .filter_map(|r| r.pid)
        .collect();
    processes_with(&format!("{} --version", workload_bin().display()))
        .into_iter()
        .filter(|p| !known.contains(p))
        .collect()
}
