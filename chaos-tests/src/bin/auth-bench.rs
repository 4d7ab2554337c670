//! `auth-bench [--reports N]`: the conductor's CPU per node report spent
//! on authenticating it, before and after per-session authentication,
//! measured in one run on real ML-DSA-65 keys and a real 40-replica
//! report:
//! - before: every report was a signed node request — one ML-DSA verify
//!   over the encoded report, then the decode;
//! - after: a session is proven once per connection (one verify of its
//!   proof, one conductor signature), and each report on it is a decode
//!   and a hash lookup that the node's key is still admitted.
//!
//! Run via `bench/auth`.

// Test tooling: a failed expectation here is a failed benchmark.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use skr8tr_proto::keys::SecretKey;
use skr8tr_proto::wire::{
    self, NodeMessage, NodeReport, ReplicaReport, ReplicaState, Resources, Role, SessionHello,
};
use std::collections::HashMap;
use std::time::Instant;

/// The context node requests were signed under before sessions.
const OLD_NODE_CONTEXT: &[u8] = b"skr8tr/node/v1";

fn report(replicas: usize) -> NodeMessage {
    NodeMessage::Report(NodeReport {
        node: "n1".into(),
        address: "10.0.0.1".into(),
        boot_id: 7,
        assignments_version: 42,
        resources: Resources {
            cpu_millis: 8000,
            ram_bytes: 16 << 30,
            cpu_used_millis: 1234,
            ram_used_bytes: 3 << 30,
        },
        replicas: (0..replicas)
            .map(|i| ReplicaReport {
                replica: format!("app{}/3/{}", i % 10, i),
                app: format!("app{}", i % 10),
                generation: 3,
                state: ReplicaState::Ready,
                pid: Some(10_000 + i as u32),
                port: Some(20_000 + i as u16),
                restarts: 0,
                started_at_ms: 1_800_000_000_000,
                cpu_millis: 12,
                rss_bytes: 40 << 20,
                error: None,
            })
            .collect(),
        logs_port: Some(40_000),
        limits: Some("cgroup v1".into()),
        labels: vec![("zone".into(), "a".into())],
        wasm: false,
        leaving: false,
        logs_pin: Some([7; 32]),
        clock_ms: 1_800_000_000_000,
    })
}

fn main() {
    let n: usize = std::env::args()
        .skip_while(|a| a != "--reports")
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let node = SecretKey::from_seed(&[1; 32]);
    let conductor = SecretKey::from_seed(&[2; 32]);
    let public = node.public();
    let body = wire::encode(&report(40));
    let signature = node.sign(&body, OLD_NODE_CONTEXT).unwrap();

    // Before: verify + decode, per report.
    let t = Instant::now();
    for _ in 0..n {
        assert!(public.verify(&body, OLD_NODE_CONTEXT, &signature));
        let _: NodeMessage = wire::decode(&body).unwrap();
    }
    let before = t.elapsed().as_secs_f64() * 1e3 / n as f64;

    // After: decode + the admitted-key check, per report.
    let admitted: HashMap<String, _> = [("n1".to_string(), public.fingerprint())].into();
    let fp = public.fingerprint();
    let t = Instant::now();
    for _ in 0..n {
        assert_eq!(admitted.get("n1"), Some(&fp));
        let _: NodeMessage = wire::decode(&body).unwrap();
    }
    let after = t.elapsed().as_secs_f64() * 1e3 / n as f64;

    // Once per connection: verify the node's proof, sign the conductor's.
    let exporter = [9u8; 32];
    let hello = SessionHello::sign(&node, Role::Node("n1".into()), None, &exporter).unwrap();
    let sessions = (n / 20).max(20);
    let t = Instant::now();
    for _ in 0..sessions {
        assert_eq!(hello.verify(&exporter).unwrap(), public);
        let _ = wire::conductor_proof(&conductor, &exporter).unwrap();
    }
    let session = t.elapsed().as_secs_f64() * 1e3 / sessions as f64;

    println!(
        "conductor CPU per node report (40 replicas, {} bytes), {n} reports:",
        body.len()
    );
    println!("  before (signed node requests: verify + decode)   {before:.4} ms");
    println!("  after  (on a session: decode + key check)        {after:.4} ms");
    println!(
        "  ratio before/after                               {:.0}x",
        before / after
    );
    println!("  per connection (verify a proof, sign our own)    {session:.3} ms");
    println!(
        "  at 1 report/s per node: 1000 nodes cost {:.1}% of a core before, {:.2}% after",
        before * 1000.0 / 10.0,
        after * 1000.0 / 10.0
    );
}
