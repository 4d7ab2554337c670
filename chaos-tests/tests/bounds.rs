//! Issue 10's behaviour with real sockets: slow and flooding clients
//! against the conductor, a node's log endpoint, the ingress and the
//! static file server, each started with a small open-file limit
//! (`prlimit`). Attackers connect from loopback addresses of their own
//! (127.0.0.2 and up), as a stranger on the network would; legitimate
//! requests come from 127.0.0.1 and must be served throughout, the
//! daemon's CPU must stay low, its log small, and no healthy replica may
//! be restarted.

use skr8tr_chaos_tests::attack::{Attack, Kind, assert_quiet, pipelined, under_attack, waves};
use skr8tr_chaos_tests::harness::{
    Cluster, Load, Options, free_port, peak_rss_kib, skr8tr_bin, wait_for,
};
use skr8tr_node::process::procfs;
use skr8tr_proto::wire::ReplicaState;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(60);
/// The open-file limit every daemon under attack runs with.
const FILE_LIMIT: u32 = 256;

#[test]
fn slow_and_flooding_clients_do_not_stop_the_conductor() {
    let c = Cluster::start_with(
        "bounds-conductor",
        Options {
            file_limit: Some(FILE_LIMIT),
            ..Options::default()
        },
    );
    let target: SocketAddr = format!("127.0.0.1:{}", c.port).parse().unwrap();
    let attack = Attack::start(target, &waves());
    wait_for("the attack to be under way", WAIT, || {
        (attack.opened() > 200).then_some(())
    });
    let pid = c.conductor_pid().unwrap();
    let watched = under_attack(pid, || {
        c.ping()
            .map(|_| ())
            .ok_or_else(|| "ping failed".to_string())?;
        let out = c.skr8tr(&["status"]);
        out.status
            .success()
            .then_some(())
            .ok_or_else(|| String::from_utf8_lossy(&out.stderr).into_owned())
    });
    let opened = attack.opened();
    drop(attack);
    assert!(
        opened > 300,
        "the attackers kept coming back: {opened} connections"
    );
    assert_quiet("the conductor", &watched, &c.log("conductor.log"));
    let log = c.log("conductor.log");
    assert!(
        log.contains("the cap per address"),
        "the cap was reached and said so"
    );
}

#[test]
fn an_attacked_log_endpoint_costs_no_probe_and_no_replica() {
    let mut c = Cluster::start("bounds-node");
    c.options_mut().file_limit = Some(FILE_LIMIT);
    c.start_node("n1");
    let m = c.manifest(
        "web.skr8tr",
        "app web\n  exec {workload}\n  replicas 2\n  health {\n    check GET /healthz 200\n    interval 200ms\n    timeout 150ms\n  }\n",
    );
    c.ok(&["up", m.to_str().unwrap()]);
    let before = c.wait_ready("web", 2, WAIT);
    let logs: SocketAddr = wait_for("the node's log endpoint", WAIT, || {
        c.log("node-n1.log")
            .split("logs=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|addr| addr.parse().ok())
    });
    let attack = Attack::start(logs, &waves());
    wait_for("the attack to be under way", WAIT, || {
        (attack.opened() > 200).then_some(())
    });
    let pid = c.node_pid("n1").unwrap();
    let watched = under_attack(pid, || {
        let r = c.replicas("web");
        if r.len() != 2
            || r.iter()
                .any(|r| r.state != Some(ReplicaState::Ready) || r.restarts != 0)
        {
            return Err(format!("replicas: {r:?}"));
        }
        Ok(())
    });
    // The conductor's own log requests still get through.
    let out = c.ok(&["logs", "web"]);
    assert!(out.contains("listening on"), "{out}");
    drop(attack);
    assert_quiet("the node", &watched, &c.log("node-n1.log"));
    let after = c.replicas("web");
    let pids = |v: &[skr8tr_proto::wire::ReplicaView]| {
        let mut p: Vec<u32> = v.iter().filter_map(|r| r.pid).collect();
        p.sort();
        p
    };
    assert_eq!(pids(&after), pids(&before), "no replica was restarted");
}

#[test]
fn slow_and_flooding_clients_do_not_stop_the_ingress() {
    let mut c = Cluster::start("bounds-ingress");
    c.start_node("n1");
    let m = c.manifest(
        "web.skr8tr",
        "app web\n  exec {workload}\n  replicas 2\n  health { check GET /healthz 200 }\n",
    );
    c.ok(&["up", m.to_str().unwrap()]);
    c.wait_ready("web", 2, WAIT);
    c.options_mut().file_limit = Some(FILE_LIMIT);
    // The access log has a line per request, the attackers' included, as
    // nginx's does; what must stay small is everything else.
    let ingress = c.start_ingress_with(&["/:web"], &["--access-log", "false"]);
    let load = Load::through(&ingress);
    load.wait_served(20, WAIT);
    let attack = Attack::start(ingress.parse().unwrap(), &waves());
    wait_for("the attack to be under way", WAIT, || {
        (attack.opened() > 200).then_some(())
    });
    let pid = c.ingress_pid().unwrap();
    let watched = under_attack(pid, || {
        let served = load.served();
        wait_for(
            "requests through the ingress",
            Duration::from_secs(5),
            || (load.served() > served).then_some(()),
        );
        Ok(())
    });
    drop(attack);
    let report = load.stop();
    assert!(
        report.failed.is_empty(),
        "{:?}",
        &report.failed[..report.failed.len().min(5)]
    );
    assert_quiet("the ingress", &watched, &c.log("ingress.log"));
}

/// `skr8tr serve-static` on `dir`, as a node starts it, with `limit` open
/// files at most; its pid and address.
fn static_server(
    dir: &std::path::Path,
    limit: u32,
    log: &std::path::Path,
) -> (std::process::Child, SocketAddr) {
    let port = free_port();
    let child = std::process::Command::new("prlimit")
        .arg(format!("--nofile={limit}:{limit}"))
        .arg("--")
        .arg(skr8tr_bin())
        .args([
            "serve-static",
            &dir.display().to_string(),
            "--port",
            &port.to_string(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_for("the static server", WAIT, || {
        std::net::TcpStream::connect(addr).ok().map(|_| ())
    });
    (child, addr)
}

/// One HTTP/1.1 request on a fresh connection: the response head, and how
/// many body bytes followed (the body itself is not kept).
async fn fetch(addr: SocketAddr, request: String) -> (String, u64) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut body = 0u64;
    let mut in_body = false;
    loop {
        let n = s.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        if in_body {
            body += n as u64;
            continue;
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            body = (head.len() - i - 4) as u64;
            head.truncate(i);
            in_body = true;
        }
    }
    (String::from_utf8_lossy(&head).into_owned(), body)
}

#[test]
fn the_static_server_streams_big_files_in_constant_memory_with_range_and_head() {
    let dir = std::env::temp_dir().join(format!("skr8tr-static-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    const BIG: u64 = 300 << 20;
    std::fs::File::create(dir.join("big.bin"))
        .unwrap()
        .set_len(BIG)
        .unwrap();
    std::fs::write(dir.join("small.txt"), "0123456789").unwrap();
    std::fs::write(dir.join(".env"), "SECRET=1").unwrap();
    let fifo = std::process::Command::new("mkfifo")
        .arg(dir.join("pipe"))
        .status()
        .unwrap();
    assert!(fifo.success());
    let log = dir.join("../skr8tr-static.log");
    let (mut server, addr) = static_server(&dir, 1024, &log);
    let pid = server.id();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let get = |path: &str, extra: &str| {
            format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n{extra}\r\n")
        };
        let downloads: Vec<_> = (0..6)
            .map(|_| tokio::spawn(fetch(addr, get("/big.bin", ""))))
            .collect();
        for d in downloads {
            let (head, body) = d.await.unwrap();
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            assert_eq!(body, BIG, "the whole file, six times at once");
        }
        let (head, body) = fetch(addr, get("/small.txt", "range: bytes=2-5\r\n")).await;
        assert!(head.starts_with("HTTP/1.1 206"), "{head}");
        assert!(
            head.to_lowercase().contains("content-range: bytes 2-5/10"),
            "{head}"
        );
        assert_eq!(body, 4);
        let (head, _) = fetch(addr, get("/small.txt", "range: bytes=20-\r\n")).await;
        assert!(head.starts_with("HTTP/1.1 416"), "{head}");
        let head_req = "HEAD /big.bin HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".to_string();
        let (head, body) = fetch(addr, head_req).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(
            head.to_lowercase()
                .contains(&format!("content-length: {BIG}")),
            "{head}"
        );
        assert_eq!(body, 0, "HEAD sends no body");
        let (head, _) = fetch(addr, get("/.env", "")).await;
        assert!(
            head.starts_with("HTTP/1.1 404"),
            "dotfiles stay hidden: {head}"
        );
        let (head, _) = fetch(addr, get("/pipe", "")).await;
        assert!(
            head.starts_with("HTTP/1.1 404"),
            "a FIFO is not served: {head}"
        );
    });
    let hwm = peak_rss_kib(pid);
    assert!(hwm < 32 * 1024, "peak RSS {hwm} KiB serving 6 x 300 MB");
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn out_of_file_descriptors_the_static_server_backs_off_instead_of_spinning() {
    let dir = std::env::temp_dir().join(format!("skr8tr-static-emfile-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.html"), "hi").unwrap();
    let log = dir.join("server.log");
    // Room for a handful of connections, then accept fails with EMFILE.
    let (mut server, addr) = static_server(&dir, 16, &log);
    let pid = server.id();
    let attack = Attack::start(
        addr,
        &[("127.0.0.5", Kind::Hold, 40), ("127.0.0.6", Kind::Hold, 40)],
    );
    wait_for("the attack to be under way", WAIT, || {
        (attack.opened() > 20).then_some(())
    });
    let cpu_before = procfs::cpu_time(pid).unwrap();
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(5));
    let cpu = (procfs::cpu_time(pid).unwrap() - cpu_before).as_secs_f64()
        / started.elapsed().as_secs_f64();
    drop(attack);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(cpu < 0.5, "spinning at {:.0}% of a core", cpu * 100.0);
    let complaints = text
        .lines()
        .filter(|l| l.contains("cannot accept") || l.contains("closing new ones"))
        .count();
    assert!(
        complaints <= 4,
        "logged once per interval, not once per try:\n{text}"
    );
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_metrics_port_holds_against_floods_slow_heads_and_ten_thousand_scrapes() {
    let port = free_port();
    let c = Cluster::start_with(
        "bounds-metrics",
        Options {
            file_limit: Some(FILE_LIMIT),
            conductor_args: vec!["--metrics-listen".into(), format!("127.0.0.1:{port}")],
            ..Options::default()
        },
    );
    let target: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let pid = c.conductor_pid().unwrap();
    // 10,000 scrapes on one connection: all answered, at a bounded cost
    // (a page is made at most every 500 ms, whatever the rate).
    let cpu_before = procfs::cpu_time(pid).unwrap();
    let answered = pipelined(
        target,
        b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n",
        b"HTTP/1.1 200 OK",
        10_000,
        Duration::from_secs(120),
    );
    assert_eq!(answered, 10_000, "every pipelined scrape is answered");
    let cpu = procfs::cpu_time(pid).unwrap() - cpu_before;
    eprintln!("10,000 scrapes cost the conductor {cpu:?} of CPU");
    assert!(
        cpu < Duration::from_secs(10),
        "10,000 scrapes cost {cpu:?} of CPU"
    );
    // Strangers trickling heads and holding connections from addresses of
    // their own take at most 4 slots each; Prometheus on 127.0.0.1 still
    // scrapes, and the API is untouched.
    let attack = Attack::start(target, &waves());
    wait_for("the attack to be under way", WAIT, || {
        (attack.opened() > 12).then_some(())
    });
    let watched = under_attack(pid, || {
        let (status, page) = skr8tr_chaos_tests::harness::http_get(&target.to_string(), "/metrics")
            .ok_or_else(|| "scrape failed".to_string())?;
        if status != 200 || !page.contains("skr8tr_conductor_nodes") {
            return Err(format!("scrape answered {status}"));
        }
        c.ping()
            .map(|_| ())
            .ok_or_else(|| "ping failed".to_string())
    });
    drop(attack);
    assert_quiet(
        "the conductor's metrics port",
        &watched,
        &c.log("conductor.log"),
    );
    assert!(
        c.log("conductor.log").contains("the cap per address"),
        "the per-address cap was reached and said so"
    );
}
