//! `skr8tr ui` in headless Chromium (Debian's `chromium`): the page is
//! loaded once, then an app is scaled and rolled out; the DOM Chromium
//! holds at the end of its event stream shows the change (and counts the
//! updates it took: no reload), and a screenshot is saved. The listener
//! turns away other Host names and writes.

use skr8tr_chaos_tests::harness::{Cluster, free_port, http_get, wait_for};
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

fn web(version: &str, settle: &str) -> String {
    format!(
        "app web\n  exec {}\n  args --version {version}\n  replicas 2\n  settle {settle}\n  health {{\n    check GET /healthz 200\n    interval 200ms\n  }}\n",
        skr8tr_chaos_tests::harness::workload_bin().display()
    )
}

fn chromium() -> Option<String> {
    ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| {
            Command::new(c)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .map(str::to_string)
}

/// Chromium, headless, on `url`; `extra` says what to write. Waits for
/// the page's event stream to end (virtual time stands still while it
/// is open), then for `budget_ms` of virtual time.
fn headless(browser: &str, url: &str, extra: &[&str], budget_ms: u32) -> std::process::Child {
    Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--window-size=1200,900",
            &format!("--virtual-time-budget={budget_ms}"),
        ])
        .args(extra)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium")
}

fn raw(addr: &str, request: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn the_status_page_shows_replicas_and_a_rollout_change_without_a_reload() {
    let Some(browser) = chromium() else {
        // .ci/run installs it; a developer machine may not have it.
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium is missing on CI"
        );
        eprintln!("skipped: no chromium on PATH (apt install chromium)");
        return;
    };
    let mut c = Cluster::start("ui");
    c.start_node("n1");
    let m = c.manifest("web.skr8tr", &web("v1", "100ms"));
    c.ok(&["up", m.to_str().unwrap(), "--wait"]);

    let addr = format!("127.0.0.1:{}", free_port());
    let mut ui = c
        .command(&[
            "ui",
            "--listen",
            &addr,
            "--every",
            "200ms",
            "--stream-for",
            "6s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // It prints the page's address, token included.
    let mut said = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(ui.stdout.take().unwrap()),
        &mut said,
    )
    .unwrap();
    let url = said
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {said:?}"))
        .to_string();
    let path = url
        .strip_prefix(&format!("http://{addr}"))
        .unwrap()
        .to_string();
    assert!(path.len() > 30, "a token in the path: {path}");
    let first = wait_for("the status page", WAIT, || {
        http_get(&addr, &path)
            .filter(|(s, _)| *s == 200)
            .map(|(_, b)| b)
    });
    // Without the token, nothing.
    let (status, _) = http_get(&addr, "/").unwrap();
    assert_eq!(status, 404);
    assert_eq!(
        first.matches("class=replica data-app=\"web\"").count(),
        2,
        "{first}"
    );
    assert!(!first.contains("rolling out"), "{first}");
    // Read-only, and only for its own name.
    let rebound = raw(
        &addr,
        "GET / HTTP/1.1\r\nHost: evil.example:80\r\nConnection: close\r\n\r\n",
    );
    assert!(rebound.starts_with("HTTP/1.1 403"), "{rebound}");
    let post = raw(
        &addr,
        &format!(
            "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
    );
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    let (_, js) = http_get(&addr, &format!("{path}ui.js")).unwrap();
    assert!(js.contains("EventSource"));
    let cross = raw(
        &addr,
        &format!(
            "GET {path}events HTTP/1.1\r\nHost: {addr}\r\nSec-Fetch-Site: cross-site\r\nConnection: close\r\n\r\n"
        ),
    );
    assert!(cross.starts_with("HTTP/1.1 403"), "{cross}");

    // Chromium loads the page once; meanwhile web grows to 3 and rolls
    // out to v2, slowly (each new replica settles 2 s).
    let dom_run = headless(&browser, &url, &["--dump-dom"], 500);
    std::thread::sleep(Duration::from_secs(2));
    c.ok(&["scale", "web", "3"]);
    std::fs::write(&m, web("v2", "2s").replace("replicas 2", "replicas 3")).unwrap();
    c.ok(&["rollout", m.to_str().unwrap(), "--detach"]);
    let out = dom_run.wait_with_output().unwrap();
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    let updates: u32 = dom
        .split("data-updates=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        updates >= 2,
        "the page changed in place {updates} times:\n{dom}"
    );
    assert!(
        dom.matches("class=\"replica\" data-app=\"web\"").count() >= 3,
        "three or more web replicas shown (new ones surge):\n{dom}"
    );
    // The rollout's steps: in progress in the apps table, or done with
    // each step in the history the page shows.
    assert!(
        dom.contains("rolling out 1 -&gt; 2") || dom.contains("rollout web: step 1/3"),
        "the rollout's step is on the page:\n{dom}"
    );

    // Once it is done, a screenshot of the page as an operator sees it.
    wait_for("the rollout to end", WAIT, || {
        let s = c.ok(&["status"]);
        s.lines()
            .find(|l| l.starts_with("web ") && !l.contains("rolling out") && l.contains("3/3"))
            .map(str::to_string)
    });
    let shot =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/ui-screenshot.png");
    let _ = std::fs::remove_file(&shot);
    let arg = format!("--screenshot={}", shot.display());
    let shot_run = headless(&browser, &url, &[&arg], 500);
    let status = shot_run.wait_with_output().unwrap().status;
    assert!(status.success());
    let png = std::fs::read(&shot).expect("the screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    assert!(png.len() > 10_000, "{} bytes", png.len());
    eprintln!("screenshot: {}", shot.display());
    let _ = ui.kill();
    let _ = ui.wait();
}

/// `skr8tr ui --listen addr`, its stderr in `log`; the page's path.
fn start_ui(c: &Cluster, addr: &str, log: &std::path::Path) -> (std::process::Child, String) {
    let mut ui = c
        .command(&["ui", "--listen", addr])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let mut said = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(ui.stdout.take().unwrap()),
        &mut said,
    )
    .unwrap();
    let path = said
        .split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("http://{addr}")))
        .unwrap_or_else(|| panic!("no address in {said:?}"))
        .to_string();
    (ui, path)
}

#[test]
fn the_status_page_holds_against_strangers_floods_and_slow_heads() {
    use skr8tr_chaos_tests::attack::{Attack, assert_quiet, pipelined, under_attack, waves};
    let c = Cluster::start("ui-bounds");
    let addr = format!("127.0.0.1:{}", free_port());
    let log = c.dir.join("ui.log");
    let (mut ui, path) = start_ui(&c, &addr, &log);
    let target: std::net::SocketAddr = addr.parse().unwrap();
    let pid = ui.id();
    // 10,000 requests on one connection from someone without the token:
    // each answered 404, at a bounded cost.
    let stranger: &'static [u8] = Box::leak(
        format!("GET / HTTP/1.1\r\nhost: {addr}\r\n\r\n")
            .into_bytes()
            .into_boxed_slice(),
    );
    let cpu_before = skr8tr_chaos_tests::harness::cpu_ms(pid).unwrap();
    let answered = pipelined(
        target,
        stranger,
        b"HTTP/1.1 404",
        10_000,
        Duration::from_secs(120),
    );
    assert_eq!(answered, 10_000, "every stranger's request is answered 404");
    let cpu = skr8tr_chaos_tests::harness::cpu_ms(pid).unwrap() - cpu_before;
    eprintln!("10,000 stranger requests cost the status page {cpu} ms of CPU");
    assert!(cpu < 10_000, "{cpu} ms of CPU");
    // Slow heads, slow bodies and held connections from addresses of
    // their own: the operator's page still loads.
    let attack = Attack::start(target, &waves());
    wait_for("the attack to be under way", WAIT, || {
        (attack.opened() > 12).then_some(())
    });
    let watched = under_attack(pid, || match http_get(&addr, &path) {
        Some((200, body)) if body.contains("id=state") => Ok(()),
        other => Err(format!("the page: {other:?}")),
    });
    drop(attack);
    assert_quiet(
        "the status page",
        &watched,
        &std::fs::read_to_string(&log).unwrap(),
    );
    let _ = ui.kill();
    let _ = ui.wait();
}
