//! rustls configurations: agents serve with their certificate and verify client certificates
//! against the CA (optional at the handshake, so probes can reach `/healthz`); the brain presents
//! its certificate and trusts only the CA.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tracing::warn;

use super::TlsError;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn config_error(e: impl ToString) -> TlsError {
    TlsError::Config(e.to_string())
}

fn roots(ca_pem: &str) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| TlsError::parse("CA certificate", e))?;
        roots.add(cert).map_err(config_error)?;
    }
    if roots.is_empty() {
        return Err(TlsError::parse("CA certificate", "no certificate in it"));
    }
    Ok(roots)
}

fn chain_and_key(
    cert_pem: &str,
    key_pem: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::parse("certificate", e))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| TlsError::parse("private key", e))?;
    Ok((chain, key))
}

/// A client that verifies servers against the CA and presents no certificate (PostgreSQL
/// connections between members; the brain uses [`client_config`]).
pub fn verifying_client_config(ca_pem: &str) -> Result<Arc<ClientConfig>, TlsError> {
    Ok(Arc::new(
        ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(config_error)?
            .with_root_certificates(roots(ca_pem)?)
            .with_no_client_auth(),
    ))
}

/// An agent's server side: its certificate, client certificates verified against the CA when
/// presented.
pub fn server_config(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<Arc<ServerConfig>, TlsError> {
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca_pem)?), provider())
            .allow_unauthenticated()
            .build()
            .map_err(config_error)?;
    let (chain, key) = chain_and_key(cert_pem, key_pem)?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(config_error)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(config_error)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The brain's client side: presents its certificate, trusts only the cluster CA.
pub fn client_config(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<Arc<ClientConfig>, TlsError> {
    let (chain, key) = chain_and_key(cert_pem, key_pem)?;
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(config_error)?
        .with_root_certificates(roots(ca_pem)?)
        .with_client_auth_cert(chain, key)
        .map_err(config_error)?;
    Ok(Arc::new(config))
}

/// Where an agent's server configuration comes from: fixed, or files read again whenever they
/// change (a renewed certificate is served without a restart).
pub struct ServerTls {
    files: Option<[PathBuf; 3]>,
    cached: Mutex<Option<Loaded>>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

/// What tells a changed file: runtimes replace files by renaming (a new inode), Kubernetes swaps
/// a symlink to a new file; the time and size catch an edit in place.
pub type Stamp = (u64, Option<SystemTime>, u64);

/// The configuration in use and the stamps of the files it was read from.
type Loaded = (Vec<Option<Stamp>>, Arc<ServerConfig>);

pub fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.ino(), meta.modified().ok(), meta.len()))
}

fn read(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|source| TlsError::Io {
        what: "read",
        path: path.to_path_buf(),
        source,
    })
}

impl ServerTls {
    pub fn fixed(config: Arc<ServerConfig>) -> ServerTls {
        ServerTls {
            files: None,
            cached: Mutex::new(Some((Vec::new(), config))),
        }
    }

    /// Read the CA, certificate and key from files now (failing if they are unusable) and again
    /// whenever one of them changes.
    pub fn from_files(ca: &Path, cert: &Path, key: &Path) -> Result<ServerTls, TlsError> {
        let tls = ServerTls {
            files: Some([ca.to_path_buf(), cert.to_path_buf(), key.to_path_buf()]),
            cached: Mutex::new(None),
        };
        tls.current()?;
        Ok(tls)
    }

    /// The configuration for a new connection. If changed files cannot be used (a renewal caught
    /// half-written), the previous configuration is kept and the next connection tries again.
    pub fn current(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        let Some(files) = &self.files else {
            return cached
                .as_ref()
                .map(|(_, config)| config.clone())
                .ok_or_else(|| TlsError::Config("no server configuration".to_string()));
        };
        let stamp: Vec<Option<Stamp>> = files.iter().map(|p| stamp(p)).collect();
        if let Some((seen, config)) = cached.as_ref() {
            if *seen == stamp {
                return Ok(config.clone());
            }
        }
        let loaded = read(&files[0]).and_then(|ca| {
            let cert = read(&files[1])?;
            let key = read(&files[2])?;
            server_config(&ca, &cert, &key)
        });
        match (loaded, cached.as_mut()) {
            (Ok(config), _) => {
                *cached = Some((stamp, config.clone()));
                Ok(config)
            }
            (Err(error), Some((_, previous))) => {
                warn!(%error, "the changed certificate files cannot be used yet; serving the previous certificate");
                Ok(previous.clone())
            }
            (Err(error), None) => Err(error),
        }
    }
}
