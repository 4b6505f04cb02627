//! TLS for traffic listeners (rustls with ring): certificate chain and key from PEM
//! files, ALPN `h2` and `http/1.1`.

use std::sync::Arc;

use tokio_rustls::rustls;

use crate::config::TlsConfig;

/// Accepts TLS connections for one listener.
pub(crate) type TlsAcceptor = tokio_rustls::TlsAcceptor;

/// Loads the PEM files (on a blocking thread) and builds the acceptor.
pub(crate) async fn load(cfg: &TlsConfig) -> Result<TlsAcceptor, String> {
    let (cert_path, key_path) = (cfg.cert.clone(), cfg.key.clone());
    let read = tokio::task::spawn_blocking(move || {
        let cert =
            std::fs::read(&cert_path).map_err(|e| format!("cert {}: {e}", cert_path.display()))?;
        let key =
            std::fs::read(&key_path).map_err(|e| format!("key {}: {e}", key_path.display()))?;
        Ok::<_, String>((cert, key, cert_path, key_path))
    })
    .await
    .map_err(|e| e.to_string())??;
    let (cert_pem, key_pem, cert_path, key_path) = read;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cert {}: {e}", cert_path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "cert {}: no certificate in the file",
            cert_path.display()
        ));
    }
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| format!("key {}: {e}", key_path.display()))?
        .ok_or_else(|| format!("key {}: no private key in the file", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("cert/key: {e}"))?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(server)))
}
