//! Strangers against a daemon's port, as `tests/bounds.rs` and the status
//! page's test send them: heads and bodies a byte a second and held
//! connections, each wave from a loopback address of its own; pipelined
//! floods on one connection; and the checks that the daemon stayed
//! serving, cheap and quiet.

use skr8tr_node::process::procfs;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long each attack lasts while legitimate requests are checked.
pub const UNDER_ATTACK: Duration = Duration::from_secs(8);

#[derive(Clone, Copy)]
pub enum Kind {
    /// A request head, one byte a second.
    TrickleHead,
    /// A whole head announcing a large body, then the body a byte a second.
    TrickleBody,
    /// Connect and hold the connection, reconnecting when it is closed.
    Hold,
}

/// Attackers on their own tasks until dropped; counts what they did.
pub struct Attack {
    stop: Arc<AtomicBool>,
    opened: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Attack {
    pub fn start(target: SocketAddr, waves: &[(&str, Kind, usize)]) -> Attack {
        let stop = Arc::new(AtomicBool::new(false));
        let opened = Arc::new(AtomicU64::new(0));
        let waves: Vec<(IpAddr, Kind, usize)> = waves
            .iter()
            .map(|(ip, k, n)| (ip.parse().unwrap(), *k, *n))
            .collect();
        let (s, o) = (stop.clone(), opened.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let mut tasks = Vec::new();
                for (from, kind, n) in waves {
                    for _ in 0..n {
                        tasks.push(tokio::spawn(attacker(
                            target,
                            from,
                            kind,
                            s.clone(),
                            o.clone(),
                        )));
                    }
                }
                for t in tasks {
                    let _ = t.await;
                }
            });
        });
        Attack {
            stop,
            opened,
            thread: Some(thread),
        }
    }

    pub fn opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }
}

impl Drop for Attack {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn attacker(
    target: SocketAddr,
    from: IpAddr,
    kind: Kind,
    stop: Arc<AtomicBool>,
    opened: Arc<AtomicU64>,
) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(socket) = tokio::net::TcpSocket::new_v4() else {
            return;
        };
        if socket.bind(SocketAddr::new(from, 0)).is_err() {
            return;
        }
        let Ok(Ok(mut s)) =
            tokio::time::timeout(Duration::from_secs(2), socket.connect(target)).await
        else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        opened.fetch_add(1, Ordering::Relaxed);
        let head: &[u8] = match kind {
            Kind::TrickleHead => b"GET /v1/ping HTTP/1.1\r\nhost: x\r\nx-slow: ",
            Kind::TrickleBody => {
                b"POST /v1/commands HTTP/1.1\r\nhost: x\r\ncontent-length: 1000000\r\n\r\n"
            }
            Kind::Hold => b"",
        };
        if s.write_all(head).await.is_err() {
            continue;
        }
        let mut buf = [0u8; 256];
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            match kind {
                Kind::Hold => {
                    // Until the server closes it (or the attack ends).
                    match tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf)).await {
                        Ok(Ok(0)) | Ok(Err(_)) => break,
                        _ => {}
                    }
                }
                Kind::TrickleHead | Kind::TrickleBody => {
                    if s.write_all(b"x").await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The waves every daemon gets: hundreds of slow heads and slow bodies,
/// and a flood of held connections, each from its own address.
pub fn waves() -> Vec<(&'static str, Kind, usize)> {
    vec![
        ("127.0.0.2", Kind::TrickleHead, 150),
        ("127.0.0.3", Kind::TrickleBody, 150),
        ("127.0.0.4", Kind::Hold, 300),
    ]
}

/// What a daemon did while under attack.
pub struct Watched {
    pub cpu_share: f64,
}

/// Runs `legit` every 100 ms for [`UNDER_ATTACK`] and counts its failures;
/// measures `pid`'s CPU meanwhile.
pub fn under_attack(pid: u32, mut legit: impl FnMut() -> Result<(), String>) -> Watched {
    let cpu_before = procfs::cpu_time(pid).unwrap();
    let started = Instant::now();
    let mut failures = Vec::new();
    let mut served = 0;
    while started.elapsed() < UNDER_ATTACK {
        match legit() {
            Ok(()) => served += 1,
            Err(e) => failures.push(e),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let cpu = procfs::cpu_time(pid).unwrap() - cpu_before;
    assert!(
        failures.is_empty(),
        "legitimate requests failed under attack ({served} served): {failures:?}"
    );
    Watched {
        cpu_share: cpu.as_secs_f64() / started.elapsed().as_secs_f64(),
    }
}

pub fn assert_quiet(what: &str, w: &Watched, log: &str) {
    eprintln!(
        "{what} under attack: {:.1}% of a core, log {} bytes",
        w.cpu_share * 100.0,
        log.len()
    );
    assert!(
        w.cpu_share < 0.5,
        "{what} used {:.0}% of a core under attack",
        w.cpu_share * 100.0
    );
    assert!(
        log.len() < 64 * 1024,
        "{what}'s log grew to {} bytes:\n{}",
        log.len(),
        &log[log.len().saturating_sub(2000)..]
    );
}

/// `n` pipelined copies of `request` on one keep-alive connection to
/// `addr`: how many were answered with a status line starting `status`
/// (`b"HTTP/1.1 200 OK"`), within `within`.
pub fn pipelined(
    addr: SocketAddr,
    request: &'static [u8],
    status: &'static [u8],
    n: usize,
    within: Duration,
) -> usize {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut rd, mut wr) = s.into_split();
        // The write half is handed back, not dropped: closing it would
        // end the connection before the last answers are read.
        let writer = tokio::spawn(async move {
            for _ in 0..n / 100 {
                if wr.write_all(&request.repeat(100)).await.is_err() {
                    break;
                }
            }
            wr
        });
        let (mut answered, mut tail) = (0, Vec::new());
        let mut buf = vec![0u8; 64 * 1024];
        let needle = status;
        let _ = tokio::time::timeout(within, async {
            while answered < n {
                let Ok(got) = rd.read(&mut buf).await else {
                    break;
                };
                if got == 0 {
                    break;
                }
                // Count status lines, across read boundaries too.
                tail.extend_from_slice(&buf[..got]);
                answered += tail.windows(needle.len()).filter(|w| *w == needle).count();
                let keep = tail.len().saturating_sub(needle.len() - 1);
                tail.drain(..keep);
            }
        })
        .await;
        drop(writer.await);
        answered
    })
}
