//! TLS: rustls with the aws-lc-rs provider, TLS 1.2 and 1.3 only, ALPN `h2` and `http/1.1`.
//!
//! In dev mode without a configured certificate, a self-signed ECDSA P-256 certificate for
//! `localhost`, `127.0.0.1` and `::1` is generated on first run in the data directory and reused
//! afterwards; its SHA-256 fingerprint is printed so that a client can pin it.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Names the generated development certificate is valid for.
pub const DEV_CERT_NAMES: &[&str] = &["localhost", "127.0.0.1", "::1"];

/// A TLS setup problem.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A PEM file holds no usable certificate or key.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Certificate generation or rustls configuration failed.
    #[error("TLS setup: {0}")]
    Setup(String),
}

/// Paths of a certificate chain and its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// Writes a file readable by its owner only.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), TlsError> {
    let io = |source| TlsError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    file.write_all(contents).map_err(io)?;
    file.sync_all().map_err(io)
}

/// The development certificate in `dir`, generated on first use.
pub fn ensure_dev_cert(dir: &Path) -> Result<CertFiles, TlsError> {
    let tls_dir = dir.join("tls");
    let files = CertFiles {
        cert: tls_dir.join("cert.pem"),
        key: tls_dir.join("key.pem"),
    };
    if files.cert.exists() && files.key.exists() {
        return Ok(files);
    }
    fs::create_dir_all(&tls_dir).map_err(|source| TlsError::Io {
        path: tls_dir.clone(),
        source,
    })?;
    let setup = |e: rcgen::Error| TlsError::Setup(e.to_string());
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(setup)?;
    let mut params = rcgen::CertificateParams::new(
        DEV_CERT_NAMES
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>(),
    )
    .map_err(setup)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Strongroom development");
    let cert = params.self_signed(&key).map_err(setup)?;
    let key_pem = Zeroizing::new(key.serialize_pem());
    // Remove a half-written pair from an interrupted earlier run.
    let _ = fs::remove_file(&files.key);
    let _ = fs::remove_file(&files.cert);
    write_private(&files.key, key_pem.as_bytes())?;
    write_private(&files.cert, cert.pem().as_bytes())?;
    Ok(files)
}

/// Reads a PEM certificate chain.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = |reason: String| TlsError::Pem {
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(pem("no certificate".into()));
    }
    Ok(certs)
}

/// SHA-256 fingerprint of a certificate, as colon-separated hex.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    Sha256::digest(cert.as_ref())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The rustls server configuration: TLS 1.3 and 1.2, aws-lc-rs, ALPN h2 then http/1.1.
pub fn server_config(files: &CertFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = load_certs(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| TlsError::Pem {
        path: files.key.clone(),
        reason: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Setup(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Setup(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_cert_is_generated_once_with_private_key_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let files = ensure_dev_cert(dir.path()).expect("generate");
        let first = fs::read(&files.cert).expect("cert");
        let mode = fs::metadata(&files.key).expect("key").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = ensure_dev_cert(dir.path()).expect("reuse");
        assert_eq!(
            fs::read(&again.cert).expect("cert"),
            first,
            "reused, not regenerated"
        );
        let config = server_config(&files).expect("config");
        assert_eq!(
            config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        let fp = fingerprint(&load_certs(&files.cert).expect("certs")[0]);
        assert_eq!(fp.len(), 32 * 3 - 1);
    }
}
