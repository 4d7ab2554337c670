//! Sessions. Every API connection is TLS; its first request may be `POST
//! /v1/session`, a [`SessionHello`] proving the client's ML-DSA key over
//! the connection's TLS exporter. The conductor answers with its own
//! proof over the same value, and from then on the connection carries
//! that principal: an operator, a node or an ingress. Each later request
//! checks only that the principal's key is still admitted (a hash lookup),
//! so `key revoke` and `node revoke` take effect on open connections too.
//!
//! What needs what: `ping` nothing; reads an operator; the registry an
//! operator or an ingress; node sync the node itself. Commands prove
//! their signer one by one and need no session.

use super::{ApiError, Peer, body};
use crate::state::Conductor;
use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::Response;
use skr8tr_proto::code::Code;
use skr8tr_proto::envelope::{KeyRing, KeyStatus};
use skr8tr_proto::keys::Fingerprint;
use skr8tr_proto::wire::{self, Role, SessionAccepted, SessionHello};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

/// Failed proofs one connection may send; the last failure closes it.
const MAX_FAILED_PROOFS: u32 = 3;
/// Largest session body read: a public key (1,952 B), a signature
/// (3,309 B), a role and a join ticket (an envelope of a few KiB).
const MAX_HELLO_BYTES: usize = 32 * 1024;

/// Who a session proved to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    Operator(Fingerprint),
    Node { name: String, key: Fingerprint },
    Ingress { name: String, key: Fingerprint },
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Principal::Operator(fp) => write!(f, "operator {fp}"),
            Principal::Node { name, key } => write!(f, "node {name} ({key})"),
            Principal::Ingress { name, key } => write!(f, "ingress {name} ({key})"),
        }
    }
}

/// One connection's session.
pub struct Session {
    exporter: [u8; 32],
    principal: Mutex<Option<Principal>>,
    failures: AtomicU32,
}

impl Session {
    pub fn new(exporter: [u8; 32]) -> Session {
        Session {
            exporter,
            principal: Mutex::new(None),
            failures: AtomicU32::new(0),
        }
    }

    /// A session already proven as `principal` (in-process tests, which
    /// have no TLS connection to prove one on).
    #[cfg(test)]
    pub fn proven(principal: Principal) -> Session {
        let s = Session::new([0; 32]);
        *s.principal.lock().unwrap_or_else(|p| p.into_inner()) = Some(principal);
        s
    }

    fn principal(&self) -> Option<Principal> {
        self.principal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

pub type SessionExt = Option<Extension<Arc<Session>>>;

/// `POST /v1/session`.
pub async fn open(
    State(c): State<Arc<Conductor>>,
    session: SessionExt,
    peer: Option<Extension<Peer>>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let Some(Extension(session)) = session else {
        return Err(ApiError::new(
            Code::BadRequest,
            "sessions are opened over TLS only",
        ));
    };
    if session.principal().is_some() {
        return Err(ApiError::new(
            Code::BadRequest,
            "this connection already has a session",
        ));
    }
    let result = if bytes.len() > MAX_HELLO_BYTES {
        Err(ApiError::new(
            Code::TooLarge,
            format!("a session proof is at most {MAX_HELLO_BYTES} bytes"),
        ))
    } else {
        prove(&c, &session, &bytes, Peer::ip(peer)).await
    };
    let principal = match result {
        Ok(p) => p,
        Err(e) => {
            let failed = session.failures.fetch_add(1, Ordering::Relaxed) + 1;
            let mut response = axum::response::IntoResponse::into_response(e);
            if failed >= MAX_FAILED_PROOFS {
                // Enough tries on one connection: it is closed after this.
                response.headers_mut().insert(
                    axum::http::header::CONNECTION,
                    axum::http::HeaderValue::from_static("close"),
                );
            }
            return Ok(response);
        }
    };
    let exporter = session.exporter;
    let key = c.clone();
    let proof = tokio::task::spawn_blocking(move || wire::conductor_proof(&key.key, &exporter))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    let shown = principal.to_string();
    *session.principal.lock().unwrap_or_else(|p| p.into_inner()) = Some(principal);
    Ok(body(
        StatusCode::OK,
        &SessionAccepted {
            principal: shown,
            proof,
        },
    ))
}

async fn prove(
    c: &Arc<Conductor>,
    session: &Session,
    bytes: &[u8],
    from: std::net::IpAddr,
) -> Result<Principal, ApiError> {
    let hello: SessionHello = wire::decode(bytes)
        .map_err(|e| ApiError::new(Code::BadRequest, format!("not a session proof: {e}")))?;
    // What is cheap to check goes before the signature.
    match &hello.role {
        Role::Operator => {}
        Role::Node(name) | Role::Ingress(name) => super::nodes::check_name(name)?,
    }
    let exporter = session.exporter;
    let checked = hello.clone();
    let key = tokio::task::spawn_blocking(move || checked.verify(&exporter))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| ApiError::new(Code::BadSignature, e))?;
    let fp = key.fingerprint();
    match hello.role {
        Role::Operator => operator_key(c, fp),
        Role::Node(name) => {
            super::admit::admit_session(c, &name, key, hello.ticket, from).await?;
            Ok(Principal::Node { name, key: fp })
        }
        Role::Ingress(name) => {
            let admitted = Role::Ingress(name.clone())
                .admitted_name()
                .unwrap_or_default();
            super::admit::admit_session(c, &admitted, key, hello.ticket, from).await?;
            Ok(Principal::Ingress { name, key: fp })
        }
    }
}

fn operator_key(c: &Conductor, fp: Fingerprint) -> Result<Principal, ApiError> {
    match c.keyring().lookup(&fp) {
        KeyStatus::Active(_) => Ok(Principal::Operator(fp)),
        KeyStatus::Revoked => Err(ApiError::new(
            Code::RevokedKey,
            format!("operator key {fp} was revoked"),
        )),
        KeyStatus::Unknown => Err(ApiError::new(
            Code::UnknownKey,
            format!(
                "key {fp} is not an operator key of this cluster; an operator adds it with \
                 `skr8tr key add FILE.pub`"
            ),
        )),
    }
}

/// The session's principal, if its key is still admitted.
pub fn current(c: &Conductor, session: &SessionExt) -> Result<Principal, ApiError> {
    let principal = session
        .as_ref()
        .and_then(|Extension(s)| s.principal())
        .ok_or_else(|| {
            ApiError::new(
                Code::Unauthenticated,
                "this request needs a proven key: the skr8tr CLI opens a session with your \
                 operator key (~/.skr8tr/signing.key, or --key / SKR8TR_KEY; `skr8tr keygen` \
                 makes one, and an operator adds it with `skr8tr key add`)",
            )
        })?;
    let still = match &principal {
        Principal::Operator(fp) => matches!(c.keyring().lookup(fp), KeyStatus::Active(_)),
        Principal::Node { name, key } => c.node_key(name).is_some_and(|k| k.fingerprint() == *key),
        Principal::Ingress { name, key } => c
            .node_key(&format!("{}{name}", wire::INGRESS_PREFIX))
            .is_some_and(|k| k.fingerprint() == *key),
    };
    if !still {
        return Err(ApiError::new(
            Code::RevokedKey,
            format!("{principal} is no longer admitted to this cluster (revoked or forgotten)"),
        ));
    }
    Ok(principal)
}

/// An operator's session, or why not.
pub fn operator(c: &Conductor, session: &SessionExt) -> Result<Fingerprint, ApiError> {
    match current(c, session)? {
        Principal::Operator(fp) => Ok(fp),
        other => Err(forbidden(&other, "operators")),
    }
}

/// A session allowed to read the registry: an operator's or an ingress's.
pub fn registry_reader(c: &Conductor, session: &SessionExt) -> Result<Principal, ApiError> {
    match current(c, session)? {
        p @ (Principal::Operator(_) | Principal::Ingress { .. }) => Ok(p),
        other => Err(forbidden(&other, "operators and ingresses")),
    }
}

/// Node `name`'s own session, or why not.
pub fn node(c: &Conductor, session: &SessionExt, name: &str) -> Result<(), ApiError> {
    match current(c, session)? {
        Principal::Node { name: n, .. } if n == name => Ok(()),
        other => Err(forbidden(&other, &format!("node `{name}` itself"))),
    }
}

fn forbidden(who: &Principal, allowed: &str) -> ApiError {
    ApiError::new(
        Code::Forbidden,
        format!("{who} may not make this request: it is for {allowed}"),
    )
}
