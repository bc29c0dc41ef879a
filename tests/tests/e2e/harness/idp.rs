//! A stand-in identity provider: its signing keys (RS256, ES256) and its JWKS served over real
//! HTTPS on 127.0.0.1, with a certificate from a CA of the test's own, counting requests.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gateway::auth::DevClaims;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::pki::Ca;
use super::tokens::Tokens;

/// The `iss` of the provider's tokens.
pub const IDP_ISSUER: &str = "https://idp.strongroom.test";

/// A signing key of the provider.
pub struct IdpKey {
    /// Its `kid`.
    pub kid: String,
    alg: Algorithm,
    key: EncodingKey,
    jwk: Jwk,
}

impl std::fmt::Debug for IdpKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdpKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl IdpKey {
    /// A new P-256 key for ES256.
    pub fn es256(kid: &str) -> IdpKey {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let key = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap();
        IdpKey::new(kid, Algorithm::ES256, key)
    }

    /// A new 2048-bit RSA key for RS256.
    pub fn rs256(kid: &str) -> IdpKey {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        let key = EncodingKey::from_rsa_pem(pair.serialize_pem().as_bytes()).unwrap();
        IdpKey::new(kid, Algorithm::RS256, key)
    }

    fn new(kid: &str, alg: Algorithm, key: EncodingKey) -> IdpKey {
        let mut jwk = Jwk::from_encoding_key(&key, alg).unwrap();
        jwk.common.key_id = Some(kid.to_owned());
        IdpKey {
            kid: kid.to_owned(),
            alg,
            key,
            jwk,
        }
    }

    /// The same key under another `kid` (a key the provider does not publish).
    pub fn renamed(&self, kid: &str) -> IdpKey {
        IdpKey::new(kid, self.alg, self.key.clone())
    }

    /// Signs claims.
    pub fn sign(&self, claims: &DevClaims) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key).unwrap()
    }

    /// A valid token of the provider for `tenant` with `scopes`; each one differs (`sub`), so
    /// that none is answered from the gateway's cache of verified tokens.
    pub fn mint(&self, tenant: &str, scopes: &[&str]) -> String {
        let mut claims = Tokens::claims(tenant, scopes);
        claims.iss = IDP_ISSUER.to_owned();
        claims.sub = format!("user-{}", ulid::Ulid::generate());
        self.sign(&claims)
    }
}

/// A JWKS document of `keys`.
pub fn jwks(keys: &[&IdpKey]) -> Vec<u8> {
    let keys: Vec<&Jwk> = keys.iter().map(|k| &k.jwk).collect();
    serde_json::to_vec(&json!({ "keys": keys })).unwrap()
}

/// What the provider answers.
#[derive(Clone, Debug)]
pub enum Answer {
    /// 200 with this body.
    Body(Vec<u8>),
    /// This status, empty body.
    Status(u16),
}

#[derive(Debug)]
struct Shared {
    answer: Mutex<Answer>,
    hits: AtomicUsize,
}

/// The provider, serving its JWKS at `/jwks.json` until stopped or dropped.
#[derive(Debug)]
pub struct Idp {
    /// `https://127.0.0.1:PORT/jwks.json`
    pub url: String,
    /// PEM file of the CA that signed the provider's certificate.
    pub ca_file: PathBuf,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Idp {
    /// Starts serving `answer`.
    pub async fn start(answer: Answer) -> Idp {
        let ca = Ca::new("Strongroom test IdP CA");
        let leaf = ca.server();
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("idp-ca.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();
        let certs = vec![CertificateDer::from(leaf.der.clone())];
        let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            answer: Mutex::new(answer),
            hits: AtomicUsize::new(0),
        });
        let serving = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let shared = serving.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = service_fn(move |_req| {
                        let shared = shared.clone();
                        async move {
                            shared.hits.fetch_add(1, Ordering::SeqCst);
                            let answer = shared.answer.lock().unwrap().clone();
                            let response = match answer {
                                Answer::Body(body) => hyper::Response::builder()
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(body))),
                                Answer::Status(status) => hyper::Response::builder()
                                    .status(status)
                                    .body(Full::new(Bytes::new())),
                            };
                            Ok::<_, std::convert::Infallible>(response.unwrap())
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Idp {
            url: format!("https://{addr}/jwks.json"),
            ca_file,
            shared,
            task,
            _dir: dir,
        }
    }

    /// Answers this from now on.
    pub fn serve(&self, answer: Answer) {
        *self.shared.answer.lock().unwrap() = answer;
    }

    /// Requests answered so far.
    pub fn hits(&self) -> usize {
        self.shared.hits.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` requests were answered (at most 10 s).
    pub async fn wait_for_hits(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.hits() < n {
            assert!(
                Instant::now() < deadline,
                "the gateway fetched {} times, not {n}",
                self.hits()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops listening: connections are refused from now on. Waits until the accept task is
    /// gone (an aborted task drops its listener only when the runtime gets to it; until then
    /// the kernel still completes connections into its backlog).
    pub async fn stop(&mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }

    /// The settings that make an instance fetch its keys here (with the refetch interval and
    /// refresh period given).
    pub fn settings(&self, refetch_ms: u64, refresh_ms: u64) -> Vec<(&'static str, String)> {
        vec![
            ("jwks_url", self.url.clone()),
            ("jwks_ca_file", self.ca_file.display().to_string()),
            ("jwt_issuer", IDP_ISSUER.to_owned()),
            ("jwks_refetch_min_interval_ms", refetch_ms.to_string()),
            ("jwks_refresh_ms", refresh_ms.to_string()),
        ]
    }
}
