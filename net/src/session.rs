//! The client's half of a session: on a new connection, before any other
//! request, prove the client's key over the TLS exporter
//! (`POST /v1/session`) and, where the conductor's key is pinned, check
//! its proof over the same value. Everything else on the connection is
//! then as authentic as that exchange.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use skr8tr_proto::keys::{PublicKey, SecretKey};
use skr8tr_proto::wire::{
    self, CONTENT_TYPE, ErrorReply, Role, SESSION_PATH, SessionAccepted, SessionHello,
    check_conductor_proof,
};
use std::sync::{Arc, Mutex};

/// Who a client is, for the sessions it opens.
pub struct Auth {
    pub key: Arc<SecretKey>,
    pub role: Role,
    /// A join ticket, sent until a session is accepted (the first one
    /// admits the key).
    pub ticket: Mutex<Option<Vec<u8>>>,
    /// The conductor's key, when pinned (nodes, the ingress): its proof
    /// must check, or the connection is dropped.
    pub conductor: Option<PublicKey>,
}

impl Auth {
    pub fn new(key: Arc<SecretKey>, role: Role) -> Auth {
        Auth {
            key,
            role,
            ticket: Mutex::new(None),
            conductor: None,
        }
    }

    pub fn with_ticket(self, ticket: Option<Vec<u8>>) -> Auth {
        *self.ticket.lock().unwrap_or_else(|p| p.into_inner()) = ticket;
        self
    }

    pub fn with_conductor(mut self, key: PublicKey) -> Auth {
        self.conductor = Some(key);
        self
    }
}

/// Largest session answer read (a signature and a name).
const MAX_ANSWER: usize = 16 * 1024;

pub(crate) async fn open_session(
    sender: &mut SendRequest<Full<Bytes>>,
    authority: &str,
    auth: &Auth,
    exporter: &[u8; 32],
) -> Result<(), String> {
    let ticket = auth
        .ticket
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let hello = SessionHello::sign(&auth.key, auth.role.clone(), ticket, exporter)
        .map_err(|e| format!("cannot sign the session proof: {e}"))?;
    let request = hyper::Request::post(SESSION_PATH)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::CONTENT_TYPE, CONTENT_TYPE)
        .body(Full::new(Bytes::from(wire::encode(&hello))))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body = Limited::new(response.into_body(), MAX_ANSWER)
        .collect()
        .await
        .map_err(|e| format!("unreadable answer: {e}"))?
        .to_bytes();
    if !status.is_success() {
        return Err(
            wire::decode::<ErrorReply>(&body).map_or_else(|_| status.to_string(), |e| e.message)
        );
    }
    let accepted: SessionAccepted =
        wire::decode(&body).map_err(|e| format!("unreadable answer: {e}"))?;
    if let Some(conductor) = &auth.conductor
        && !check_conductor_proof(conductor, exporter, &accepted.proof)
    {
        return Err(format!(
            "it did not prove the pinned conductor key {}: this is not your conductor \
             (or --conductor-key is another cluster's)",
            conductor.fingerprint()
        ));
    }
    auth.ticket.lock().unwrap_or_else(|p| p.into_inner()).take();
    Ok(())
}
