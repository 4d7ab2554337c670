//! `skr8tr serve-static DIR --port N`: the static file server behind a
//! manifest's `serve { static DIR }`. The node starts it like any replica;
//! it answers GET and HEAD with files under DIR (`index.html` for a
//! directory) and never anything outside DIR.

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::{IpAddr, SocketAddr};
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct Args {
    /// The directory to serve
    dir: PathBuf,
    #[arg(long, env = "PORT")]
    port: u16,
    #[arg(long, default_value = "0.0.0.0")]
    host: IpAddr,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let root = Arc::new(
        args.dir
            .canonicalize()
            .with_context(|| format!("cannot serve {}", args.dir.display()))?,
    );
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(async move {
            let addr = SocketAddr::new(args.host, args.port);
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?;
            println!("serving {} on {addr}", root.display());
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    _ = crate::shutdown_signal() => break,
                };
                let Ok((stream, _)) = accepted else { continue };
                let root = root.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let root = root.clone();
                        async move { Ok::<_, std::convert::Infallible>(answer(&root, &req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            anyhow::Ok(())
        })?;
    Ok(ExitCode::SUCCESS)
}

async fn answer(root: &Path, req: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD");
    }
    let Some(path) = resolve(root, req.uri().path()) else {
        return plain(StatusCode::NOT_FOUND, "not found");
    };
    match tokio::fs::read(&path).await {
        Ok(bytes) => {
            let body = if req.method() == Method::HEAD {
                Bytes::new()
            } else {
                Bytes::from(bytes)
            };
            let mut r = Response::new(Full::new(body));
            if let Ok(v) = hyper::header::HeaderValue::from_str(content_type(&path)) {
                r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
            }
            r
        }
        Err(_) => plain(StatusCode::NOT_FOUND, "not found"),
    }
}

/// The file a request path names under `root`, or `None` if it would
/// leave `root` (no `..`, no absolute paths, no symlink escapes).
fn resolve(root: &Path, request_path: &str) -> Option<PathBuf> {
    let relative = Path::new(request_path.trim_start_matches('/'));
    if relative
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        return None;
    }
    let mut path = root.join(relative);
    if path.is_dir() {
        path.push("index.html");
    }
    let real = path.canonicalize().ok()?;
    real.starts_with(root).then_some(real)
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css",
        "js" => "text/javascript",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_never_leave_the_root() {
        let root = std::env::temp_dir().join(format!("skr8tr-serve-{}", std::process::id()));
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("index.html"), "hi").unwrap();
        std::fs::write(root.join("sub/a.css"), "x").unwrap();
        let root = root.canonicalize().unwrap();
        assert_eq!(resolve(&root, "/"), Some(root.join("index.html")));
        assert_eq!(resolve(&root, "/sub/a.css"), Some(root.join("sub/a.css")));
        assert_eq!(resolve(&root, "/../etc/passwd"), None);
        assert_eq!(resolve(&root, "/sub/../../x"), None);
        assert_eq!(resolve(&root, "/missing"), None);
        assert_eq!(content_type(Path::new("a.css")), "text/css");
        let _ = std::fs::remove_dir_all(&root);
    }
}
