//! Sessions: on every new TLS connection to the conductor, the client
//! proves its ML-DSA key once by signing the connection's TLS exporter
//! (a value only the two ends of that session know), and the conductor
//! answers with its own signature over the same value. Requests on that
//! connection then carry no signature of their own: they are as
//! authentic as the session. Operator commands are still signed one by
//! one, because the audit log keeps them as evidence.

use crate::keys::{KeyError, PublicKey, SecretKey};
use serde::{Deserialize, Serialize};

/// Domain separation for a client's session proof.
pub const CLIENT_SESSION_CONTEXT: &[u8] = b"skr8tr/session/client/v1";
/// Domain separation for the conductor's session proof.
pub const CONDUCTOR_SESSION_CONTEXT: &[u8] = b"skr8tr/session/conductor/v1";
/// The path a session is opened on.
pub const SESSION_PATH: &str = "/v1/session";
/// An ingress is admitted like a node, under this prefix (which no node
/// name can carry: `:` is not allowed in one).
pub const INGRESS_PREFIX: &str = "ingress:";

/// Who a client says it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// An operator key the conductor trusts (`skr8tr key list`).
    Operator,
    /// The node admitted under this name.
    Node(String),
    /// The ingress admitted under this name (reads the registry only).
    Ingress(String),
}

impl Role {
    /// The name its key is admitted under, for nodes and ingresses.
    pub fn admitted_name(&self) -> Option<String> {
        match self {
            Role::Operator => None,
            Role::Node(n) => Some(n.clone()),
            Role::Ingress(n) => Some(format!("{INGRESS_PREFIX}{n}")),
        }
    }
}

/// The first request on a connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionHello {
    pub role: Role,
    #[serde(with = "serde_bytes")]
    pub public_key: Vec<u8>,
    /// A join ticket, for a node or ingress the conductor has not
    /// admitted yet: its key is admitted by this very session, so a
    /// ticket is only ever used inside TLS, by the holder of the key.
    pub ticket: Option<Vec<u8>>,
    /// Over the exporter and the role.
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

/// The conductor's answer to a [`SessionHello`] it accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionAccepted {
    /// Who the conductor took the client for, to show.
    pub principal: String,
    /// The conductor's signature over the exporter.
    #[serde(with = "serde_bytes")]
    pub proof: Vec<u8>,
}

fn signed_bytes(exporter: &[u8; 32], role: &Role) -> Vec<u8> {
    let mut m = exporter.to_vec();
    m.extend_from_slice(&super::encode(role));
    m
}

impl SessionHello {
    pub fn sign(
        key: &SecretKey,
        role: Role,
        ticket: Option<Vec<u8>>,
        exporter: &[u8; 32],
    ) -> Result<SessionHello, KeyError> {
        let signature = key.sign(&signed_bytes(exporter, &role), CLIENT_SESSION_CONTEXT)?;
        Ok(SessionHello {
            role,
            public_key: key.public().to_bytes(),
            ticket,
            signature,
        })
    }

    /// The key that signed this session's exporter, or why not.
    pub fn verify(&self, exporter: &[u8; 32]) -> Result<PublicKey, String> {
        let key = PublicKey::from_bytes(&self.public_key).map_err(|e| e.to_string())?;
        if key.verify(
            &signed_bytes(exporter, &self.role),
            CLIENT_SESSION_CONTEXT,
            &self.signature,
        ) {
            Ok(key)
        } else {
            Err(
                "the session proof is not signed by the key it names, or not for this connection"
                    .into(),
            )
        }
    }
}

/// The conductor's proof for a session.
pub fn conductor_proof(key: &SecretKey, exporter: &[u8; 32]) -> Result<Vec<u8>, KeyError> {
    key.sign(exporter, CONDUCTOR_SESSION_CONTEXT)
}

/// Whether `proof` is `conductor`'s signature over this session's exporter.
pub fn check_conductor_proof(conductor: &PublicKey, exporter: &[u8; 32], proof: &[u8]) -> bool {
    conductor.verify(exporter, CONDUCTOR_SESSION_CONTEXT, proof)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_holds_for_its_session_and_role_only() {
        let key = SecretKey::from_seed(&[7; 32]);
        let exporter = [1u8; 32];
        let hello = SessionHello::sign(&key, Role::Node("n1".into()), None, &exporter).unwrap();
        assert_eq!(hello.verify(&exporter).unwrap(), key.public());
        assert!(hello.verify(&[2u8; 32]).is_err(), "another connection");
        let mut other = hello.clone();
        other.role = Role::Node("n2".into());
        assert!(other.verify(&exporter).is_err(), "another role");
        let mut stranger = hello.clone();
        stranger.public_key = SecretKey::from_seed(&[8; 32]).public().to_bytes();
        assert!(stranger.verify(&exporter).is_err(), "another key");
        let proof = conductor_proof(&key, &exporter).unwrap();
        assert!(check_conductor_proof(&key.public(), &exporter, &proof));
        assert!(!check_conductor_proof(&key.public(), &[2u8; 32], &proof));
        // A client's proof is no conductor's proof, even by the same key.
        assert!(!check_conductor_proof(
            &key.public(),
            &exporter,
            &hello.signature
        ));
        assert_eq!(
            Role::Ingress("edge".into()).admitted_name().as_deref(),
            Some("ingress:edge")
        );
    }
}
