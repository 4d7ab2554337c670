//! TLS termination: a rustls server configuration from PEM files (a
//! certificate chain and its private key), with the aws-lc-rs provider:
//! clients that offer the hybrid post-quantum X25519MLKEM768 get it,
//! classical ones still connect (TLS 1.2 and 1.3).

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "{path}: no certificate could be read ({reason}); give a PEM file with `-----BEGIN CERTIFICATE-----` blocks"
    )]
    Certificates { path: String, reason: String },
    #[error(
        "{path}: no private key could be read ({reason}); give a PEM file with a PKCS#8, SEC1 or PKCS#1 key"
    )]
    Key { path: String, reason: String },
    #[error("the certificate and key cannot be used together: {0}")]
    Config(String),
}

pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Certificates {
            path: cert.display().to_string(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Certificates {
            path: cert.display().to_string(),
            reason: "the file holds none".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.display().to_string(),
        reason: e.to_string(),
    })?;
    let config = ServerConfig::builder_with_provider(skr8tr_net::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    Ok(Arc::new(config))
}

/// `config` offering HTTP/2 by ALPN (unless `--http2 false`), HTTP/1.1 to clients that
/// do not ask for it.
pub fn with_http2(config: &ServerConfig) -> Arc<ServerConfig> {
    let mut config = config.clone();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client that offers X25519MLKEM768 (rustls, as browsers do) gets
    /// it from the ingress's client-facing TLS.
    #[tokio::test]
    async fn clients_that_offer_the_post_quantum_hybrid_get_it() {
        let dir = std::env::temp_dir().join(format!("skr8tr-ingress-tls-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let id = skr8tr_net::tls::Identity::create(&dir).unwrap();
        let config = server_config(
            &dir.join(skr8tr_net::tls::CERT_FILE),
            &dir.join(skr8tr_net::tls::KEY_FILE),
        )
        .unwrap();
        let (client, server) = tokio::io::duplex(64 * 1024);
        let accept = tokio::spawn(async move {
            tokio_rustls::TlsAcceptor::from(config)
                .accept(server)
                .await
                .map(|_| ())
        });
        let stream =
            tokio_rustls::TlsConnector::from(skr8tr_net::tls::client_config(id.pin()).unwrap())
                .connect(
                    rustls::pki_types::ServerName::try_from("localhost").unwrap(),
                    client,
                )
                .await
                .unwrap();
        accept.await.unwrap().unwrap();
        assert_eq!(
            skr8tr_net::tls::group(stream.get_ref().1),
            Some(rustls::NamedGroup::X25519MLKEM768)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
