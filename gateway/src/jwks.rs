//! The identity provider's keys from its JWKS URL (`jwks_url`): fetched over HTTPS at start,
//! kept as a snapshot that token verification reads, refreshed in the background, and fetched
//! again when a token names a key the snapshot lacks.
//!
//! What the identity provider can do to the gateway is bounded:
//! - The first fetch must succeed, or the process does not start (exit status 1, like a JWKS
//!   file that does not load): a gateway that cannot verify any token is not ready.
//! - After that, a failed fetch (connection refused, TLS error, non-200 answer, timeout, a body
//!   over [`JWKS_BYTES_MAX`], JSON that is not a JWKS, a key the rules refuse) is logged and the
//!   cached keys stay. Each fetch has a timeout (`jwks_fetch_timeout_ms`).
//! - Tokens with an unknown `kid` cause at most one fetch per `jwks_refetch_min_interval_ms`,
//!   whatever their number; callers arriving while a fetch runs wait for that fetch instead of
//!   starting another ([`RemoteJwks::refetch_for`]). Random `kid`s cannot make the gateway
//!   hammer the provider.
//! - A new key set replaces the snapshot whole (the same rules as a JWKS file:
//!   `auth::parse_jwks`). When it drops or changes a key, the verified-token cache is emptied,
//!   so that a key revoked at the provider stops working at the next fetch.
//!
//! The client is hyper's HTTP/1.1 connection over tokio-rustls (aws-lc-rs), one connection per
//! fetch: fetches are minutes apart, a pool would only hold sockets. The server certificate is
//! verified against `jwks_ca_file` when set, else against the Mozilla roots
//! (webpki-root-certs, built in: the image's CA store does not matter). Redirects are not
//! followed.

use std::fmt;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::Uri;
use hyper::header::{ACCEPT, CONNECTION, CONTENT_LENGTH, HOST, USER_AGENT};
use hyper_util::rt::TokioIo;
use rustls::RootCertStore;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsConnector;

use crate::auth::{KeyMap, VerifierSettings, VerifyKey, parse_jwks};

/// Largest JWKS document accepted, in bytes. Real ones are a few KiB; a larger answer is
/// refused before it is read whole.
pub const JWKS_BYTES_MAX: usize = 256 << 10;

/// Why a fetch failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    /// The URL or the CA file cannot be used.
    #[error("setup: {0}")]
    Setup(String),
    /// No TCP connection.
    #[error("connect: {0}")]
    Connect(String),
    /// The TLS handshake failed (an untrusted certificate, say).
    #[error("TLS: {0}")]
    Tls(String),
    /// The HTTP exchange failed.
    #[error("HTTP: {0}")]
    Http(String),
    /// An answer other than 200.
    #[error("answered {0}")]
    Status(u16),
    /// A body over [`JWKS_BYTES_MAX`].
    #[error("the answer is larger than {JWKS_BYTES_MAX} bytes")]
    TooLarge,
    /// No complete answer within the fetch timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// Not a JWKS, or a key the rules refuse.
    #[error("{0}")]
    Invalid(String),
}

/// Future of a fetch.
pub type FetchFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<u8>, JwksError>> + Send + 'a>>;

/// Where JWKS documents come from: [`HttpsFetcher`], or a stand-in in tests.
pub trait Fetch: fmt::Debug + Send + Sync {
    /// The document's bytes, at most [`JWKS_BYTES_MAX`].
    fn fetch(&self) -> FetchFuture<'_>;
}

/// Fetches a JWKS over HTTPS.
pub struct HttpsFetcher {
    url: String,
    uri: Uri,
    authority: String,
    host: String,
    port: u16,
    server_name: ServerName<'static>,
    connector: TlsConnector,
}

impl fmt::Debug for HttpsFetcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpsFetcher")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl HttpsFetcher {
    /// A fetcher of `url` (`https://` only) that trusts the CAs in `ca_file`, or the Mozilla
    /// roots when `None`.
    pub fn new(url: &str, ca_file: Option<&Path>) -> Result<HttpsFetcher, JwksError> {
        let setup = |why: String| JwksError::Setup(why);
        let uri: Uri = url.parse().map_err(|e| setup(format!("{url}: {e}")))?;
        if uri.scheme_str() != Some("https") {
            return Err(setup(format!("{url}: not an https:// URL")));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| setup(format!("{url}: no host")))?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = authority.port_u16().unwrap_or(443);
        let server_name = ServerName::try_from(host.clone())
            .map_err(|e| setup(format!("{url}: host {host:?}: {e}")))?;
        let mut roots = RootCertStore::empty();
        match ca_file {
            Some(path) => {
                let certs = crate::tls::load_certs(path).map_err(|e| setup(e.to_string()))?;
                let (added, _) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(setup(format!(
                        "{}: no usable CA certificate",
                        path.display()
                    )));
                }
            }
            None => {
                roots.add_parsable_certificates(webpki_root_certs::TLS_SERVER_ROOT_CERTS.to_vec());
            }
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| setup(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(HttpsFetcher {
            url: url.to_owned(),
            authority: authority.as_str().to_owned(),
            uri,
            host,
            port,
            server_name,
            connector: TlsConnector::from(Arc::new(config)),
        })
    }

    /// One GET over a new connection; the caller bounds the time.
    async fn get(&self) -> Result<Vec<u8>, JwksError> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| JwksError::Connect(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let tls = self
            .connector
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|e| JwksError::Tls(e.to_string()))?;
        let http = |e: hyper::Error| JwksError::Http(e.to_string());
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(http)?;
        let path = self.uri.path_and_query().map_or("/", |p| p.as_str());
        let request = hyper::Request::get(path)
            .header(HOST, &self.authority)
            .header(ACCEPT, "application/jwk-set+json, application/json")
            .header(
                USER_AGENT,
                concat!("strongroom/", env!("CARGO_PKG_VERSION")),
            )
            .header(CONNECTION, "close")
            .body(Empty::<Bytes>::new())
            .map_err(|e| JwksError::Http(e.to_string()))?;
        let exchange = async move {
            let response = sender.send_request(request).await.map_err(http)?;
            if response.status() != hyper::StatusCode::OK {
                return Err(JwksError::Status(response.status().as_u16()));
            }
            let declared = response
                .headers()
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|n| n > JWKS_BYTES_MAX as u64) {
                return Err(JwksError::TooLarge);
            }
            let body = Limited::new(response.into_body(), JWKS_BYTES_MAX)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        JwksError::TooLarge
                    } else {
                        JwksError::Http(e.to_string())
                    }
                })?;
            Ok(body.to_bytes().to_vec())
        };
        // The connection is driven here, not spawned: the caller's timeout ends both.
        let mut exchange = std::pin::pin!(exchange);
        let mut conn = std::pin::pin!(conn);
        tokio::select! {
            biased;
            answer = &mut exchange => answer,
            // The connection ended first (closed, or an error the exchange reports too).
            _ = &mut conn => exchange.await,
        }
    }
}

impl Fetch for HttpsFetcher {
    fn fetch(&self) -> FetchFuture<'_> {
        Box::pin(self.get())
    }
}

/// How a [`RemoteJwks`] fetches.
#[derive(Clone, Debug)]
pub struct RemoteSettings {
    /// What the keys check besides signatures.
    pub verifier: VerifierSettings,
    /// The `iss` tokens signed by these keys carry.
    pub issuer: String,
    /// Least time between two fetches that unknown `kid`s cause.
    pub refetch_min_interval: Duration,
    /// Longest time one fetch may take.
    pub fetch_timeout: Duration,
}

/// The keys of a remote JWKS: a snapshot that verification reads, replaced whole by fetches.
pub struct RemoteJwks {
    fetcher: Box<dyn Fetch>,
    settings: RemoteSettings,
    /// The keys as last fetched. Readers clone an `Arc` under a read lock held for a lookup.
    keys: RwLock<Arc<KeyMap>>,
    /// Changes when a fetch drops or replaces a key.
    generation: AtomicU64,
    /// When the last fetch started; held while a fetch runs, so that fetches never overlap
    /// and callers that want one meanwhile wait for it.
    gate: tokio::sync::Mutex<Option<Instant>>,
    /// Fetches started (for logs and tests).
    fetches: AtomicU64,
}

impl fmt::Debug for RemoteJwks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteJwks")
            .field("fetcher", &self.fetcher)
            .field("kids", &self.kids())
            .finish_non_exhaustive()
    }
}

impl RemoteJwks {
    /// Fetches the keys once; fails when that fetch does.
    pub async fn start(
        fetcher: Box<dyn Fetch>,
        settings: RemoteSettings,
    ) -> Result<Arc<RemoteJwks>, JwksError> {
        let remote = RemoteJwks {
            fetcher,
            settings,
            keys: RwLock::new(Arc::new(KeyMap::new())),
            generation: AtomicU64::new(0),
            gate: tokio::sync::Mutex::new(None),
            fetches: AtomicU64::new(0),
        };
        remote.refresh().await?;
        Ok(Arc::new(remote))
    }

    /// The key named `kid`, as last fetched.
    pub(crate) fn key(&self, kid: &str) -> Option<Arc<VerifyKey>> {
        self.snapshot().get(kid).cloned()
    }

    fn snapshot(&self) -> Arc<KeyMap> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The `kid`s of the keys as last fetched, sorted.
    pub fn kids(&self) -> Vec<String> {
        let mut kids: Vec<String> = self.snapshot().keys().cloned().collect();
        kids.sort();
        kids
    }

    /// Changes whenever a fetch drops or replaces a key.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Fetches started so far, failed ones included.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// Fetches now (after a fetch already running) and installs what it brings; on an error
    /// the keys stay as they are.
    pub async fn refresh(&self) -> Result<(), JwksError> {
        let mut last = self.gate.lock().await;
        *last = Some(Instant::now());
        self.fetch_and_install("scheduled").await
    }

    /// For a token naming `kid`, which no key has: fetches again unless a fetch started less
    /// than `refetch_min_interval` ago, and says whether `kid` is known afterwards. A caller
    /// that finds a fetch running waits for it and then sees its result.
    pub async fn refetch_for(&self, kid: &str) -> bool {
        let mut last = self.gate.lock().await;
        if self.key(kid).is_some() {
            return true;
        }
        if last.is_some_and(|at| at.elapsed() < self.settings.refetch_min_interval) {
            return false;
        }
        *last = Some(Instant::now());
        let _ = self.fetch_and_install("unknown kid").await;
        self.key(kid).is_some()
    }

    /// One fetch, bounded in time; installs the keys it brings or logs why not.
    async fn fetch_and_install(&self, reason: &'static str) -> Result<(), JwksError> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let timeout = self.settings.fetch_timeout;
        let fetched = match tokio::time::timeout(timeout, self.fetcher.fetch()).await {
            Ok(fetched) => fetched,
            Err(_) => Err(JwksError::Timeout(timeout)),
        };
        let keys = fetched.and_then(|bytes| {
            if bytes.len() > JWKS_BYTES_MAX {
                return Err(JwksError::TooLarge);
            }
            parse_jwks(&bytes, &self.settings.verifier, &self.settings.issuer)
                .map_err(JwksError::Invalid)
        });
        match keys {
            Ok(keys) => {
                self.install(keys);
                Ok(())
            }
            Err(error) => {
                tracing::error!(
                    fetcher = ?self.fetcher,
                    %error,
                    reason,
                    "JWKS fetch failed; keeping the cached keys"
                );
                Err(error)
            }
        }
    }

    /// Replaces the snapshot; a key dropped or changed moves the generation on.
    fn install(&self, keys: KeyMap) {
        let mut current = self.keys.write().unwrap_or_else(|p| p.into_inner());
        let dropped = current
            .iter()
            .any(|(kid, old)| keys.get(kid).is_none_or(|new| new.digest != old.digest));
        let added = keys.keys().any(|kid| !current.contains_key(kid));
        if dropped {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        if dropped || added {
            let mut kids: Vec<&String> = keys.keys().collect();
            kids.sort();
            tracing::info!(?kids, "JWKS keys replaced");
        }
        *current = Arc::new(keys);
    }

    /// Refreshes every `every` until `stop`. After a failed fetch the next comes sooner (after
    /// `refetch_min_interval`, if shorter), so that a provider back from an outage is read
    /// again soon without being hammered while it is down.
    pub async fn run(self: Arc<Self>, every: Duration, mut stop: watch::Receiver<bool>) {
        let mut wait = every;
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                () = tokio::time::sleep(wait) => {}
            }
            wait = match self.refresh().await {
                Ok(()) => every,
                Err(_) => every.min(self.settings.refetch_min_interval),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{AuthError, DevClaims, DevIssuer, Verifier};
    use ledger::TenantId;
    use std::sync::Mutex;

    /// Serves whatever document it holds, counting fetches; can fail or stall.
    #[derive(Debug)]
    struct Fake {
        answer: Mutex<Result<Vec<u8>, JwksError>>,
        delay: Mutex<Duration>,
        calls: AtomicU64,
    }

    impl Default for Fake {
        fn default() -> Fake {
            Fake {
                answer: Mutex::new(Err(JwksError::Status(404))),
                delay: Mutex::new(Duration::ZERO),
                calls: AtomicU64::new(0),
            }
        }
    }

    impl Fake {
        fn serve(&self, answer: Result<Vec<u8>, JwksError>) {
            *self.answer.lock().expect("lock") = answer;
        }
    }

    impl Fetch for Arc<Fake> {
        fn fetch(&self) -> FetchFuture<'_> {
            Box::pin(async move {
                self.calls.fetch_add(1, Ordering::SeqCst);
                let delay = *self.delay.lock().expect("lock");
                tokio::time::sleep(delay).await;
                self.answer.lock().expect("lock").clone()
            })
        }
    }

    const ISSUER: &str = "https://idp.example";

    fn jwks(issuers: &[&DevIssuer]) -> Vec<u8> {
        use base64::Engine;
        let keys: Vec<serde_json::Value> = issuers
            .iter()
            .map(|i| {
                serde_json::json!({
                    "kty": "OKP", "crv": "Ed25519", "kid": i.kid, "use": "sig",
                    "x": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&i.public_key),
                })
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({ "keys": keys })).expect("json")
    }

    fn issuer() -> (tempfile::TempDir, DevIssuer) {
        let dir = tempfile::tempdir().expect("tempdir");
        let issuer = DevIssuer::ensure(dir.path()).expect("issuer");
        (dir, issuer)
    }

    fn token(issuer: &DevIssuer) -> String {
        let tenant = TenantId::new("acme").expect("tenant");
        let claims: DevClaims = DevIssuer::claims("strongroom", "u", &tenant, &[], 600);
        issuer
            .sign(&DevClaims {
                iss: ISSUER.into(),
                ..claims
            })
            .expect("sign")
    }

    fn settings(refetch_ms: u64) -> RemoteSettings {
        RemoteSettings {
            verifier: crate::auth::VerifierSettings {
                audience: "strongroom".into(),
                leeway_s: 30,
                cache_len_max: 100,
            },
            issuer: ISSUER.into(),
            refetch_min_interval: Duration::from_millis(refetch_ms),
            fetch_timeout: Duration::from_millis(300),
        }
    }

    async fn verifier(fake: &Arc<Fake>, refetch_ms: u64) -> (Verifier, Arc<RemoteJwks>) {
        let remote = RemoteJwks::start(Box::new(fake.clone()), settings(refetch_ms))
            .await
            .expect("first fetch");
        let mut verifier = Verifier::new(&settings(refetch_ms).verifier);
        verifier.set_remote(remote.clone());
        (verifier, remote)
    }

    #[tokio::test]
    async fn the_first_fetch_must_succeed() {
        let fake = Arc::new(Fake::default());
        fake.serve(Err(JwksError::Connect("refused".into())));
        let err = RemoteJwks::start(Box::new(fake.clone()), settings(100))
            .await
            .expect_err("no keys");
        assert_eq!(err, JwksError::Connect("refused".into()));
        fake.serve(Ok(br#"{"keys":[]}"#.to_vec()));
        assert!(matches!(
            RemoteJwks::start(Box::new(fake.clone()), settings(100)).await,
            Err(JwksError::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn an_unknown_kid_refetches_at_a_bounded_rate() {
        let (_a, old) = issuer();
        let (_b, new) = issuer();
        let fake = Arc::new(Fake::default());
        fake.serve(Ok(jwks(&[&old])));
        let (verifier, remote) = verifier(&fake, 300).await;
        verifier
            .verify_refreshing(&token(&old))
            .await
            .expect("known");
        // The provider rotates; right after the start fetch, no refetch yet.
        fake.serve(Ok(jwks(&[&old, &new])));
        assert_eq!(
            verifier.verify_refreshing(&token(&new)).await,
            Err(AuthError::UnknownKey)
        );
        assert_eq!(remote.fetches(), 1);
        tokio::time::sleep(Duration::from_millis(350)).await;
        verifier
            .verify_refreshing(&token(&new))
            .await
            .expect("rotated in");
        assert_eq!(remote.fetches(), 2);
        // A flood of random kids, concurrently, with a slow provider: one more fetch at most.
        tokio::time::sleep(Duration::from_millis(350)).await;
        *fake.delay.lock().expect("lock") = Duration::from_millis(50);
        let (stranger_dir, _) = issuer();
        let verifier = Arc::new(verifier);
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let verifier = verifier.clone();
                let mut stranger =
                    DevIssuer::load(&DevIssuer::key_path(stranger_dir.path())).expect("load");
                stranger.kid = format!("random-{i}");
                let token = token(&stranger);
                tokio::spawn(async move { verifier.verify_refreshing(&token).await })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.expect("join"), Err(AuthError::UnknownKey));
        }
        assert_eq!(remote.fetches(), 3, "200 unknown kids, one fetch");
        assert_eq!(fake.calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_failing_provider_leaves_the_cached_keys() {
        let (_a, old) = issuer();
        let fake = Arc::new(Fake::default());
        fake.serve(Ok(jwks(&[&old])));
        let (verifier, remote) = verifier(&fake, 100).await;
        let good = token(&old);
        verifier.verify(&good).expect("valid");
        let hmac = br#"{"keys":[{"kty":"oct","kid":"h","k":"c2VjcmV0"}]}"#.to_vec();
        let no_kid = br#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#.to_vec();
        for answer in [
            Err(JwksError::Status(503)),
            Err(JwksError::TooLarge),
            Ok(b"<html>".to_vec()),
            Ok(br#"{"keys":[]}"#.to_vec()),
            Ok(hmac),
            Ok(no_kid),
            Ok(vec![b' '; JWKS_BYTES_MAX + 1]),
        ] {
            fake.serve(answer.clone());
            assert!(remote.refresh().await.is_err(), "{answer:?}");
            assert_eq!(remote.kids(), vec![old.kid.clone()], "{answer:?}");
            // Not from the cache alone: a new token needs the key.
            let fresh = token(&old);
            verifier.verify(&fresh).expect("still trusted");
        }
        // A stalled provider: the fetch times out, the keys stay.
        fake.serve(Ok(jwks(&[])));
        *fake.delay.lock().expect("lock") = Duration::from_secs(5);
        let started = Instant::now();
        assert_eq!(
            remote.refresh().await,
            Err(JwksError::Timeout(Duration::from_millis(300)))
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        verifier.verify(&token(&old)).expect("still trusted");
    }

    #[tokio::test]
    async fn a_dropped_key_stops_working_even_for_cached_tokens() {
        let (_a, old) = issuer();
        let (_b, new) = issuer();
        let fake = Arc::new(Fake::default());
        fake.serve(Ok(jwks(&[&old, &new])));
        let (verifier, remote) = verifier(&fake, 100).await;
        let cached = token(&old);
        verifier.verify(&cached).expect("valid");
        let generation = remote.generation();
        // Fetching the same keys again changes nothing.
        remote.refresh().await.expect("same");
        assert_eq!(remote.generation(), generation);
        verifier.verify(&cached).expect("still cached");
        fake.serve(Ok(jwks(&[&new])));
        remote.refresh().await.expect("rotated out");
        assert_ne!(remote.generation(), generation);
        assert_eq!(verifier.verify(&cached), Err(AuthError::UnknownKey));
        verifier.verify(&token(&new)).expect("the new key works");
    }
}
