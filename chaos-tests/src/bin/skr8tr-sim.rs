//! `skr8tr-sim`: N virtual nodes in one process against a real conductor
//! (see `skr8tr_chaos_tests::sim`). Each second it prints one line:
//!
//! `sim nodes=N live=L replicas=R ready=Y reports=X errors=E samples=S p50_us=A p99_us=B cpu_ms=C`
//!
//! (`reports`/`errors` cumulative; the latencies of the reports since the
//! previous line; `cpu_ms` its own CPU time so far, so a benchmark can
//! tell its cost from the conductor's). Commands on stdin, one per line:
//! `add K` starts K more nodes, `stop K` silences the K oldest live ones
//! (as a power cut: no goodbye), `quit` ends it.
//!
//! ```text
//! skr8tr-sim --conductor https://127.0.0.1:7771 --pin DATA/tls.pin \
//!   --conductor-key DATA/conductor.pub --operator-key ~/.skr8tr/signing.sec --nodes 100
//! ```

use skr8tr_chaos_tests::sim::{Fleet, Stats, VirtualNode};
use skr8tr_proto::wire::PingReply;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::AsyncBufReadExt;

const USAGE: &str = "usage: skr8tr-sim --conductor URL --pin PIN --conductor-key PUB \
--operator-key SEC [--nodes N] [--prefix NAME] [--heartbeat 1s] [--ready-after 100ms] [--full-reports]";

struct Args {
    conductor: String,
    pin: String,
    conductor_key: String,
    operator_key: String,
    nodes: usize,
    prefix: String,
    heartbeat: Duration,
    ready_after: Duration,
    full_reports: bool,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        conductor: String::new(),
        pin: String::new(),
        conductor_key: String::new(),
        operator_key: String::new(),
        nodes: 10,
        prefix: "sim".into(),
        heartbeat: Duration::from_secs(1),
        ready_after: Duration::from_millis(100),
        full_reports: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let duration = |v: String| skr8tr_proto::manifest::parse_duration(&v);
        match flag.as_str() {
            "--conductor" => a.conductor = value()?,
            "--pin" => a.pin = value()?,
            "--conductor-key" => a.conductor_key = value()?,
            "--operator-key" => a.operator_key = value()?,
            "--nodes" => a.nodes = value()?.parse().map_err(|e| format!("--nodes: {e}"))?,
            "--prefix" => a.prefix = value()?,
            "--heartbeat" => a.heartbeat = duration(value()?)?,
            "--ready-after" => a.ready_after = duration(value()?)?,
            "--full-reports" => a.full_reports = true,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if a.conductor.is_empty()
        || a.pin.is_empty()
        || a.conductor_key.is_empty()
        || a.operator_key.is_empty()
    {
        return Err("--conductor, --pin, --conductor-key and --operator-key are needed".into());
    }
    Ok(a)
}

fn main() {
    let args = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("skr8tr-sim: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(&format!("no runtime: {e}")));
    rt.block_on(run(args));
}

fn fail(msg: &str) -> ! {
    eprintln!("skr8tr-sim: {msg}");
    std::process::exit(1)
}

async fn run(args: Args) {
    let pin = skr8tr_net::Pin::from_arg(&args.pin).unwrap_or_else(|e| fail(&e.to_string()));
    let conductor_key =
        skr8tr_proto::keys::read_public_key(std::path::Path::new(&args.conductor_key))
            .unwrap_or_else(|e| fail(&e.to_string()));
    let operator = skr8tr_proto::keys::read_secret_key(std::path::Path::new(&args.operator_key))
        .unwrap_or_else(|e| fail(&e.to_string()));
    let anonymous =
        skr8tr_net::Client::new(&args.conductor, pin).unwrap_or_else(|e| fail(&e.to_string()));
    let ping: PingReply = match anonymous.get("/v1/ping", Duration::from_secs(10)).await {
        Ok((s, body)) if s.is_success() => {
            skr8tr_proto::wire::decode(&body).unwrap_or_else(|e| fail(&format!("ping answer: {e}")))
        }
        Ok((s, _)) => fail(&format!("ping: HTTP {s}")),
        Err(e) => fail(&format!("ping: {e}")),
    };
    let fleet = Arc::new(Fleet {
        url: args.conductor.clone(),
        pin,
        conductor_key,
        operator,
        cluster: ping.cluster,
        heartbeat: args.heartbeat,
        ready_after: args.ready_after,
        full_reports: args.full_reports,
        stats: Stats::default(),
    });
    let mut nodes: Vec<Arc<VirtualNode>> = Vec::new();
    add(&fleet, &mut nodes, &args.prefix, args.nodes);
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut stdin_open = true;
    loop {
        tokio::select! {
            _ = tick.tick() => status(&fleet, &nodes),
            line = lines.next_line(), if stdin_open => match line {
                Ok(Some(l)) => {
                    let mut w = l.split_whitespace();
                    let n = w.nth(1).and_then(|n| n.parse().ok()).unwrap_or(0);
                    match l.split_whitespace().next() {
                        Some("add") => add(&fleet, &mut nodes, &args.prefix, n),
                        Some("stop") => {
                            for node in nodes.iter().filter(|x| !x.stopped()).take(n) {
                                node.stop();
                            }
                        }
                        Some("quit") => return,
                        _ => eprintln!("skr8tr-sim: commands are `add K`, `stop K`, `quit`"),
                    }
                }
                _ => stdin_open = false,
            },
        }
    }
}

fn add(fleet: &Arc<Fleet>, nodes: &mut Vec<Arc<VirtualNode>>, prefix: &str, n: usize) {
    for _ in 0..n {
        let name = format!("{prefix}-{}", nodes.len());
        match VirtualNode::new(fleet.clone(), name) {
            Ok(node) => {
                tokio::spawn(node.clone().run());
                nodes.push(node);
            }
            Err(e) => fail(&format!("a node key: {e}")),
        }
    }
}

fn status(fleet: &Fleet, nodes: &[Arc<VirtualNode>]) {
    let (mut live, mut replicas, mut ready) = (0, 0, 0);
    for n in nodes.iter().filter(|n| !n.stopped()) {
        live += 1;
        let (r, y) = n.counts();
        replicas += r;
        ready += y;
    }
    let (samples, p50, p99) = fleet.stats.take_percentiles();
    println!(
        "sim nodes={} live={live} replicas={replicas} ready={ready} reports={} errors={} samples={samples} p50_us={p50} p99_us={p99} cpu_ms={}",
        nodes.len(),
        fleet.stats.reports.load(Ordering::Relaxed),
        fleet.stats.errors.load(Ordering::Relaxed),
        skr8tr_chaos_tests::procs::cpu_ms(std::process::id()).unwrap_or(0),
    );
}
