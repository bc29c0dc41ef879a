//! TLS: rustls with the aws-lc-rs provider, ALPN `h2` and `http/1.1`.
//!
//! Two modes ([`TlsMode`]): `intermediate` (the default) offers TLS 1.3 and 1.2 with the cipher
//! suites of Mozilla's intermediate configuration that rustls implements (ECDHE with AES-GCM or
//! ChaCha20-Poly1305; no CBC, no RSA key exchange, no DHE); `modern` offers TLS 1.3 only. ECDSA,
//! Ed25519 and RSA certificates all work: the key's type picks the signature schemes.
//!
//! The certificate and key are held by a [`CertStore`], which every handshake asks for the
//! current pair: [`CertStore::reload_if_changed`] (polled) and [`CertStore::reload`] (SIGHUP)
//! replace it without a restart. A pair that does not load, or whose key does not match the
//! certificate, is refused and the current one stays.
//!
//! In dev mode without a configured certificate, a self-signed ECDSA P-256 certificate for
//! `localhost`, `127.0.0.1` and `::1` is generated on first run in the data directory and reused
//! afterwards; its SHA-256 fingerprint is printed so that a client can pin it.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
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

/// Where the development certificate of data directory `dir` lives.
pub fn dev_cert_files(dir: &Path) -> CertFiles {
    let tls_dir = dir.join("tls");
    CertFiles {
        cert: tls_dir.join("cert.pem"),
        key: tls_dir.join("key.pem"),
    }
}

/// The development certificate in `dir`, generated on first use.
pub fn ensure_dev_cert(dir: &Path) -> Result<CertFiles, TlsError> {
    let files = dev_cert_files(dir);
    let tls_dir = dir.join("tls");
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

/// Which protocol versions and cipher suites the server offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// TLS 1.3 and 1.2, Mozilla's intermediate suites (the default).
    Intermediate,
    /// TLS 1.3 only.
    Modern,
}

/// TLS 1.3 suites, in Mozilla's order.
const TLS13_SUITES: [rustls::SupportedCipherSuite; 3] = [
    rustls::crypto::aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256,
    rustls::crypto::aws_lc_rs::cipher_suite::TLS13_AES_256_GCM_SHA384,
    rustls::crypto::aws_lc_rs::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
];

/// TLS 1.2 suites of Mozilla's intermediate configuration that rustls implements, in its order.
const TLS12_SUITES: [rustls::SupportedCipherSuite; 6] = [
    rustls::crypto::aws_lc_rs::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    rustls::crypto::aws_lc_rs::cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    rustls::crypto::aws_lc_rs::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    rustls::crypto::aws_lc_rs::cipher_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    rustls::crypto::aws_lc_rs::cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    rustls::crypto::aws_lc_rs::cipher_suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
];

static INTERMEDIATE_VERSIONS: [&rustls::SupportedProtocolVersion; 2] =
    [&rustls::version::TLS13, &rustls::version::TLS12];
static MODERN_VERSIONS: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];

impl TlsMode {
    /// The crypto provider of this mode: aws-lc-rs with its suites.
    pub fn provider(self) -> CryptoProvider {
        let mut provider = rustls::crypto::aws_lc_rs::default_provider();
        provider.cipher_suites = match self {
            TlsMode::Intermediate => TLS13_SUITES.iter().chain(&TLS12_SUITES).copied().collect(),
            TlsMode::Modern => TLS13_SUITES.to_vec(),
        };
        provider
    }

    fn versions(self) -> &'static [&'static rustls::SupportedProtocolVersion] {
        match self {
            TlsMode::Intermediate => &INTERMEDIATE_VERSIONS,
            TlsMode::Modern => &MODERN_VERSIONS,
        }
    }
}

/// When a file was last changed, as far as reloading cares: modification time and length.
type Stamp = [(Option<SystemTime>, u64); 2];

/// The server's certificate chain and key, replaceable while the server runs.
#[derive(Debug)]
pub struct CertStore {
    files: CertFiles,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    /// The files' stamps when `current` was loaded.
    loaded: Mutex<Stamp>,
}

impl CertStore {
    /// The crypto provider (the TLS mode's suites).
    pub fn provider(&self) -> Arc<CryptoProvider> {
        self.provider.clone()
    }

    /// Loads the pair in `files`.
    pub fn open(files: &CertFiles, provider: Arc<CryptoProvider>) -> Result<CertStore, TlsError> {
        let stamp = stamp(files);
        let current = load_pair(files, &provider)?;
        Ok(CertStore {
            files: files.clone(),
            provider,
            current: RwLock::new(current),
            loaded: Mutex::new(stamp),
        })
    }

    /// Loads the files again and, if they hold a valid pair, serves it from the next handshake
    /// on. On an error the current pair stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let stamp = stamp(&self.files);
        let pair = load_pair(&self.files, &self.provider)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = pair;
        *self.loaded.lock().unwrap_or_else(|p| p.into_inner()) = stamp;
        Ok(())
    }

    /// Reloads when either file changed (modification time or length) since the last load;
    /// returns whether it did. A failed attempt is not repeated until the files change again.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let now = stamp(&self.files);
        {
            let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
            if *loaded == now {
                return Ok(false);
            }
            *loaded = now;
        }
        self.reload().map(|()| true)
    }

    /// The SHA-256 fingerprint of the certificate being served.
    pub fn fingerprint(&self) -> String {
        let current = self.current.read().unwrap_or_else(|p| p.into_inner());
        current.cert.first().map(fingerprint).unwrap_or_default()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

fn stamp(files: &CertFiles) -> Stamp {
    [&files.cert, &files.key].map(|path| match fs::metadata(path) {
        Ok(meta) => (meta.modified().ok(), meta.len()),
        Err(_) => (None, 0),
    })
}

/// Reads a certificate chain and its key, and checks that they belong together.
fn load_pair(files: &CertFiles, provider: &CryptoProvider) -> Result<Arc<CertifiedKey>, TlsError> {
    let certs = load_certs(&files.cert)?;
    let pem = |reason: String| TlsError::Pem {
        path: files.key.clone(),
        reason,
    };
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| pem(e.to_string()))?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| pem(e.to_string()))?;
    let pair = CertifiedKey::new(certs, signing);
    pair.keys_match().map_err(|e| {
        pem(format!(
            "the key does not belong to the certificate in {}: {e}",
            files.cert.display()
        ))
    })?;
    Ok(Arc::new(pair))
}

/// The rustls server configuration: the mode's versions and suites, the certificate `store`
/// serves, ALPN h2 then http/1.1, and client certificates verified by `clients` when given
/// (`crate::mtls::client_verifier`), else none asked for.
pub fn server_config(
    store: Arc<CertStore>,
    mode: TlsMode,
    clients: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let builder = ServerConfig::builder_with_provider(store.provider.clone())
        .with_protocol_versions(mode.versions())
        .map_err(|e| TlsError::Setup(e.to_string()))?;
    let builder = match clients {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(store);
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
        let store =
            CertStore::open(&files, Arc::new(TlsMode::Intermediate.provider())).expect("store");
        let config = server_config(Arc::new(store), TlsMode::Intermediate, None).expect("config");
        assert_eq!(
            config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        let fp = fingerprint(&load_certs(&files.cert).expect("certs")[0]);
        assert_eq!(fp.len(), 32 * 3 - 1);
    }
}

#[cfg(test)]
mod reload_tests {
    use super::*;

    /// A self-signed pair for 127.0.0.1 with a key of `alg`, as PEM: (certificate, key).
    fn pair(alg: &'static rcgen::SignatureAlgorithm) -> (String, String) {
        let key = rcgen::KeyPair::generate_for(alg).expect("key");
        let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("params");
        let cert = params.self_signed(&key).expect("cert");
        (cert.pem(), key.serialize_pem())
    }

    fn write(files: &CertFiles, (cert, key): &(String, String)) {
        fs::write(&files.cert, cert).expect("cert");
        fs::write(&files.key, key).expect("key");
    }

    fn files(dir: &Path) -> CertFiles {
        CertFiles {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        }
    }

    #[test]
    fn modes_offer_mozillas_suites_and_versions() {
        let names = |mode: TlsMode| {
            mode.provider()
                .cipher_suites
                .iter()
                .map(|s| format!("{:?}", s.suite()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(TlsMode::Intermediate),
            [
                "TLS13_AES_128_GCM_SHA256",
                "TLS13_AES_256_GCM_SHA384",
                "TLS13_CHACHA20_POLY1305_SHA256",
                "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
                "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
                "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
                "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
            ]
        );
        assert_eq!(
            names(TlsMode::Modern),
            [
                "TLS13_AES_128_GCM_SHA256",
                "TLS13_AES_256_GCM_SHA384",
                "TLS13_CHACHA20_POLY1305_SHA256",
            ]
        );
        assert_eq!(TlsMode::Modern.versions().len(), 1);
    }

    #[test]
    fn a_changed_pair_is_served_and_a_broken_one_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = files(dir.path());
        let provider = Arc::new(TlsMode::Intermediate.provider());
        write(&files, &pair(&rcgen::PKCS_ECDSA_P256_SHA256));
        let store = CertStore::open(&files, provider).expect("open");
        let first = store.fingerprint();
        assert!(
            !store.reload_if_changed().expect("check"),
            "nothing changed"
        );

        // An RSA pair replaces the ECDSA one.
        let rsa = pair(&rcgen::PKCS_RSA_SHA256);
        write(&files, &rsa);
        assert!(store.reload_if_changed().expect("reload"));
        let second = store.fingerprint();
        assert_ne!(second, first);
        let pem_fingerprint = fingerprint(&load_certs(&files.cert).expect("certs")[0]);
        assert_eq!(second, pem_fingerprint);

        // A key of another certificate, then garbage: refused, the RSA pair stays.
        let other = pair(&rcgen::PKCS_ECDSA_P256_SHA256);
        fs::write(&files.key, &other.1).expect("key");
        assert!(matches!(
            store.reload_if_changed(),
            Err(TlsError::Pem { .. })
        ));
        assert_eq!(store.fingerprint(), second);
        fs::write(&files.key, "not a key").expect("key");
        assert!(store.reload_if_changed().is_err());
        assert!(store.reload().is_err(), "a forced reload refuses it too");
        assert_eq!(store.fingerprint(), second);
        // Fixed: served again.
        write(&files, &rsa);
        store.reload().expect("reload");
        assert_eq!(store.fingerprint(), second);
    }
}
