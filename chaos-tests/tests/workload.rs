//! `skr8tr-workload` as the cluster tests use it: started with `PORT` set,
//! answering `/` and `/healthz`, failing health on demand, behaving as a job,
//! and stopping cleanly on SIGTERM.

use skr8tr_chaos_tests::harness::free_port;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const WORKLOAD: &str = env!("CARGO_BIN_EXE_skr8tr-workload");
const DEADLINE: Duration = Duration::from_secs(20);

/// Starts the workload with `PORT` set and waits until it accepts.
fn start(args: &[&str]) -> (Child, u16) {
    let port = free_port();
    let mut child = Command::new(WORKLOAD)
        .args(args)
        .env("PORT", port.to_string())
        .env("SKR8TR_REPLICA", "web/1/0")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + DEADLINE;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the workload exited: {status}");
        }
        assert!(Instant::now() < deadline, "the workload never listened");
        std::thread::sleep(Duration::from_millis(5));
    }
    (child, port)
}

/// One HTTP/1.0 request (the server closes after answering): status, body.
fn get(port: u16, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    let status = reply[9..12].parse().unwrap();
    let body = reply.split_once("\r\n\r\n").unwrap().1.to_string();
    (status, body)
}

fn terminate(child: &mut Child) -> ExitStatus {
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    wait(child)
}

fn wait(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the workload did not exit");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn it_answers_with_its_identity_and_health_then_stops_on_sigterm() {
    let (mut child, port) = start(&["--version", "v7"]);
    let (status, body) = get(port, "/");
    assert_eq!(status, 200);
    assert_eq!(
        body,
        format!("version=v7 replica=web/1/0 pid={}\n", child.id())
    );
    assert_eq!(get(port, "/healthz"), (200, "ok\n".to_string()));
    assert_eq!(get(port, "/nope").0, 404);
    assert_eq!(terminate(&mut child).code(), Some(0));
}

#[test]
fn fail_health_answers_503_but_still_serves() {
    let (mut child, port) = start(&["--fail-health"]);
    assert_eq!(get(port, "/healthz").0, 503);
    let (status, body) = get(port, "/");
    assert_eq!(status, 200);
    assert!(
        body.starts_with("version=v1 replica=web/1/0 pid="),
        "{body}"
    );
    assert_eq!(terminate(&mut child).code(), Some(0));
}

#[test]
fn as_a_job_it_exits_with_the_code_asked_after_running() {
    let began = Instant::now();
    let mut child = Command::new(WORKLOAD)
        .args(["--exit-code", "7", "--run-for", "200ms"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    assert_eq!(wait(&mut child).code(), Some(7));
    assert!(began.elapsed() >= Duration::from_millis(200));
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(out.ends_with("job done: exit 7\n"), "{out}");
}

#[test]
fn startup_delay_and_crash_after() {
    let began = Instant::now();
    let (mut child, _) = start(&["--startup-delay", "300ms", "--crash-after", "300ms"]);
    assert!(
        began.elapsed() >= Duration::from_millis(300),
        "listened before the delay"
    );
    assert_eq!(wait(&mut child).code(), Some(1));
    assert!(began.elapsed() >= Duration::from_millis(600));
}

#[test]
fn listen_overrides_port_and_bad_flags_are_usage_errors() {
    let port = free_port();
    let mut child = Command::new(WORKLOAD)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env_remove("PORT")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + DEADLINE;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "never listened on --listen");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(get(port, "/healthz").0, 200);
    assert_eq!(terminate(&mut child).code(), Some(0));

    let usage = Command::new(WORKLOAD)
        .arg("--bogus")
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(usage.code(), Some(2));
    let no_port = Command::new(WORKLOAD)
        .env_remove("PORT")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(no_port.code(), Some(1));
}
