//! `rollout-bench`: wall time of a 3-replica rolling update of the test
//! workload under continuous load, and the failed-request count — once with
//! a health check, once with `settle` instead. The original C
//! implementation slept a fixed 8 s per replica and had a 2.4 s outage on a
//! fixed-port rollout (DESIGN.md); those figures are cited beside ours.
//! Run via `bench/rollout`.

// Test tooling: a failed expectation here is a failed test or benchmark,
// and `expect` says which.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use skr8tr_chaos_tests::harness::{Cluster, Load};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(120);

fn run(label: &str, readiness: &str) -> (Duration, u64, usize) {
    let mut c = Cluster::start(&format!("rollout-bench-{label}"));
    c.start_node("n1");
    c.start_node("n2");
    let manifest = |v: &str| {
        format!("app web\n  exec {{workload}}\n  args --version {v}\n  replicas 3\n{readiness}")
    };
    let v1 = c.manifest("v1.skr8tr", &manifest("v1"));
    c.ok(&["up", v1.to_str().expect("utf-8 path")]);
    c.wait_ready("web", 3, WAIT);
    let load = Load::start(c.client(), "web");
    std::thread::sleep(Duration::from_millis(300));
    let v2 = c.manifest("v2.skr8tr", &manifest("v2"));
    let started = Instant::now();
    c.ok(&["rollout", v2.to_str().expect("utf-8 path")]);
    let wall = started.elapsed();
    std::thread::sleep(Duration::from_millis(300));
    let report = load.stop();
    (wall, report.ok, report.failed.len())
}

fn main() {
    let health = run(
        "health",
        "  health { check GET /healthz 200; interval 1s }\n",
    );
    let settle = run("settle", "  settle 1s\n");
    println!("rolling update of 3 replicas (test workload) under continuous load");
    println!();
    println!(
        "{:<36} {:>10} {:>12} {:>10}",
        "readiness", "wall", "requests ok", "failed"
    );
    for (label, (wall, ok, failed)) in [
        ("health check (GET /healthz)", health),
        ("settle 1s (no health check)", settle),
    ] {
        println!(
            "{label:<36} {:>8.2} s {ok:>12} {failed:>10}",
            wall.as_secs_f64()
        );
    }
    println!();
    println!(
        "original C [1]: fixed 8 s sleep per replica -> >= 24 s for 3 replicas; 2.4 s outage (fixed port)"
    );
    println!(
        "ratio (health check / original 24 s): {:.2}x",
        health.0.as_secs_f64() / 24.0
    );
    println!(
        "drained replicas leave the registry {} ms before they are stopped; drains overlap the next steps",
        skr8tr_conductor::rollout::REGISTRY_DRAIN_MS
    );
    println!("[1] cited from ../shared/DESIGN.md; the original cannot be rebuilt here");
}
