//! Helpers beside the cluster: one-off HTTP, a runtime for sync tests,
//! signed command bodies, and what /proc says about a process.

use skr8tr_net::Client;
use skr8tr_proto::wire;
use std::time::Duration;

/// GET `http://addr/path` with the project's HTTP client; status and body.
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let client = Client::plain(&format!("http://{addr}")).ok()?;
    let (status, body) = block_on(client.get(path, Duration::from_secs(2))).ok()?;
    Some((status.as_u16(), String::from_utf8_lossy(&body).into_owned()))
}

/// Runs a future on a throwaway current-thread runtime (tests are sync).
pub fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// `command` signed now by `key` for `cluster`, as a `POST /v1/commands` body.
pub fn signed_request(
    key: &skr8tr_proto::keys::SecretKey,
    cluster: skr8tr_proto::command::ClusterId,
    command: skr8tr_proto::command::Command,
) -> Vec<u8> {
    let envelope =
        skr8tr_proto::envelope::Envelope::sign(key, command, cluster, std::time::SystemTime::now())
            .expect("sign")
            .to_bytes();
    wire::encode(&wire::CommandRequest {
        envelope,
        secrets: vec![],
    })
}

/// A process's peak resident memory (`VmHWM`), KiB.
pub fn peak_rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmHWM:")
}

/// CPU time a process has used so far (user + system), ms, from
/// `/proc/PID/stat` (clock ticks of 10 ms: `CLK_TCK` is 100 on Linux).
pub fn cpu_ms(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks * 10)
}

/// A process's resident memory now (`VmRSS`), KiB.
pub fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Whether a process exists and has not exited (a zombie does not count).
/// A process's memory of its own (`Private_Clean` + `Private_Dirty`) and
/// its proportional share of shared pages (`Pss`), KiB, from
/// `/proc/PID/smaps_rollup`.
pub fn private_and_pss_kib(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (
        field("Private_Clean:") + field("Private_Dirty:"),
        field("Pss:"),
    )
}

pub fn alive(pid: u32) -> bool {
    skr8tr_node::process::procfs::is_running(pid)
}

/// Every live process whose command line (arguments joined by spaces)
/// starts with `prefix`: how a test finds a replica's grandchildren.
pub fn processes_with(prefix: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                String::from_utf8_lossy(&c)
                    .replace('\0', " ")
                    .starts_with(prefix)
            })
        })
        .filter(|pid| alive(*pid))
        .collect()
}

/// A TLS connection to the conductor at `target` that accepts only `pin`,
/// from the local address `from` (for tests that write raw requests, as
/// an attacker would, past the TLS every client must speak).
pub async fn tls_to(
    pin: skr8tr_net::Pin,
    target: std::net::SocketAddr,
    from: &str,
) -> Option<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let socket = tokio::net::TcpSocket::new_v4().ok()?;
    socket.bind(format!("{from}:0").parse().ok()?).ok()?;
    let tcp = socket.connect(target).await.ok()?;
    let config = skr8tr_net::tls::client_config(pin).ok()?;
    tokio_rustls::TlsConnector::from(config)
        .connect(rustls::pki_types::ServerName::from(target.ip()), tcp)
        .await
        .ok()
}

/// SIGKILL to `pid` via the `kill` command (no unsafe in tests); panics
/// if it could not be sent.
pub fn kill9(pid: u32) {
    let ok = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(ok.success(), "kill -9 {pid} failed");
}

/// A self-signed P-256 certificate and key for `subject_alt_name`
/// (`DNS:a.test`, `DNS:localhost,IP:127.0.0.1`), made by openssl in `dir`
/// as `NAME.crt` and `NAME.key`; their paths.
pub fn self_signed(
    dir: &std::path::Path,
    name: &str,
    subject_alt_name: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let (crt, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args([
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
        ])
        .arg(format!("/CN={name}"))
        .arg("-addext")
        .arg(format!("subjectAltName={subject_alt_name}"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .expect("run openssl (.ci/run installs it)");
    assert!(
        made.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    (crt, key)
}
