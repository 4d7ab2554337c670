//! `skr8tr-workload`: the replica the cluster tests run. A tiny HTTP/1
//! server on `0.0.0.0:$PORT` (or `--listen ADDR`):
//!
//! - `GET /` (and `/r/…`, for routed prefixes) → `version=V replica=$SKR8TR_REPLICA pid=PID`
//! - `GET /healthz` → 200, or 503 with `--fail-health`
//! - `GET /echo` with `Upgrade: echo` → 101, then every byte is echoed back
//!   (with `--upgrades`)
//!
//! Flags: `--version V` (default v1), `--startup-delay D` (sleep before
//! binding), `--crash-after D` (exit 1 after D), `--fail-health`,
//! `--burn-cpu` (one busy thread), `--burn D` (every `GET /` spins the CPU
//! for D before answering: load that costs CPU, for autoscaling), and `--exit-code N --run-for D` (a job:
//! no server, exit N after D). Durations as manifests write them: `500ms`,
//! `2s`, `1m`.
//!
//! On SIGTERM (or SIGINT) it stops accepting, lets in-flight requests
//! finish (keep-alive connections close after their current request) and
//! exits 0, as a well-behaved service does during a rolling update.
//! Exit codes: 0 stopped, 1 crashed as asked or could not serve, 2 usage.

// Test tooling: a failed expectation here is a failed test or benchmark,
// and `expect` says which.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

/// Longest wait for in-flight requests after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
struct Options {
    version: String,
    listen: Option<String>,
    startup_delay: Duration,
    crash_after: Option<Duration>,
    fail_health: bool,
    burn_cpu: bool,
    /// CPU spent on every `GET /`.
    burn: Option<Duration>,
    exit_code: Option<i32>,
    run_for: Option<Duration>,
    /// Serve `Upgrade` (the `/echo` endpoint); such connections are not
    /// drained on SIGTERM (hyper cannot do both on one connection).
    upgrades: bool,
}

/// What `GET /` and `/healthz` answer.
struct Identity {
    version: String,
    replica: String,
    pid: u32,
    fail_health: bool,
    burn: Option<Duration>,
}

fn main() {
    let opts = match parse_args(std::env::args().skip(1)) {
        Ok(opts) => opts,
        Err(e) => {
            eprintln!("skr8tr-workload: {e}");
            eprintln!(
                "usage: skr8tr-workload [--version V] [--listen ADDR] [--startup-delay D] \
                 [--crash-after D] [--fail-health] [--burn-cpu] [--burn D] [--exit-code N] [--run-for D]"
            );
            std::process::exit(2);
        }
    };
    if opts.burn_cpu {
        std::thread::spawn(|| {
            let mut x = 0u64;
            loop {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        });
    }
    if opts.exit_code.is_some() || opts.run_for.is_some() {
        let code = opts.exit_code.unwrap_or(0);
        let run_for = opts.run_for.unwrap_or_default();
        println!("job version={} running for {run_for:?}", opts.version);
        std::thread::sleep(run_for);
        println!("job done: exit {code}");
        std::process::exit(code);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("skr8tr-workload: cannot start a runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(serve(opts)) {
        eprintln!("skr8tr-workload: {e}");
        std::process::exit(1);
    }
}

async fn serve(opts: Options) -> Result<(), String> {
    if !opts.startup_delay.is_zero() {
        tokio::time::sleep(opts.startup_delay).await;
    }
    let addr = match opts.listen {
        Some(addr) => addr,
        None => match std::env::var("PORT") {
            Ok(port) => format!("0.0.0.0:{port}"),
            Err(_) => return Err("set PORT or pass --listen ADDR".into()),
        },
    };
    let listener = TcpListener::bind(&addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let signal_error = |e: std::io::Error| format!("cannot handle signals: {e}");
    let mut term = signal(SignalKind::terminate()).map_err(signal_error)?;
    let mut int = signal(SignalKind::interrupt()).map_err(signal_error)?;
    let identity = Arc::new(Identity {
        version: opts.version.clone(),
        replica: std::env::var("SKR8TR_REPLICA").unwrap_or_else(|_| "-".into()),
        pid: std::process::id(),
        fail_health: opts.fail_health,
        burn: opts.burn,
    });
    println!("version={} listening on {addr}", identity.version);
    if let Some(after) = opts.crash_after {
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            eprintln!("crashing after {after:?}, as asked");
            std::process::exit(1);
        });
    }
    let graceful = GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, most likely: do not spin.
                    eprintln!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = term.recv() => break,
            _ = int.recv() => break,
        };
        let _ = stream.set_nodelay(true);
        let identity = identity.clone();
        let service = service_fn(move |req| answer(req, identity.clone()));
        let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
        if opts.upgrades {
            tokio::spawn(connection.with_upgrades());
            continue;
        }
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // A client that goes away mid-request is not our problem.
            let _ = connection.await;
        });
    }
    drop(listener);
    println!("stopping: finishing in-flight requests");
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        eprintln!("connections still open after {SHUTDOWN_GRACE:?}; exiting anyway");
    }
    Ok(())
}

async fn answer(
    mut req: Request<Incoming>,
    id: Arc<Identity>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() == "/echo" && req.headers().contains_key(hyper::header::UPGRADE) {
        // An `Upgrade: echo` connection: after the 101, every byte comes back.
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(upgraded) = upgrade.await {
                let (mut r, mut w) = tokio::io::split(TokioIo::new(upgraded));
                let _ = tokio::io::copy(&mut r, &mut w).await;
            }
        });
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        response.headers_mut().insert(
            hyper::header::CONNECTION,
            hyper::header::HeaderValue::from_static("upgrade"),
        );
        response.headers_mut().insert(
            hyper::header::UPGRADE,
            hyper::header::HeaderValue::from_static("echo"),
        );
        return Ok(response);
    }
    if let (Some(burn), "/") = (id.burn, req.uri().path()) {
        // Busy on this thread, as real request handling would be.
        let until = std::time::Instant::now() + burn;
        while std::time::Instant::now() < until {
            std::hint::spin_loop();
        }
    }
    let (status, body) = match req.uri().path() {
        // `/r/…`: what an ingress route (`/r/web:web`) forwards unchanged.
        p if p == "/" || p.starts_with("/r/") => (
            StatusCode::OK,
            format!(
                "version={} replica={} pid={}\n",
                id.version, id.replica, id.pid
            ),
        ),
        "/healthz" if id.fail_health => (StatusCode::SERVICE_UNAVAILABLE, "failing\n".into()),
        "/healthz" => (StatusCode::OK, "ok\n".into()),
        _ => (StatusCode::NOT_FOUND, "not found\n".into()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    Ok(response)
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut opts = Options {
        version: "v1".into(),
        ..Options::default()
    };
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg, None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--version" => opts.version = value()?,
            "--listen" => opts.listen = Some(value()?),
            "--startup-delay" => opts.startup_delay = duration(&value()?)?,
            "--crash-after" => opts.crash_after = Some(duration(&value()?)?),
            "--run-for" => opts.run_for = Some(duration(&value()?)?),
            "--exit-code" => {
                let v = value()?;
                let code = v.parse().map_err(|_| format!("bad exit code `{v}`"))?;
                opts.exit_code = Some(code);
            }
            "--fail-health" => opts.fail_health = true,
            "--upgrades" => opts.upgrades = true,
            "--burn-cpu" => opts.burn_cpu = true,
            "--burn" => opts.burn = Some(duration(&value()?)?),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(opts)
}

/// `500ms`, `2s`, `1m`: durations as manifests write them.
fn duration(s: &str) -> Result<Duration, String> {
    skr8tr_proto::manifest::parse_duration(s).map_err(|e| format!("bad duration: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Result<Options, String> {
        parse_args(s.split_whitespace().map(String::from))
    }

    #[test]
    fn durations() {
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(duration("1m"), Ok(Duration::from_secs(60)));
        // The manifest's syntax: a unit is required, hours are allowed.
        assert_eq!(duration("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["", "3", "ms", "1.5s", "-1s", "99999999999999999999s", "25h"] {
            assert!(duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn flags() {
        let o =
            args("--version v2 --listen=127.0.0.1:9 --startup-delay 5ms --fail-health").unwrap();
        assert_eq!(o.version, "v2");
        assert_eq!(o.listen.as_deref(), Some("127.0.0.1:9"));
        assert_eq!(o.startup_delay, Duration::from_millis(5));
        assert!(o.fail_health && !o.burn_cpu);
        let o = args("--exit-code 3 --run-for 1s --crash-after 2s --burn-cpu").unwrap();
        assert_eq!(
            (o.exit_code, o.run_for),
            (Some(3), Some(Duration::from_secs(1)))
        );
        assert_eq!(o.crash_after, Some(Duration::from_secs(2)));
        assert_eq!(args("").unwrap().version, "v1");
        assert!(args("--version").is_err());
        assert!(args("--exit-code x").is_err());
        assert!(args("--nope").is_err());
    }
}
