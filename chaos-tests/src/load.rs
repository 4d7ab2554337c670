//! A load generator for tests and benchmarks: round-robin GETs through
//! the ingress or over the endpoints the conductor lists, counting
//! successes and recording every failure.

use skr8tr_net::Client;
use skr8tr_proto::wire::{self, ReplicaState, ReplicaView};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::harness::wait_for;

/// A load generator: round-robin GETs over the endpoints the conductor
/// lists as ready and not draining (refreshed every 50 ms), until stopped.
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Requests answered with a success so far.
    served: std::sync::Arc<std::sync::atomic::AtomicU64>,
    thread: Option<std::thread::JoinHandle<LoadReport>>,
}

#[derive(Debug, Default)]
pub struct LoadReport {
    pub ok: u64,
    pub failed: Vec<String>,
    /// When each failure happened, in order.
    pub failed_at: Vec<Instant>,
    /// Response bodies' `version=` in the order seen.
    pub versions: Vec<String>,
}

impl Load {
    /// Load through one address (the ingress) instead of the endpoints.
    pub fn through(addr: &str) -> Load {
        Load::through_path(addr, "/")
    }

    /// Load on `path` through one address (an ingress route).
    pub fn through_path(addr: &str, path: &str) -> Load {
        Load::spawn(None, Some(addr.to_string()), path.to_string())
    }

    /// Load over the endpoints `conductor` (an operator's client) lists
    /// for `app`.
    pub fn start(conductor: Client, app: &str) -> Load {
        Load::spawn(Some((conductor, app.to_string())), None, "/".into())
    }

    /// Requests answered with a success so far.
    pub fn served(&self) -> u64 {
        self.served.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits until `n` more requests than now have been answered with a
    /// success: traffic flowed past this point.
    pub fn wait_served(&self, n: u64, timeout: Duration) {
        let from = self.served();
        wait_for(&format!("{n} more requests served"), timeout, || {
            (self.served() >= from + n).then_some(())
        });
    }

    fn spawn(registry: Option<(Client, String)>, fixed: Option<String>, path: String) -> Load {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let served = std::sync::Arc::new(AtomicU64::new(0));
        let counter = served.clone();
        let (conductor, app) = match registry {
            Some(r) => r,
            None => (
                Client::plain("http://127.0.0.1:1").expect("a fixed URL"),
                String::new(),
            ),
        };
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let mut report = LoadReport::default();
                let mut endpoints: Vec<String> = Vec::new();
                let mut refreshed = Instant::now() - Duration::from_secs(1);
                let mut clients: BTreeMap<String, Client> = BTreeMap::new();
                let mut i = 0usize;
                while !flag.load(Ordering::Relaxed) {
                    if let Some(addr) = &fixed {
                        endpoints = vec![addr.clone()];
                    } else if refreshed.elapsed() >= Duration::from_millis(50) {
                        if let Ok((_, body)) = conductor
                            .get(&format!("/v1/replicas?app={app}"), Duration::from_secs(2))
                            .await
                            && let Ok(list) = wire::decode::<Vec<ReplicaView>>(&body)
                        {
                            endpoints = list
                                .iter()
                                .filter(|r| r.state == Some(ReplicaState::Ready) && !r.draining)
                                .filter_map(|r| Some(format!("{}:{}", r.address, r.port?)))
                                .collect();
                        }
                        refreshed = Instant::now();
                    }
                    if endpoints.is_empty() {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    }
                    let ep = endpoints[i % endpoints.len()].clone();
                    i += 1;
                    let client = clients.entry(ep.clone()).or_insert_with(|| {
                        Client::plain(&format!("http://{ep}")).expect("endpoint URL")
                    });
                    match client.get(&path, Duration::from_secs(5)).await {
                        Ok((status, body)) if status.is_success() => {
                            report.ok += 1;
                            counter.fetch_add(1, Ordering::Relaxed);
                            let body = String::from_utf8_lossy(&body);
                            if let Some(v) = body
                                .split_whitespace()
                                .find_map(|w| w.strip_prefix("version="))
                            {
                                report.versions.push(v.to_string());
                            }
                        }
                        Ok((status, body)) => {
                            report.failed.push(format!(
                                "{ep}: {status}: {}",
                                String::from_utf8_lossy(&body[..body.len().min(120)]).trim()
                            ));
                            report.failed_at.push(Instant::now());
                        }
                        Err(e) => {
                            report.failed.push(format!("{ep}: {e}"));
                            report.failed_at.push(Instant::now());
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                report
            })
        });
        Load {
            stop,
            served,
            thread: Some(thread),
        }
    }

    pub fn stop(mut self) -> LoadReport {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}
