//! `store-writer DIR PREFIX THREADS`: commits signed commands to the store
//! in DIR from THREADS threads until killed, printing `ack APP SEQ` after
//! each commit returns. Exits 3 if the store cannot be opened.

// Test tooling: a failed expectation here is a failed test or benchmark,
// and `expect` says which.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use skr8tr_chaos_tests::workload;
use skr8tr_store::{Options, Outcome, Store};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: store-writer DIR PREFIX THREADS");
        std::process::exit(2);
    }
    let dir = PathBuf::from(&args[1]);
    let prefix = args[2].clone();
    let threads: usize = args[3].parse().unwrap_or(4);
    let store = match Store::open(&dir, Options::default()) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(3);
        }
    };
    println!("ready");
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let store = store.clone();
            let prefix = prefix.clone();
            std::thread::spawn(move || {
                let key = workload::operator_key();
                let cluster = store.cluster_id();
                for k in 0.. {
                    let app = format!("{prefix}-t{t}-{k}");
                    let entry = workload::signed_entry(&key, cluster, &app, k);
                    let name = app.clone();
                    match store.command(entry, move |tx| workload::write_app(tx, &name)) {
                        Ok(Outcome::Accepted { seq, .. }) => {
                            let mut out = std::io::stdout().lock();
                            let _ = writeln!(out, "ack {app} {seq}");
                            let _ = out.flush();
                        }
                        Ok(Outcome::Rejected { refusal, .. }) => {
                            eprintln!("rejected {app}: {}", refusal.message);
                            std::process::exit(4);
                        }
                        Err(e) => {
                            eprintln!("error {app}: {e}");
                            std::process::exit(5);
                        }
                    }
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
}
