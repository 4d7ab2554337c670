//! `store-bench [--dir DIR] [--commands N]`: acknowledged commands per
//! second and commit latency of the Skr8tr store — one writer, and 32
//! concurrent writers with group commit off and on — against the peer it
//! is built on: raw redb, one durable insert of the same bytes per commit.
//! Run through `bench/store`.

// Test tooling: a failed expectation here is a failed test or benchmark,
// and `expect` says which.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use redb::{Database, TableDefinition};
use skr8tr_chaos_tests::workload;
use skr8tr_proto::command::ClusterId;
use skr8tr_proto::envelope::Nonce;
use skr8tr_store::{CommandEntry, Options, Outcome, Store};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Figures {
    name: String,
    ops: usize,
    wall: Duration,
    latencies: Vec<Duration>,
    cpu: Duration,
}

impl Figures {
    fn per_sec(&self) -> f64 {
        self.ops as f64 / self.wall.as_secs_f64()
    }

    fn pct(&mut self, p: f64) -> Duration {
        self.latencies.sort();
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[i]
    }

    fn cpu_us_per_op(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.ops as f64
    }
}

/// User + system CPU time of this process so far, from /proc.
fn cpu_time() -> Duration {
    skr8tr_node::process::procfs::cpu_time(std::process::id()).unwrap_or_default()
}

fn fresh(dir: &Path, name: &str) -> PathBuf {
    let d = dir.join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("bench dir");
    d
}

/// Real signed commands, made before timing starts (signing is the
/// conductor's cost, not the store's). Nonces are unique per entry.
fn entries(template: &CommandEntry, n: usize, salt: u32) -> Vec<CommandEntry> {
    (0..n)
        .map(|i| {
            let mut e = template.clone();
            let mut nonce = [0u8; 16];
            nonce[..4].copy_from_slice(&salt.to_le_bytes());
            nonce[4..12].copy_from_slice(&(i as u64).to_le_bytes());
            e.nonce = Nonce(nonce);
            e.time_ms = workload::now_ms();
            e
        })
        .collect()
}

fn store_run(dir: &Path, name: &str, writers: usize, total: usize, max_batch: usize) -> Figures {
    let key = workload::operator_key();
    let cluster = ClusterId([9; 16]);
    let data = fresh(dir, name);
    let options = Options {
        max_batch,
        ..Options::default()
    };
    let store = Arc::new(
        Store::create(
            &data,
            cluster,
            "bench",
            &key.public(),
            workload::now_ms(),
            options,
        )
        .expect("create store"),
    );
    let template = workload::signed_entry(&key, cluster, "bench", 1);
    let per_writer = total / writers;
    let batches: Vec<Vec<CommandEntry>> = (0..writers)
        .map(|w| entries(&template, per_writer, w as u32))
        .collect();
    let cpu0 = cpu_time();
    let start = Instant::now();
    let threads: Vec<_> = batches
        .into_iter()
        .enumerate()
        .map(|(w, batch)| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut lat = Vec::with_capacity(batch.len());
                for (i, e) in batch.into_iter().enumerate() {
                    let app = format!("w{w}-{i}");
                    let t = Instant::now();
                    let outcome = store
                        .command(e, move |tx| workload::write_app(tx, &app))
                        .expect("store works");
                    assert!(
                        matches!(outcome, Outcome::Accepted { .. }),
                        "bench command refused"
                    );
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    let latencies: Vec<Duration> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("writer thread"))
        .collect();
    let wall = start.elapsed();
    let cpu = cpu_time() - cpu0;
    Figures {
        name: name.into(),
        ops: latencies.len(),
        wall,
        latencies,
        cpu,
    }
}

/// The peer: redb itself, one durable commit per insert of an audit-sized
/// value plus the three records, no audit chain, no nonce, no batching.
fn raw_redb_run(dir: &Path, total: usize) -> Figures {
    const T: TableDefinition<u64, &[u8]> = TableDefinition::new("t");
    let data = fresh(dir, "raw-redb");
    let mut builder = Database::builder();
    builder.set_cache_size(4 << 20);
    let db = builder.create(data.join("raw.redb")).expect("create redb");
    let value = vec![0xabu8; 6 * 1024];
    let cpu0 = cpu_time();
    let start = Instant::now();
    let mut latencies = Vec::with_capacity(total);
    for i in 0..total as u64 {
        let t = Instant::now();
        let txn = db.begin_write().expect("begin");
        {
            let mut table = txn.open_table(T).expect("table");
            for k in 0..4 {
                table.insert(i * 4 + k, value.as_slice()).expect("insert");
            }
        }
        txn.commit().expect("commit");
        latencies.push(t.elapsed());
    }
    Figures {
        name: "raw redb (peer), 1 writer".into(),
        ops: total,
        wall: start.elapsed(),
        latencies,
        cpu: cpu_time() - cpu0,
    }
}

fn main() {
    let mut dir = std::env::temp_dir().join("skr8tr-store-bench");
    let mut commands = 3000usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--dir" => dir = PathBuf::from(args.next().expect("--dir DIR")),
            "--commands" => {
                commands = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("--commands N")
            }
            _ => {
                eprintln!("usage: store-bench [--dir DIR] [--commands N]");
                std::process::exit(2);
            }
        }
    }
    let mut runs = vec![
        raw_redb_run(&dir, commands),
        store_run(&dir, "skr8tr store, 1 writer", 1, commands, 128),
        store_run(
            &dir,
            "skr8tr store, 32 writers, group commit off",
            32,
            commands,
            1,
        ),
        store_run(
            &dir,
            "skr8tr store, 32 writers, group commit on",
            32,
            commands,
            128,
        ),
    ];
    println!(
        "{:<45} {:>8} {:>11} {:>10} {:>10} {:>12}",
        "run", "commands", "acked/s", "p50 ms", "p99 ms", "CPU µs/cmd"
    );
    for f in &mut runs {
        let (p50, p99) = (f.pct(0.5), f.pct(0.99));
        println!(
            "{:<45} {:>8} {:>11.0} {:>10.3} {:>10.3} {:>12.0}",
            f.name,
            f.ops,
            f.per_sec(),
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            f.cpu_us_per_op()
        );
    }
    let ratio = |a: usize, b: usize| runs[a].per_sec() / runs[b].per_sec();
    println!();
    println!(
        "store 1 writer / raw redb:              {:.2}x acked/s",
        ratio(1, 0)
    );
    println!(
        "group commit on / off (32 writers):     {:.2}x acked/s",
        ratio(3, 2)
    );
    println!(
        "store 32 writers (group) / raw redb:    {:.2}x acked/s",
        ratio(3, 0)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
