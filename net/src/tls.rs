//! TLS on every connection between Skr8tr processes, with the aws-lc-rs
//! provider: TLS 1.3 only, the hybrid post-quantum key exchange
//! X25519MLKEM768 offered first (classical X25519 stays as a fallback).
//!
//! There is no certificate authority. The conductor makes a self-signed
//! identity at `--init` ([`Identity`]); everyone who talks to it pins the
//! SHA-256 of that certificate ([`Pin`]), the way nodes pin
//! `conductor.pub`. A node's log endpoint has an identity of its own,
//! which the conductor pins from the node's (authenticated) reports.
//!
//! Each side of a session proves its ML-DSA key once per connection by
//! signing [`exporter`], a value only the two ends of this TLS session can
//! compute (RFC 8446 §7.5), so a proof cannot be replayed on another
//! connection.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

/// Label of the exporter both ends sign (RFC 8446 §7.5).
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-skr8tr-session-v1";
/// File names of an identity in its directory.
pub const CERT_FILE: &str = "tls.crt";
pub const KEY_FILE: &str = "tls.key";
/// The fingerprint as text, to carry to other hosts.
pub const PIN_FILE: &str = "tls.pin";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot make a TLS identity: {0}")]
    Generate(String),
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error(
        "`{0}` is not a TLS pin: give `sha256:` and 64 hex digits (the conductor's DATA/tls.pin), \
         or the path of a file holding one, or of its tls.crt"
    )]
    BadPin(String),
    #[error("the TLS configuration cannot be built: {0}")]
    Config(String),
}

/// The crypto provider every configuration uses: aws-lc-rs, whose key
/// exchange groups (with `prefer-post-quantum`) begin with X25519MLKEM768.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// SHA-256 of a DER certificate: what a client pins.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pin(pub [u8; 32]);

impl Pin {
    pub fn of(cert: &[u8]) -> Pin {
        Pin(Sha256::digest(cert).into())
    }

    /// `sha256:HEX`.
    pub fn parse(text: &str) -> Result<Pin, TlsError> {
        let bad = || TlsError::BadPin(text.to_string());
        let hex = text.trim().strip_prefix("sha256:").ok_or_else(bad)?;
        let bytes = skr8tr_proto::hex::decode(hex).ok_or_else(bad)?;
        Ok(Pin(<[u8; 32]>::try_from(bytes).map_err(|_| bad())?))
    }

    /// A pin as given on a command line: the fingerprint itself, or a file
    /// holding it (`tls.pin`) or the certificate (`tls.crt`).
    pub fn from_arg(arg: &str) -> Result<Pin, TlsError> {
        if arg.starts_with("sha256:") {
            return Pin::parse(arg);
        }
        // A pin file or a certificate is a few KiB; read no more than
        // 64 KiB of whatever was named.
        use std::io::Read;
        let mut text = String::new();
        std::fs::File::open(arg)
            .and_then(|f| f.take(64 * 1024).read_to_string(&mut text))
            .map_err(|e| TlsError::File {
                path: arg.to_string(),
                reason: format!("cannot read the pin: {e}"),
            })?;
        if text.contains("-----BEGIN CERTIFICATE-----") {
            let cert =
                CertificateDer::from_pem_slice(text.as_bytes()).map_err(|e| TlsError::File {
                    path: arg.to_string(),
                    reason: format!("not a PEM certificate: {e}"),
                })?;
            return Ok(Pin::of(&cert));
        }
        Pin::parse(&text)
    }
}

impl std::fmt::Display for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256:{}", skr8tr_proto::hex::encode(&self.0))
    }
}

impl std::fmt::Debug for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pin({self})")
    }
}

/// A self-signed certificate and its key (ECDSA P-256; the post-quantum
/// part of authentication is the ML-DSA proof over the exporter).
pub struct Identity {
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

impl Identity {
    /// Makes a new identity and writes `tls.crt`, `tls.key` (0600) and
    /// `tls.pin` into `dir`.
    pub fn create(dir: &Path) -> Result<Identity, TlsError> {
        let made = rcgen::generate_simple_self_signed(vec!["skr8tr".to_string()])
            .map_err(|e| TlsError::Generate(e.to_string()))?;
        let file = |name: &str, e: String| TlsError::File {
            path: dir.join(name).display().to_string(),
            reason: format!("cannot write: {e}"),
        };
        let key_path = dir.join(KEY_FILE);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&key_path)
            .map_err(|e| file(KEY_FILE, e.to_string()))?;
        skr8tr_proto::files::private_file(&key_path).map_err(|e| file(KEY_FILE, e.to_string()))?;
        f.write_all(made.signing_key.serialize_pem().as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| file(KEY_FILE, e.to_string()))?;
        std::fs::write(dir.join(CERT_FILE), made.cert.pem())
            .map_err(|e| file(CERT_FILE, e.to_string()))?;
        let id = Identity::read(dir)?;
        std::fs::write(dir.join(PIN_FILE), format!("{}\n", id.pin()))
            .map_err(|e| file(PIN_FILE, e.to_string()))?;
        Ok(id)
    }

    pub fn pin(&self) -> Pin {
        Pin::of(&self.cert)
    }

    /// Reads the identity [`Identity::create`] wrote into `dir`.
    pub fn read(dir: &Path) -> Result<Identity, TlsError> {
        let file = |name: &str, reason: String| TlsError::File {
            path: dir.join(name).display().to_string(),
            reason,
        };
        let cert = CertificateDer::from_pem_file(dir.join(CERT_FILE))
            .map_err(|e| file(CERT_FILE, format!("cannot read the TLS certificate: {e}")))?;
        let key = PrivateKeyDer::from_pem_file(dir.join(KEY_FILE))
            .map_err(|e| file(KEY_FILE, format!("cannot read the TLS key: {e}")))?;
        Ok(Identity { cert, key })
    }

    /// The identity in `dir`, made and written there first if it has none.
    pub fn load_or_create(dir: &Path) -> Result<Identity, TlsError> {
        if dir.join(CERT_FILE).exists() {
            return Identity::read(dir);
        }
        Identity::create(dir)
    }

    /// A server configuration: TLS 1.3, HTTP/1.1, no client certificates
    /// (clients prove ML-DSA keys inside the session instead).
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(vec![self.cert.clone()], self.key.clone_key())
            .map_err(|e| TlsError::Config(e.to_string()))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// A client configuration that accepts exactly the pinned certificate.
pub fn client_config(pin: Pin) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let verifier = Pinned {
        pin,
        algorithms: provider.signature_verification_algorithms,
    };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The server presented another certificate than the pinned one.
#[derive(Debug, thiserror::Error)]
#[error(
    "the server's TLS identity is {got}, but the pinned one is {expected}: this is not the \
     conductor you pinned (or it was re-initialised); check --pin / SKR8TR_PIN against its DATA/tls.pin"
)]
pub struct PinMismatch {
    pub expected: Pin,
    pub got: Pin,
}

#[derive(Debug)]
struct Pinned {
    pin: Pin,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = Pin::of(end_entity);
        if got == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Other(rustls::OtherError(Arc::new(PinMismatch {
                    expected: self.pin,
                    got,
                }))),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The session's exporter value, which both ends' proofs sign.
pub fn exporter<D>(conn: &rustls::ConnectionCommon<D>) -> Option<[u8; 32]> {
    conn.export_keying_material([0u8; 32], EXPORTER_LABEL, None)
        .ok()
}

/// The name of the key exchange group a finished handshake used.
pub fn group<D>(conn: &rustls::ConnectionCommon<D>) -> Option<rustls::NamedGroup> {
    conn.negotiated_key_exchange_group().map(|g| g.name())
}

/// What a client that speaks plain HTTP to a TLS port reads back.
const PLAIN_REFUSAL: &str = "this port speaks HTTPS only (TLS 1.3, post-quantum key exchange): \
use https://HOST:PORT and pin the server's identity (skr8tr --pin, the conductor's DATA/tls.pin)\n";

/// Accepts TLS on `io` within `within`. A client that sent plain HTTP
/// instead (the first byte of a TLS handshake is 0x16; of an HTTP request
/// a letter) is answered `400` with [`PLAIN_REFUSAL`] and closed.
pub async fn accept(
    acceptor: &tokio_rustls::TlsAcceptor,
    mut io: crate::server::Guarded<tokio::net::TcpStream>,
    within: std::time::Duration,
) -> Result<tokio_rustls::server::TlsStream<crate::server::Guarded<tokio::net::TcpStream>>, String>
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let handshake = async {
        let mut first = [0u8; 1];
        let n = io
            .get_ref()
            .peek(&mut first)
            .await
            .map_err(|e| e.to_string())?;
        if n == 1 && first[0].is_ascii_alphabetic() {
            // Read what came (up to a head's worth) so closing does not
            // reset the connection before the answer is read.
            let mut head = [0u8; 8192];
            let _ = tokio::time::timeout(std::time::Duration::from_millis(100), io.read(&mut head))
                .await;
            let answer = format!(
                "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\nconnection: close\r\n\
                 content-length: {}\r\n\r\n{PLAIN_REFUSAL}",
                PLAIN_REFUSAL.len()
            );
            let _ = io.write_all(answer.as_bytes()).await;
            let _ = io.shutdown().await;
            return Err("a plain-HTTP request, refused".to_string());
        }
        acceptor.accept(io).await.map_err(|e| e.to_string())
    };
    tokio::time::timeout(within, handshake)
        .await
        .map_err(|_| "the TLS handshake timed out".to_string())?
}
