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
    server_config_for(&[(cert.to_path_buf(), key.to_path_buf())])
}

/// One certificate per host name (`--tls-cert`/`--tls-key` given several
/// times): the client's SNI picks the first whose certificate is valid
/// for that name; a client that sends none, or a name no certificate
/// covers, gets the first pair's.
pub fn server_config_for(
    pairs: &[(std::path::PathBuf, std::path::PathBuf)],
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = skr8tr_net::tls::provider();
    let mut keys = Vec::new();
    for (cert, key) in pairs {
        let (certs, key) = load(cert, key)?;
        let certified = rustls::sign::CertifiedKey::from_der(certs, key, &provider)
            .map_err(|e| TlsError::Config(format!("{}: {e}", cert.display())))?;
        keys.push(Arc::new(certified));
    }
    if keys.is_empty() {
        return Err(TlsError::Config("no certificate given".into()));
    }
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(BySni { keys }));
    Ok(Arc::new(config))
}

/// Picks a certificate by the client's SNI.
#[derive(Debug)]
struct BySni {
    keys: Vec<Arc<rustls::sign::CertifiedKey>>,
}

impl rustls::server::ResolvesServerCert for BySni {
    fn resolve(
        &self,
        hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        let named = hello
            .server_name()
            .and_then(|n| rustls::pki_types::ServerName::try_from(n.to_string()).ok())
            .and_then(|name| {
                self.keys.iter().find(|k| {
                    k.cert.first().is_some_and(|der| {
                        webpki::EndEntityCert::try_from(der)
                            .is_ok_and(|ee| ee.verify_is_valid_for_subject_name(&name).is_ok())
                    })
                })
            });
        named.or_else(|| self.keys.first()).cloned()
    }
}

fn load(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
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
    Ok((certs, key))
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

    /// Two certificates: the client's SNI picks the one for its name.
    #[tokio::test]
    async fn sni_picks_the_certificate_for_the_name() {
        let dir = std::env::temp_dir().join(format!("skr8tr-ingress-sni-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut pairs = Vec::new();
        let mut ders = Vec::new();
        for name in ["a.test", "b.test"] {
            let c = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
            let (cert, key) = (
                dir.join(format!("{name}.crt")),
                dir.join(format!("{name}.key")),
            );
            std::fs::write(&cert, c.cert.pem()).unwrap();
            std::fs::write(&key, c.signing_key.serialize_pem()).unwrap();
            ders.push(c.cert.der().to_vec());
            pairs.push((cert, key));
        }
        let config = server_config_for(&pairs).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        for d in &ders {
            roots.add(CertificateDer::from(d.clone())).unwrap();
        }
        let client = Arc::new(
            rustls::ClientConfig::builder_with_provider(skr8tr_net::tls::provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        );
        for (i, name) in ["a.test", "b.test"].into_iter().enumerate() {
            let (c, s) = tokio::io::duplex(64 * 1024);
            let acceptor = tokio_rustls::TlsAcceptor::from(config.clone());
            let accept = tokio::spawn(async move { acceptor.accept(s).await.map(|_| ()) });
            let stream = tokio_rustls::TlsConnector::from(client.clone())
                .connect(
                    rustls::pki_types::ServerName::try_from(name.to_string()).unwrap(),
                    c,
                )
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            accept.await.unwrap().unwrap();
            let seen = stream.get_ref().1.peer_certificates().unwrap()[0].to_vec();
            assert_eq!(seen, ders[i], "{name} got its own certificate");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

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
