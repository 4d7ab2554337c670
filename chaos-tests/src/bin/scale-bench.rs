//! `scale-bench [--nodes 100,500,1000] [--per-node 10] [--full-reports]`:
//! the conductor against `skr8tr-sim`'s virtual nodes (reporting deltas,
//! or every report whole with `--full-reports`, as the release before
//! them). The conductor runs on core 0, the simulator on core 1. Prints, for each fleet size, the conductor's
//! CPU and RSS idle (and the simulator's own CPU, so the two are not
//! confused), report round-trip p50/p99; then placements/s for `up` of
//! nodes × per-node replicas, the time to detect and replace 50 nodes lost
//! at once, and conductor restart (kill -9) to every replica ready again.
//! Figures from before the incremental control plane and Nomad's
//! published C1M/C2M placement rates are printed beside them
//! (`bench/scale` says where they come from). Run via `bench/scale`.

// Benchmark tooling: a failed expectation is a failed benchmark, and
// `expect` says which.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use skr8tr_chaos_tests::harness::{Cluster, Options, skr8tr_bin};
use skr8tr_chaos_tests::procs::{block_on, cpu_ms, rss_kib};
use skr8tr_proto::wire::{self, AppView, NodeView, StatusReply};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(300);
const IDLE_WINDOW: Duration = Duration::from_secs(10);
/// The most replicas one app may have.
const APP_MAX: usize = 1000;

/// The simulator's latest status line, and every p50/p99 it printed.
#[derive(Default, Clone)]
struct SimLine {
    live: usize,
    ready: usize,
    errors: u64,
    lat: Vec<(u64, u64)>,
}

struct Sim {
    child: Child,
    stdin: ChildStdin,
    line: Arc<Mutex<SimLine>>,
}

impl Sim {
    fn start(c: &Cluster, full_reports: bool) -> Sim {
        let bin = skr8tr_bin().with_file_name("skr8tr-sim");
        let mut child = Command::new("taskset")
            .arg("-c")
            .arg("1")
            .arg(bin)
            .args(["--conductor", &c.url, "--pin"])
            .arg(c.pin_file())
            .arg("--conductor-key")
            .arg(c.data().join("conductor.pub"))
            .arg("--operator-key")
            .arg(c.home().join(".skr8tr/signing.sec"))
            .args(["--nodes", "0"])
            .args(full_reports.then_some("--full-reports"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start skr8tr-sim (taskset from util-linux)");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let line = Arc::new(Mutex::new(SimLine::default()));
        let l2 = line.clone();
        std::thread::spawn(move || {
            for text in BufReader::new(stdout).lines().map_while(Result::ok) {
                let field = |k: &str| -> u64 {
                    text.split_whitespace()
                        .find_map(|w| w.strip_prefix(k)?.strip_prefix('='))
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0)
                };
                let mut l = l2.lock().unwrap();
                l.live = field("live") as usize;
                l.ready = field("ready") as usize;
                l.errors = field("errors");
                if field("samples") > 0 {
                    l.lat.push((field("p50_us"), field("p99_us")));
                }
            }
        });
        Sim { child, stdin, line }
    }

    fn send(&mut self, cmd: &str) {
        writeln!(self.stdin, "{cmd}").expect("sim stdin");
    }

    fn now(&self) -> SimLine {
        self.line.lock().unwrap().clone()
    }

    /// Waits (polling every 20 ms) until `f` holds for the latest line;
    /// how long it took, or `None` past [`WAIT`].
    fn until(&self, f: impl Fn(&SimLine) -> bool) -> Option<Duration> {
        let start = Instant::now();
        while start.elapsed() < WAIT {
            if f(&self.now()) {
                return Some(start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pin_conductor(c: &Cluster) -> u32 {
    let pid = c.conductor_pid().expect("conductor pid");
    let ok = Command::new("taskset")
        .args(["-a", "-pc", "0", &pid.to_string()])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "taskset the conductor to core 0");
    pid
}

/// The conductor's and the simulator's CPU over [`IDLE_WINDOW`], % of a
/// core; and the report latencies printed meanwhile.
fn idle(conductor: u32, sim: &Sim) -> (f64, f64, u64, u64) {
    std::thread::sleep(Duration::from_secs(3));
    let lat_before = sim.now().lat.len();
    let (c0, s0) = (cpu_ms(conductor).unwrap(), cpu_ms(sim.child.id()).unwrap());
    let start = Instant::now();
    std::thread::sleep(IDLE_WINDOW);
    let secs = start.elapsed().as_secs_f64();
    let (c1, s1) = (cpu_ms(conductor).unwrap(), cpu_ms(sim.child.id()).unwrap());
    let mut lat: Vec<(u64, u64)> = sim.now().lat[lat_before..].to_vec();
    lat.sort();
    let p50 = lat.get(lat.len() / 2).map_or(0, |l| l.0);
    let mut p99s: Vec<u64> = lat.iter().map(|l| l.1).collect();
    p99s.sort();
    let p99 = p99s.get(p99s.len() / 2).map_or(0, |l| *l);
    (
        (c1 - c0) as f64 / 10.0 / secs,
        (s1 - s0) as f64 / 10.0 / secs,
        p50,
        p99,
    )
}

/// The apps of `status`; none while the conductor does not answer.
fn apps(c: &Cluster) -> Vec<AppView> {
    match block_on(c.client().get("/v1/status", Duration::from_secs(30))) {
        Ok((status, body)) if status.is_success() => {
            let reply: StatusReply = wire::decode(&body).expect("a status reply");
            reply.apps
        }
        _ => Vec::new(),
    }
}

/// Nodes the conductor holds alive, polled until there are `n` (their
/// admissions, two signatures each, done): nothing is timed while it is
/// still admitting.
fn until_joined(c: &Cluster, n: usize) {
    let start = Instant::now();
    while start.elapsed() < WAIT {
        let alive = match block_on(c.client().get("/v1/nodes", Duration::from_secs(30))) {
            Ok((status, body)) if status.is_success() => wire::decode::<Vec<NodeView>>(&body)
                .map_or(0, |v| v.iter().filter(|n| n.alive).count()),
            _ => 0,
        };
        if alive >= n {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{n} nodes did not join within {WAIT:?}");
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("did not converge".into(), |d| {
        format!("{:.2} s", d.as_secs_f64())
    })
}

fn main() {
    let mut sizes = vec![100usize, 500, 1000];
    let mut per_node = 10usize;
    let mut full_reports = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--nodes" => {
                sizes = args
                    .next()
                    .expect("--nodes 100,500,1000")
                    .split(',')
                    .map(|n| n.parse().expect("a node count"))
                    .collect()
            }
            "--per-node" => per_node = args.next().and_then(|n| n.parse().ok()).expect("N"),
            "--full-reports" => full_reports = true,
            _ => {
                eprintln!(
                    "usage: scale-bench [--nodes 100,500,1000] [--per-node 10] [--full-reports]"
                );
                std::process::exit(2);
            }
        }
    }
    let mut c = Cluster::start_with(
        "scale-bench",
        Options {
            conductor_args: [
                "--max-connections",
                "8192",
                "--max-connections-per-ip",
                "8192",
            ]
            .map(String::from)
            .to_vec(),
            lost_after: Some("5s"),
            ..Options::default()
        },
    );
    let mut pid = pin_conductor(&c);
    let mut sim = Sim::start(&c, full_reports);
    // An app holds at most 1000 replicas: `n` replicas are apps
    // `bench-FROM..` of 1000 each.
    let manifest = |from: usize, n: usize| {
        let text: String = (from..from + n.div_ceil(APP_MAX))
            .map(|i| {
                format!("app bench-{i}\n  exec /bin/sleep\n  args infinity\n  replicas {APP_MAX}\n")
            })
            .collect();
        c.manifest(&format!("bench-{from}.skr8tr"), &text)
    };
    println!(
        "conductor on core 0, skr8tr-sim on core 1; {per_node} replicas per node; {} reports",
        if full_reports { "full" } else { "delta" }
    );
    println!();
    println!(
        "{:>6} {:>9} {:>16} {:>14} {:>13} {:>15} {:>15}",
        "nodes",
        "replicas",
        "conductor CPU",
        "conductor RSS",
        "sim CPU",
        "report p50",
        "report p99"
    );
    let mut placed = 0usize;
    let mut last = 0usize;
    let mut results = Vec::new();
    for (i, &n) in sizes.iter().enumerate() {
        sim.send(&format!("add {}", n - last));
        last = n;
        sim.until(|l| l.live == n).expect("the nodes start");
        until_joined(&c, n);
        let want = (n * per_node).div_ceil(APP_MAX) * APP_MAX;
        if i + 1 == sizes.len() {
            // The last size: `up` of every replica at once, timed.
            for app in 0..placed.div_ceil(APP_MAX) {
                c.ok(&["down", &format!("bench-{app}")]);
            }
            sim.until(|l| l.ready == 0 && l.live == n)
                .expect("down drains");
            // And the conductor holds no placement of them any more (a
            // drained one is removed after the registry drain), so the
            // `up` below places every replica anew.
            let start = Instant::now();
            while apps(&c).iter().any(|a| a.placed > 0) {
                assert!(start.elapsed() < WAIT, "placements of the downed apps stay");
                std::thread::sleep(Duration::from_millis(200));
            }
            let m = manifest(0, want);
            let start = Instant::now();
            c.ok(&["up", m.to_str().unwrap()]);
            let answered = start.elapsed();
            // Placed (committed by the scheduler, what Nomad's C1M/C2M
            // count) and ready (every node's report says so), both as the
            // conductor's status says, polled every 50 ms on one kept
            // connection (a new one per poll would cost a session each).
            let client = c.client();
            let (placed_at, ready_at) = block_on(async {
                let (mut placed_at, mut ready_at) = (None, None);
                while start.elapsed() < WAIT && ready_at.is_none() {
                    let apps = match client.get("/v1/status", Duration::from_secs(30)).await {
                        Ok((status, body)) if status.is_success() => {
                            wire::decode::<StatusReply>(&body)
                                .expect("a status reply")
                                .apps
                        }
                        _ => Vec::new(),
                    };
                    let sum = |f: fn(&AppView) -> u32| -> usize {
                        apps.iter()
                            .filter(|a| a.name.starts_with("bench-"))
                            .map(|a| f(a) as usize)
                            .sum()
                    };
                    if placed_at.is_none() && sum(|a| a.placed) >= want {
                        placed_at = Some(start.elapsed());
                    }
                    if sum(|a| a.ready) >= want {
                        ready_at = Some(start.elapsed());
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                (placed_at, ready_at)
            });
            results.push((want, answered, placed_at, ready_at));
        } else {
            let m = manifest(placed / APP_MAX, want - placed);
            c.ok(&["up", m.to_str().unwrap()]);
            sim.until(|l| l.ready >= want).expect("every replica ready");
        }
        placed = want;
        let (ccpu, scpu, p50, p99) = idle(pid, &sim);
        println!(
            "{n:>6} {want:>9} {:>14.1} % {:>10} MiB {:>11.1} % {:>12.2} ms {:>12.2} ms",
            ccpu,
            rss_kib(pid) / 1024,
            scpu,
            p50 as f64 / 1000.0,
            p99 as f64 / 1000.0
        );
    }
    println!();
    let rate = |want: usize, t: Option<Duration>, what: &str| {
        t.map_or("-".into(), |t| {
            format!("{:.0} {what}/s", want as f64 / t.as_secs_f64())
        })
    };
    for (want, answered, placed, ready) in &results {
        println!(
            "up of {want} replicas (answered in {:.0} ms): all placed in {} ({}), all ready in {} ({})",
            answered.as_secs_f64() * 1000.0,
            secs(*placed),
            rate(*want, *placed, "placements"),
            secs(*ready),
            rate(*want, *ready, "replicas ready")
        );
    }
    println!("  Nomad, published: C1M 3,750 placements/s; C2M 1,499 placements/s");

    // 50 nodes lost at once: detected (lost-after 5 s) and replaced.
    let total = (*sizes.last().unwrap() * per_node).div_ceil(APP_MAX) * APP_MAX;
    let start = Instant::now();
    sim.send("stop 50");
    sim.until(|l| l.live == sizes.last().unwrap() - 50)
        .expect("50 nodes stop");
    std::thread::sleep(Duration::from_millis(1500));
    let replaced = sim.until(|l| l.ready >= total).map(|_| start.elapsed());
    println!(
        "50 nodes lost at once, to every replica ready elsewhere: {} (lost-after 5 s)",
        secs(replaced)
    );

    // Restart: kill -9, start again, every replica ready in its view.
    let start = Instant::now();
    c.kill_conductor();
    c.start_conductor();
    pid = pin_conductor(&c);
    let back = {
        let mut t = None;
        while start.elapsed() < WAIT {
            let ready: usize = apps(&c)
                .iter()
                .filter(|a| a.name.starts_with("bench-"))
                .map(|a| a.ready as usize)
                .sum();
            if ready >= total {
                t = Some(start.elapsed());
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        t
    };
    println!(
        "conductor kill -9 and restart at {} nodes, to all {total} ready: {}",
        sizes.last().unwrap() - 50,
        secs(back)
    );
    println!(
        "  conductor RSS after: {} MiB; simulator errors (reconnects) over the run: {}",
        rss_kib(pid) / 1024,
        sim.now().errors
    );
}
