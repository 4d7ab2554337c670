//! Keep-alive connections to backends: per backend address, the HTTP/1
//! connections already open. A request takes one that is ready (its last
//! response has been read), or opens a new one; after the response head
//! arrives the connection goes back, and the next taker skips it until its
//! body is done. Leaner than a general-purpose pool: the proxy only ever
//! speaks HTTP/1 to `host:port` backends it already resolved.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Most idle connections kept per backend.
const MAX_PER_BACKEND: usize = 256;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// "Too many open files", for this process (EMFILE) or the system (ENFILE).
const EMFILE: i32 = 24;
const ENFILE: i32 = 23;

type Sender = SendRequest<Full<Bytes>>;

#[derive(Default)]
pub struct Pool {
    idle: Mutex<HashMap<Arc<str>, Vec<Sender>>>,
}

pub enum SendError {
    /// Not sent because this process is out of file descriptors: no fault
    /// of the backend's, so it is not ejected, and no other is tried.
    Local(String),
    /// No request bytes left: safe to try another backend with any method.
    NotSent(String),
    /// The request may have reached the backend.
    Failed(String),
}

impl Pool {
    pub async fn send(
        &self,
        addr: &Arc<str>,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, SendError> {
        let (mut sender, reused) = match self.take(addr) {
            Some(s) => (s, true),
            None => (connect(addr).await?, false),
        };
        match sender.send_request(request).await {
            Ok(response) => {
                self.put(addr, sender);
                Ok(response)
            }
            // A kept connection the backend had closed: nothing was sent.
            Err(e) if reused && e.is_canceled() => Err(SendError::NotSent(e.to_string())),
            Err(e) => Err(SendError::Failed(e.to_string())),
        }
    }

    fn take(&self, addr: &str) -> Option<SendRequest<Full<Bytes>>> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.get_mut(addr)?;
        list.retain(|s| !s.is_closed());
        let i = list.iter().position(|s| s.is_ready())?;
        Some(list.swap_remove(i))
    }

    fn put(&self, addr: &Arc<str>, sender: SendRequest<Full<Bytes>>) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        // The key is shared with the registry's backend: no copy per return.
        if let Some(list) = idle.get_mut(&**addr) {
            if list.len() < MAX_PER_BACKEND {
                list.push(sender);
            }
            return;
        }
        idle.insert(addr.clone(), vec![sender]);
    }
}

async fn connect(addr: &str) -> Result<SendRequest<Full<Bytes>>, SendError> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| SendError::NotSent(format!("connect to {addr} timed out")))?
        .map_err(|e| match e.raw_os_error() {
            Some(libc_emfile) if libc_emfile == EMFILE || libc_emfile == ENFILE => {
                SendError::Local(format!("connect to {addr}: {e}"))
            }
            _ => SendError::NotSent(format!("connect to {addr}: {e}")),
        })?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| SendError::NotSent(e.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}
