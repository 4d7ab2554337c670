//! `skr8tr serve-static DIR --port N [--host ADDR]`: the static file
//! server behind a manifest's `serve { static DIR }`. The node starts it
//! like any replica, on its advertised address. It answers GET and HEAD
//! with files under DIR (`index.html` for a directory), never anything
//! outside DIR and no dotfile (`.env`, `.git/`) unless `--dotfiles`.
//! Files are streamed in 64 KiB chunks, so memory per request stays the
//! same whatever their size; one `Range: bytes=…` is honoured (206), and
//! HEAD answers from the file's size without reading it.

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::{Body, Frame, SizeHint};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use skr8tr_net::server::Limits;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncSeekExt, ReadBuf};

#[derive(clap::Args)]
pub struct Args {
    /// The directory to serve
    dir: PathBuf,
    #[arg(long, env = "PORT")]
    port: u16,
    /// The address to listen on (the node passes its advertised one)
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Serve files and directories whose names start with `.`
    #[arg(long)]
    dotfiles: bool,
    /// The listening socket's bounds (defaults: 1024 connections, 64 per
    /// address, 10s header, 60s idle, 10s body timeouts)
    #[command(flatten)]
    bounds: super::listen::ListenFlags,
}

/// Bytes read from a file and sent per chunk.
const CHUNK: usize = 64 * 1024;

fn defaults() -> Limits {
    Limits {
        max_connections: 1024,
        max_per_ip: 64,
        header_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
        body_timeout: Duration::from_secs(10),
        max_header_bytes: 16 * 1024,
        unlimited_sources: Vec::new(),
    }
}

struct Site {
    root: PathBuf,
    dotfiles: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    crate::init_tracing();
    let root = args
        .dir
        .canonicalize()
        .with_context(|| format!("cannot serve {}", args.dir.display()))?;
    let site = Arc::new(Site {
        root,
        dotfiles: args.dotfiles,
    });
    let limits = args.bounds.apply(defaults());
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(async move {
            let addr = SocketAddr::new(args.host, args.port);
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?;
            println!("serving {} on {addr}", site.root.display());
            let http = limits.clone();
            skr8tr_net::server::serve(
                "static files",
                listener,
                limits,
                crate::shutdown_signal(),
                move |io, _peer| {
                    let site = site.clone();
                    let http = http.clone();
                    async move {
                        let service = hyper::service::service_fn(move |req| {
                            let site = site.clone();
                            async move { Ok::<_, std::convert::Infallible>(answer(&site, &req).await) }
                        });
                        let _ = http.http1().serve_connection(TokioIo::new(io), service).await;
                    }
                },
            )
            .await;
            anyhow::Ok(())
        })?;
    Ok(ExitCode::SUCCESS)
}

type Reply = Response<Either<FileBody, Full<Bytes>>>;

async fn answer(site: &Site, req: &Request<hyper::body::Incoming>) -> Reply {
    let head = req.method() == Method::HEAD;
    if req.method() != Method::GET && !head {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD");
    }
    let Some(path) = resolve(&site.root, req.uri().path(), site.dotfiles) else {
        return plain(StatusCode::NOT_FOUND, "not found");
    };
    // A regular file only (a FIFO would hold a thread forever), opened
    // without following a link swapped in since it was resolved.
    match tokio::fs::symlink_metadata(&path).await {
        Ok(m) if m.is_file() => {}
        _ => return plain(StatusCode::NOT_FOUND, "not found"),
    }
    let opened = tokio::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path)
        .await;
    let Ok(mut file) = opened else {
        return plain(StatusCode::NOT_FOUND, "not found");
    };
    let len = match file.metadata().await {
        Ok(m) if m.is_file() => m.len(),
        _ => return plain(StatusCode::NOT_FOUND, "not found"),
    };
    let range = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(|v| byte_range(v, len));
    let (status, start, count) = match range {
        None | Some(Range::Ignored) => (StatusCode::OK, 0, len),
        Some(Range::Unsatisfiable) => {
            let mut r = plain(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable");
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return r;
        }
        Some(Range::Bytes { start, end }) => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
    };
    let body = if head || count == 0 {
        Either::Right(Full::new(Bytes::new()))
    } else {
        if start > 0 && file.seek(io::SeekFrom::Start(start)).await.is_err() {
            return plain(StatusCode::INTERNAL_SERVER_ERROR, "cannot read the file");
        }
        Either::Left(FileBody {
            file,
            left: count,
            buf: vec![0; CHUNK].into_boxed_slice(),
        })
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(&path)),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{len}", start + count - 1))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    r
}

/// What a `Range` header asks of a file of `len` bytes.
#[derive(Debug, PartialEq, Eq)]
enum Range {
    /// Bytes `start..=end`.
    Bytes { start: u64, end: u64 },
    /// Past the end: 416.
    Unsatisfiable,
    /// Not one byte range we serve (several ranges, another unit, bad
    /// syntax): the whole file, as RFC 9110 allows.
    Ignored,
}

fn byte_range(value: &str, len: u64) -> Range {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Range::Ignored;
    };
    if spec.contains(',') {
        return Range::Ignored;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Range::Ignored;
    };
    let number = |s: &str| s.trim().parse::<u64>().ok();
    match (a.trim().is_empty(), b.trim().is_empty()) {
        // `-N`: the last N bytes.
        (true, false) => match number(b) {
            Some(0) => Range::Unsatisfiable,
            Some(_) if len == 0 => Range::Unsatisfiable,
            Some(n) => Range::Bytes {
                start: len.saturating_sub(n),
                end: len - 1,
            },
            None => Range::Ignored,
        },
        // `N-`: from N to the end.
        (false, true) => match number(a) {
            Some(start) if start < len => Range::Bytes {
                start,
                end: len - 1,
            },
            Some(_) => Range::Unsatisfiable,
            None => Range::Ignored,
        },
        (false, false) => match (number(a), number(b)) {
            (Some(start), Some(end)) if start <= end && start < len => Range::Bytes {
                start,
                end: end.min(len - 1),
            },
            (Some(start), Some(end)) if start <= end => Range::Unsatisfiable,
            _ => Range::Ignored,
        },
        (true, true) => Range::Ignored,
    }
}

/// A file's bytes, `left` of them, read a chunk at a time as the
/// connection takes them: one buffer per request, whatever the size.
struct FileBody {
    file: tokio::fs::File,
    left: u64,
    buf: Box<[u8]>,
}

impl Body for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if this.left == 0 {
            return Poll::Ready(None);
        }
        let want = usize::try_from(this.left).unwrap_or(usize::MAX).min(CHUNK);
        let mut read = ReadBuf::new(&mut this.buf[..want]);
        match Pin::new(&mut this.file).poll_read(cx, &mut read) {
            Poll::Ready(Ok(())) => {
                let chunk = read.filled();
                if chunk.is_empty() {
                    // Shorter than it was when the request came: end it
                    // as an error, not a silent truncation.
                    return Poll::Ready(Some(Err(io::Error::from(io::ErrorKind::UnexpectedEof))));
                }
                this.left -= chunk.len() as u64;
                Poll::Ready(Some(Ok(Frame::data(Bytes::copy_from_slice(chunk)))))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

/// The file a request path names under `root`, or `None` if it would
/// leave `root` (no `..`, no absolute paths, no symlink escapes) or, unless
/// `dotfiles`, pass through a name starting with `.`.
fn resolve(root: &Path, request_path: &str, dotfiles: bool) -> Option<PathBuf> {
    let relative = Path::new(request_path.trim_start_matches('/'));
    let hidden = |p: &Path| {
        p.components().any(|c| match c {
            Component::Normal(name) => name.to_string_lossy().starts_with('.'),
            _ => false,
        })
    };
    if relative
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
        || (!dotfiles && hidden(relative))
    {
        return None;
    }
    let mut path = root.join(relative);
    if path.is_dir() {
        path.push("index.html");
    }
    let real = path.canonicalize().ok()?;
    let inside = real.strip_prefix(root).ok()?;
    // A link may lead to a dotfile by another name.
    (dotfiles || !hidden(inside)).then_some(real)
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

fn plain(status: StatusCode, text: &'static str) -> Reply {
    let mut r = Response::new(Either::Right(Full::new(Bytes::from_static(
        text.as_bytes(),
    ))));
    *r.status_mut() = status;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_never_leave_the_root_nor_show_dotfiles() {
        let root = std::env::temp_dir().join(format!("skr8tr-serve-{}", std::process::id()));
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::create_dir_all(root.join(".git")).unwrap();
        std::fs::write(root.join("index.html"), "hi").unwrap();
        std::fs::write(root.join("sub/a.css"), "x").unwrap();
        std::fs::write(root.join(".env"), "SECRET=1").unwrap();
        std::fs::write(root.join(".git/config"), "x").unwrap();
        let _ = std::os::unix::fs::symlink(root.join(".env"), root.join("env.txt"));
        let root = root.canonicalize().unwrap();
        assert_eq!(resolve(&root, "/", false), Some(root.join("index.html")));
        assert_eq!(
            resolve(&root, "/sub/a.css", false),
            Some(root.join("sub/a.css"))
        );
        assert_eq!(resolve(&root, "/../etc/passwd", false), None);
        assert_eq!(resolve(&root, "/sub/../../x", false), None);
        assert_eq!(resolve(&root, "/missing", false), None);
        assert_eq!(resolve(&root, "/.env", false), None);
        assert_eq!(resolve(&root, "/.git/config", false), None);
        assert_eq!(
            resolve(&root, "/env.txt", false),
            None,
            "a link to a dotfile"
        );
        assert_eq!(resolve(&root, "/.env", true), Some(root.join(".env")));
        assert_eq!(content_type(Path::new("a.css")), "text/css");
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn one_byte_range_is_served_and_the_rest_is_whole_or_416() {
        use Range::*;
        assert_eq!(byte_range("bytes=0-99", 1000), Bytes { start: 0, end: 99 });
        assert_eq!(
            byte_range("bytes=900-", 1000),
            Bytes {
                start: 900,
                end: 999
            }
        );
        assert_eq!(
            byte_range("bytes=-100", 1000),
            Bytes {
                start: 900,
                end: 999
            }
        );
        assert_eq!(
            byte_range("bytes=-5000", 1000),
            Bytes { start: 0, end: 999 }
        );
        assert_eq!(
            byte_range("bytes=990-5000", 1000),
            Bytes {
                start: 990,
                end: 999
            }
        );
        assert_eq!(byte_range("bytes=1000-", 1000), Unsatisfiable);
        assert_eq!(byte_range("bytes=1000-1001", 1000), Unsatisfiable);
        assert_eq!(byte_range("bytes=-0", 1000), Unsatisfiable);
        assert_eq!(byte_range("bytes=0-1,5-6", 1000), Ignored);
        assert_eq!(byte_range("items=0-1", 1000), Ignored);
        assert_eq!(byte_range("bytes=9-3", 1000), Ignored);
        assert_eq!(byte_range("bytes=x-", 1000), Ignored);
        assert_eq!(byte_range("bytes=-", 1000), Ignored);
        assert_eq!(byte_range("bytes=0-", 0), Unsatisfiable);
    }
}
