//! `deploy-bench [--runs N]`: median time from `skr8tr up` to the first
//! HTTP 200 from the new app (the test workload, fast-starting), median time
//! from `skr8tr node` start to the node listed as schedulable, and the
//! resident memory of the conductor and a node, idle and with 3 replicas.
//! The original C implementation's figures, measured on this kind of
//! machine (DESIGN.md), are printed beside ours as the named peer; it cannot
//! be built here, so they are cited, not re-measured. Run via `bench/deploy`.

// Test tooling: a failed expectation here is a failed test or benchmark,
// and `expect` says which.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use skr8tr_chaos_tests::harness::{
    Cluster, http_get, private_and_pss_kib, processes_with, rss_kib, skr8tr_bin,
};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);

/// Polls every millisecond: the figure must measure skr8tr, not the poller.
fn poll<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < WAIT, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let mut runs = 9usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => runs = args.next().and_then(|n| n.parse().ok()).expect("--runs N"),
            _ => {
                eprintln!("usage: deploy-bench [--runs N]");
                std::process::exit(2);
            }
        }
    }
    let mut c = Cluster::start("deploy-bench");
    let client = c.client();

    // Node start -> listed as schedulable (alive in /v1/nodes).
    let mut joins = Vec::new();
    for i in 0..runs {
        let name = format!("bench-{i}");
        // The operator's ticket is made beforehand: the figure is the node's.
        let ticket = c.dir.join(format!("{name}.ticket"));
        c.ok(&[
            "ticket",
            &name,
            "--out",
            ticket.to_str().expect("utf-8 path"),
        ]);
        let started = Instant::now();
        c.start_node_with(&name, &["--ticket", ticket.to_str().expect("utf-8 path")]);
        poll("the node to be listed", || {
            let (_, body) = skr8tr_chaos_tests::harness::block_on(
                client.get("/v1/nodes", Duration::from_secs(2)),
            )
            .ok()?;
            let nodes: Vec<skr8tr_proto::wire::NodeView> =
                skr8tr_proto::wire::decode(&body).ok()?;
            nodes
                .iter()
                .any(|n| n.name == name && n.alive)
                .then_some(())
        });
        joins.push(started.elapsed());
        if i > 0 {
            c.kill_node(&name);
        }
    }
    std::thread::sleep(Duration::from_secs(3)); // let killed nodes be declared lost
    let node_pid = c.node_pid("bench-0").expect("node bench-0");
    let conductor_pid = c.conductor_pid().expect("conductor");
    std::thread::sleep(Duration::from_secs(1));
    let idle = (rss_kib(conductor_pid), rss_kib(node_pid));

    // `skr8tr up` -> first 200 from the new app.
    let mut deploys = Vec::new();
    for i in 0..runs {
        let app = format!("fast{i}");
        let m = c.manifest(
            &format!("{app}.skr8tr"),
            &format!("app {app}\n  exec {{workload}}\n  health {{ check GET /healthz 200; interval 1s }}\n"),
        );
        let started = Instant::now();
        c.ok(&["up", m.to_str().expect("utf-8 path")]);
        poll("the first 200", || {
            let r = c.replicas(&app).into_iter().next()?;
            let addr = format!("{}:{}", r.address, r.port?);
            (http_get(&addr, "/")?.0 == 200).then_some(())
        });
        deploys.push(started.elapsed());
        c.ok(&["down", &app]);
    }

    let m = c.manifest(
        "three.skr8tr",
        "app three\n  exec {workload}\n  replicas 3\n  health { check tcp }\n",
    );
    c.ok(&["up", m.to_str().expect("utf-8 path")]);
    c.wait_ready("three", 3, WAIT);
    std::thread::sleep(Duration::from_secs(2));
    let busy = (rss_kib(conductor_pid), rss_kib(node_pid));
    // Each replica's shim, against the smallest process there is: a
    // `/bin/sleep` started here, measured the same way.
    let shims: Vec<(u64, u64)> = processes_with(&format!("{} shim", skr8tr_bin().display()))
        .into_iter()
        .map(private_and_pss_kib)
        .collect();
    let mut sleep = std::process::Command::new("/bin/sleep")
        .arg("30")
        .spawn()
        .expect("start /bin/sleep");
    std::thread::sleep(Duration::from_millis(200));
    let sleeper = private_and_pss_kib(sleep.id());
    let _ = sleep.kill();
    let _ = sleep.wait();
    let shim = (
        shims.iter().map(|s| s.0).sum::<u64>() / shims.len().max(1) as u64,
        shims.iter().map(|s| s.1).sum::<u64>() / shims.len().max(1) as u64,
    );

    let deploy = median(deploys.clone());
    let join = median(joins.clone());
    println!(
        "skr8tr deploy benchmark ({runs} runs each, debug={})",
        cfg!(debug_assertions)
    );
    println!();
    println!(
        "{:<44} {:>12} {:>16} {:>10}",
        "figure", "skr8tr", "original C [1]", "ratio"
    );
    println!(
        "{:<44} {:>9.1} ms {:>13} ms {:>9.2}x",
        "skr8tr up -> first HTTP 200 (median)",
        ms(deploy),
        57,
        ms(deploy) / 57.0
    );
    println!(
        "{:<44} {:>9.1} ms {:>13} ms {:>9.2}x",
        "node start -> schedulable (median)",
        ms(join),
        264,
        ms(join) / 264.0
    );
    println!(
        "{:<44} {:>9.1} MB {:>13} MB {:>9.2}x",
        "conductor RSS, idle",
        idle.0 as f64 / 1024.0,
        "~2",
        idle.0 as f64 / 1024.0 / 2.0
    );
    println!(
        "{:<44} {:>9.1} MB {:>13} MB {:>9.2}x",
        "node RSS, idle",
        idle.1 as f64 / 1024.0,
        "~2",
        idle.1 as f64 / 1024.0 / 2.0
    );
    println!(
        "{:<44} {:>9.1} MB",
        "conductor RSS, 3 replicas running",
        busy.0 as f64 / 1024.0
    );
    println!(
        "{:<44} {:>9.1} MB",
        "node RSS, 3 replicas running",
        busy.1 as f64 / 1024.0
    );
    println!(
        "{:<44} {:>9.2} MB {:>13.2} MB {:>9.2}x",
        format!("shim per replica, private ({} shims)", shims.len()),
        shim.0 as f64 / 1024.0,
        sleeper.0 as f64 / 1024.0,
        shim.0 as f64 / sleeper.0.max(1) as f64
    );
    println!(
        "{:<44} {:>9.2} MB {:>13.2} MB {:>9.2}x",
        "shim per replica, PSS",
        shim.1 as f64 / 1024.0,
        sleeper.1 as f64 / 1024.0,
        shim.1 as f64 / sleeper.1.max(1) as f64
    );
    println!("  (shim rows: the peer column is /bin/sleep, measured in this run)");
    println!();
    println!(
        "deploy runs (ms): {:?}",
        deploys
            .iter()
            .map(|d| (ms(*d) * 10.0).round() / 10.0)
            .collect::<Vec<_>>()
    );
    println!(
        "join runs (ms):   {:?}",
        joins
            .iter()
            .map(|d| (ms(*d) * 10.0).round() / 10.0)
            .collect::<Vec<_>>()
    );
    println!(
        "[1] cited from ../shared/DESIGN.md (measured on this kind of machine; not rebuildable here)"
    );
    println!(
        "targets (DESIGN.md): deploy < 20 ms, node start -> schedulable < 50 ms, conductor + ingress idle <= 6.6 MB"
    );
}
