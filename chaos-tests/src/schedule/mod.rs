//! The schedule runner behind `chaos-tests/run.sh --minutes N --seed S`: a
//! fleet (conductor, three nodes, ingress, each in its own namespace)
//! serving three apps under load through the ingress, and a random
//! schedule drawn from the seed of one fault at a time — kill -9 of the
//! conductor, a node agent or a replica, a node frozen, cut off from the
//! conductor or losing 20 % of its packets, the conductor's disk full —
//! between operator commands (scale, rollout, drain). The same seed draws
//! the same schedule, so a failure can be replayed. `observe` checks the
//! invariants and prints the table.
//!
//! Apps: `web` (2–5 replicas, rolled to new versions), `solo` (one
//! replica: its requests may fail while that replica is unreachable) and
//! `guard` (one replica, `disconnect { stop-after 6s }`: never two copies).

mod observe;

pub use observe::Report;

use crate::harness::{Cluster, Load, Options, http_get, processes_with, wait_for, workload_bin};
use observe::{Observer, Window};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(90);
const NODES: [&str; 3] = ["n1", "n2", "n3"];

/// splitmix64: a small deterministic generator, so a seed replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn ms(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.below(to - from + 1))
    }

    fn node(&mut self) -> &'static str {
        NODES[self.below(NODES.len() as u64) as usize]
    }
}

fn manifest(version: u32) -> String {
    format!(
        "app web\n  exec {{workload}}\n  args --version web-v{version}\n  replicas 3\n  health {{ check GET /healthz 200; interval 500ms }}\n\
         app solo\n  exec {{workload}}\n  args --version solo\n  health {{ check GET /healthz 200; interval 500ms }}\n\
         app guard\n  exec {{workload}}\n  args --version guard\n  drain 1s\n  disconnect {{ stop-after 6s }}\n  health {{ check GET /healthz 200; interval 500ms }}\n"
    )
}

/// The copies of `app` running on this machine, by command line.
pub fn copies(app: &str) -> usize {
    processes_with(&format!("{} --version {app}", workload_bin().display())).len()
}

/// Runs the schedule for `minutes` from `seed`; the report says what
/// happened and which invariants broke.
pub fn run(minutes: f64, seed: u64) -> Report {
    let mut rng = Rng(seed);
    let mut c = Cluster::start_with(
        &format!("schedule-{seed}"),
        Options {
            fleet: true,
            lost_after: Some("5s"),
            conductor_disk: Some("64m".into()),
            ..Options::default()
        },
    );
    for n in NODES {
        c.start_node(n);
    }
    wait_for("three nodes ready", WAIT, || {
        (c.ok(&["nodes"]).matches(" ready").count() == 3).then_some(())
    });
    let mut version = 1;
    let file = c.manifest("apps.skr8tr", &manifest(version));
    c.ok(&["up", file.to_str().unwrap()]);
    c.wait_ready("web", 3, WAIT);
    c.wait_ready("solo", 1, WAIT);
    c.wait_ready("guard", 1, WAIT);
    let ingress = c.start_ingress(&["/r/web:web", "/r/solo:solo"]);
    wait_for("both routes served", WAIT, || {
        (http_get(&ingress, "/r/web/")?.0 == 200 && http_get(&ingress, "/r/solo/")?.0 == 200)
            .then_some(())
    });
    let loads = [
        ("web", Load::through_path(&ingress, "/r/web/")),
        ("solo", Load::through_path(&ingress, "/r/solo/")),
    ];
    let mut obs = Observer::start(&[("web", 3), ("solo", 1), ("guard", 1)]);
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(minutes * 60.0);
    while Instant::now() < deadline {
        // Where each routed app runs before the fault: one whose every
        // replica is on the faulted node may fail requests meanwhile.
        let hosts: BTreeMap<&'static str, std::collections::BTreeSet<String>> = ["web", "solo"]
            .into_iter()
            .map(|a| (a, c.replicas(a).into_iter().map(|r| r.node).collect()))
            .collect();
        let pick = rng.below(100);
        let start = Instant::now();
        let (kind, node): (&'static str, Option<String>) = match pick {
            0..10 => {
                c.kill_conductor();
                std::thread::sleep(rng.ms(0, 2000));
                c.start_conductor();
                ("kill -9 conductor", None)
            }
            10..22 => {
                let n = rng.node();
                c.kill_node(n);
                std::thread::sleep(rng.ms(500, 4000));
                c.start_node_with(n, &[]);
                ("kill -9 node", Some(n.into()))
            }
            22..32 => {
                let all: Vec<u32> = ["web", "solo", "guard"]
                    .iter()
                    .flat_map(|a| {
                        processes_with(&format!("{} --version {a}", workload_bin().display()))
                    })
                    .collect();
                let node = if all.is_empty() {
                    None
                } else {
                    let pid = all[rng.below(all.len() as u64) as usize];
                    let owner = ["web", "solo", "guard"].iter().find_map(|a| {
                        c.replicas(a)
                            .into_iter()
                            .find(|r| r.pid == Some(pid))
                            .map(|r| r.node)
                    });
                    signal(pid, "-KILL");
                    owner
                };
                ("kill -9 replica", node)
            }
            32..44 => {
                let n = rng.node();
                let pid = c.node_pid(n).expect("a running node");
                signal(pid, "-STOP");
                std::thread::sleep(rng.ms(3000, 12_000));
                signal(pid, "-CONT");
                ("freeze node", Some(n.into()))
            }
            44..56 => {
                let n = rng.node();
                c.fleet().expect("a fleet").cut(n, &["conductor"]);
                std::thread::sleep(rng.ms(5000, 15_000));
                c.fleet().expect("a fleet").heal(n);
                ("cut node from conductor", Some(n.into()))
            }
            56..64 => {
                let n = rng.node();
                c.fleet().expect("a fleet").lossy(n, 20);
                std::thread::sleep(rng.ms(5000, 10_000));
                c.fleet().expect("a fleet").lossless(n);
                ("20% packet loss", Some(n.into()))
            }
            64..70 => {
                let filler = c.conductor_disk().expect("a small disk").fill();
                let count = (2 + rng.below(4)).to_string();
                let out = c.skr8tr(&["--json", "scale", "web", &count]);
                if out.status.success() {
                    // Room was left in pages redb already holds: acked.
                    obs.acked(&out, format!("scale web {count}"));
                    obs.desired("web", count.parse().unwrap_or(3));
                } else {
                    obs.refused_full(&String::from_utf8_lossy(&out.stderr));
                }
                std::thread::sleep(rng.ms(1000, 4000));
                let _ = std::fs::remove_file(filler);
                ("conductor disk full", None)
            }
            70..84 => {
                let count = 2 + rng.below(4) as u32;
                let out = c.skr8tr(&["--json", "scale", "web", &count.to_string()]);
                if out.status.success() {
                    obs.acked(&out, format!("scale web {count}"));
                    obs.desired("web", count as usize);
                }
                ("operator: scale", None)
            }
            84..94 => {
                version += 1;
                let file = c.manifest("apps.skr8tr", &manifest(version));
                let out = c.skr8tr(&["--json", "rollout", file.to_str().unwrap()]);
                if out.status.success() {
                    obs.acked(&out, "rollout apps.skr8tr".into());
                    // The manifest says `replicas 3`.
                    obs.desired("web", 3);
                }
                ("operator: rollout", None)
            }
            _ => {
                let n = rng.node();
                let out = c.skr8tr(&["--json", "node", "drain", n]);
                if out.status.success() {
                    obs.acked(&out, format!("node drain {n}"));
                }
                std::thread::sleep(rng.ms(2000, 6000));
                let out = c.skr8tr(&["--json", "node", "uncordon", n]);
                if out.status.success() {
                    obs.acked(&out, format!("node uncordon {n}"));
                }
                ("operator: drain", Some(n.to_string()))
            }
        };
        obs.window(Window {
            kind,
            node: node.clone(),
            held_all: hosts
                .iter()
                .filter(|(_, on)| {
                    node.as_ref()
                        .is_some_and(|n| on.len() == 1 && on.contains(n.as_str()))
                })
                .map(|(a, _)| *a)
                .collect(),
            start,
            end: Instant::now(),
        });
        std::thread::sleep(rng.ms(1000, 3000));
    }
    let last_heal = Instant::now();
    let converged = wait_converged(&c, &obs);
    let converge_time = converged.map(|t| t.duration_since(last_heal));
    // Traffic after the last fault, then the tallies.
    for (_, l) in &loads {
        l.wait_served(20, WAIT);
    }
    let served: BTreeMap<&str, crate::load::LoadReport> =
        loads.into_iter().map(|(app, l)| (app, l.stop())).collect();
    obs.finish(&c, served, converge_time, minutes, seed)
}

/// Every app at its desired count, ready, and no other copy running.
fn wait_converged(c: &Cluster, obs: &Observer) -> Option<Instant> {
    let until = Instant::now() + WAIT;
    while Instant::now() < until {
        let done = obs.desired_now().iter().all(|(app, n)| {
            let r = c.replicas(app);
            r.len() == *n
                && r.iter()
                    .all(|r| r.state == Some(skr8tr_proto::wire::ReplicaState::Ready))
                && copies(app) == *n
        });
        if done {
            return Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

fn signal(pid: u32, sig: &str) {
    let _ = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status();
}
