//! Routes from manifests (issue 15): apps that declare `host` or `route`
//! are served by a running ingress with no restart, two apps by host
//! name, over plain HTTP and over TLS (SNI picks each host's
//! certificate); a `--route` flag wins over a manifest route with the same
//! prefix; `down` takes an app's route away.

use skr8tr_chaos_tests::harness::{Cluster, wait_for, workload_bin};
use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

fn app(name: &str, routing: &str) -> String {
    format!(
        "app {name}\n  exec {}\n  args --version {name}\n  settle 100ms\n  {routing}\n  health {{\n    check GET /healthz 200\n    interval 200ms\n  }}\n",
        workload_bin().display()
    )
}

/// `GET path` with `Host: host` over plain HTTP: status and body.
fn get(addr: &str, host: &str, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.get(9..12)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// Waits until `host` + `path` is answered by app `want` (its version).
fn served_by(addr: &str, host: &str, path: &str, want: &str) {
    let needle = format!("version={want} ");
    wait_for(&format!("{host}{path} served by {want}"), WAIT, || {
        get(addr, host, path).filter(|(s, b)| *s == 200 && b.contains(&needle))
    });
}

fn cert(dir: &std::path::Path, name: &str) -> (String, String) {
    let (crt, key) = skr8tr_chaos_tests::harness::self_signed(dir, name, &format!("DNS:{name}"));
    (crt.display().to_string(), key.display().to_string())
}

#[test]
fn manifest_routes_are_served_without_a_restart_by_host_and_by_path() {
    let mut c = Cluster::start("routes");
    c.start_node("n1");
    // The ingress starts with one flag route and knows nothing else.
    let ingress = c.start_ingress(&["/r/legacy:alpha"]);
    let pid = c.ingress_pid().unwrap();
    let m = c.manifest(
        "hosts.skr8tr",
        &format!(
            "{}\n{}",
            app("alpha", "host alpha.test"),
            app("beta", "host beta.test")
        ),
    );
    let out = c.ok(&["up", m.to_str().unwrap(), "--wait"]);
    assert!(
        out.contains("alpha: the ingress serves it at host `alpha.test`"),
        "{out}"
    );
    served_by(&ingress, "alpha.test", "/", "alpha");
    served_by(&ingress, "beta.test", "/", "beta");
    served_by(&ingress, "BETA.test:80", "/r/x", "beta");
    // An unknown host has no route (no host-less route for `/`).
    let (status, _) = get(&ingress, "other.test", "/").unwrap();
    assert_eq!(status, 404);

    // A path route, added later; and one the flag already has, which the
    // flag keeps.
    let m2 = c.manifest(
        "paths.skr8tr",
        &format!(
            "{}\n{}",
            app("gamma", "route /r/api"),
            app("delta", "route /r/legacy")
        ),
    );
    c.ok(&["up", m2.to_str().unwrap(), "--wait"]);
    served_by(&ingress, "other.test", "/r/api/users", "gamma");
    served_by(&ingress, "alpha.test", "/r/api", "alpha");
    let (_, body) = get(&ingress, "other.test", "/r/legacy").unwrap();
    assert!(body.contains("version=alpha "), "the flag wins: {body}");
    assert_eq!(c.ingress_pid(), Some(pid), "no restart");
    eprintln!(
        "{}",
        c.log("ingress.log")
            .lines()
            .filter(|l| l.contains("routes:"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // Two apps may not claim one route.
    let clash = c.manifest("clash.skr8tr", &app("epsilon", "route /r/api"));
    let out = c.skr8tr(&["up", clash.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("which app `gamma` already has"), "{err}");

    // `down` takes the route away.
    c.ok(&["down", "gamma"]);
    wait_for("gamma's route gone", WAIT, || {
        get(&ingress, "other.test", "/r/api").filter(|(s, _)| *s == 404)
    });

    // The same hosts over TLS, each with its own certificate.
    skr8tr_chaos_tests::harness::kill9(pid);
    let (a_crt, a_key) = cert(&c.dir, "alpha.test");
    let (b_crt, b_key) = cert(&c.dir, "beta.test");
    let tls = c.start_ingress_with(
        &[],
        &[
            "--tls-cert",
            &a_crt,
            "--tls-key",
            &a_key,
            "--tls-cert",
            &b_crt,
            "--tls-key",
            &b_key,
        ],
    );
    let (ip, port) = tls.rsplit_once(':').unwrap();
    for (host, crt) in [("alpha.test", &a_crt), ("beta.test", &b_crt)] {
        // Trusting only this host's certificate: the handshake succeeds
        // only if SNI picked it.
        let body = wait_for(&format!("https://{host}"), WAIT, || {
            let out = Command::new("curl")
                .args(["-s", "--max-time", "5", "--cacert", crt, "--resolve"])
                .arg(format!("{host}:{port}:{ip}"))
                .arg(format!("https://{host}:{port}/"))
                .output()
                .ok()?;
            let body = String::from_utf8_lossy(&out.stdout).into_owned();
            (out.status.success() && body.contains("version=")).then_some(body)
        });
        let want = host.split('.').next().unwrap();
        assert!(body.contains(&format!("version={want} ")), "{host}: {body}");
    }
}
