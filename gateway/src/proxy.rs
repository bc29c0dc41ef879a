//! The gateway alone in front of a remote ledger (`strongroom serve --upstream URL`).
//!
//! The gateway keeps every edge duty (TLS, limits, tokens, the route policy, request ids) and
//! forwards what passes to the ledger (`strongroom ledger`) over pooled keep-alive connections.
//! Per request, in order:
//! 1. The route and method must be one the API serves (the same table the combined server
//!    routes), else 404/405 here; `/health/*` and `/openapi.json` are answered here.
//! 2. The bearer token is verified and the route policy checked, exactly as in the combined
//!    server ([`crate::api::extract::authorize`]).
//! 3. The body is read within `body_bytes_max` (so a retry can send it again).
//! 4. The circuit breaker ([`Breaker`]) may refuse at once (503 `upstream-unavailable`) while
//!    the ledger is failing, instead of piling requests onto it.
//! 5. The request goes upstream without hop-by-hop headers and without the bearer token, with
//!    the request id, a W3C `traceparent` (the caller's trace, our span), `X-Forwarded-For` and
//!    the internal assertion ([`crate::internal`]) that tells the ledger who is calling.
//! 6. A connection that could not be made is retried for any request (nothing was sent). A
//!    request that was sent and got no answer is retried only if it is idempotent: GET, HEAD,
//!    OPTIONS, or a POST with an `Idempotency-Key` (the ledger answers a repeat with the first
//!    outcome). At most `upstream_retries_max` retries, with a short backoff.
//! 7. The answer comes back without hop-by-hop headers; the edge adds the request id and the
//!    security headers.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, StatusCode, Uri};
use axum::response::Response;
use axum::routing::{MethodFilter, MethodRouter};
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::api::extract::{self, IDEMPOTENCY_KEY};
use crate::api::problem::{ApiError, ProblemKind, REQUEST};
use crate::api::{OPENAPI_PATH, REQUEST_ID};
use crate::auth::Verifier;
use crate::internal::{Bound, IDENTITY_HEADER, InternalKey};
use crate::mtls::CertTenants;
use crate::policy::{Policy, ServedRoute};
use crate::ratelimit::RateLimits;

/// Default retries of a failed upstream request.
pub const DEFAULT_UPSTREAM_RETRIES: u32 = 2;
/// Most retries that may be configured.
pub const UPSTREAM_RETRIES_MAX: u32 = 5;
/// First retry's backoff; doubled for each further one.
pub const RETRY_BACKOFF: Duration = Duration::from_millis(20);
/// Default longest wait for a connection to the ledger, milliseconds.
pub const DEFAULT_UPSTREAM_CONNECT_TIMEOUT_MS: u64 = 1_000;
/// Default most idle keep-alive connections kept to the ledger.
pub const DEFAULT_UPSTREAM_IDLE_MAX: usize = 256;
/// How long an idle upstream connection is kept.
pub const UPSTREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default consecutive failures that open the circuit breaker.
pub const DEFAULT_BREAKER_FAILURES: u32 = 5;
/// Default time the breaker stays open before it lets one trial request through, milliseconds.
pub const DEFAULT_BREAKER_OPEN_MS: u64 = 5_000;

/// The header of a W3C trace context.
pub const TRACEPARENT: &str = "traceparent";

/// Headers that describe one connection, not the message (RFC 9110 section 7.6.1), plus
/// `proxy-connection`, which old clients still send. Never forwarded either way.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// How the gateway reaches the ledger.
#[derive(Clone, Debug)]
pub struct UpstreamSettings {
    /// `http://` or `https://` host and port, no path.
    pub url: Uri,
    /// CA bundle that the ledger's certificate must chain to (https only).
    pub ca_file: Option<std::path::PathBuf>,
    /// Retries after a failure (see the module documentation for which requests).
    pub retries_max: u32,
    /// Longest wait for a connection.
    pub connect_timeout: Duration,
    /// Most idle connections kept.
    pub idle_max: usize,
    /// Consecutive failures that open the breaker.
    pub breaker_failures: u32,
    /// How long it stays open.
    pub breaker_open: Duration,
}

/// Why the upstream client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The CA bundle.
    #[error("upstream_ca_file: {0}")]
    Ca(String),
    /// TLS setup.
    #[error("upstream TLS: {0}")]
    Tls(String),
}

/// The pooled HTTP client to the ledger.
pub type UpstreamClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// What the gateway checks before it forwards a request (the same as the combined server).
#[derive(Debug)]
pub struct Checks {
    /// Bearer tokens.
    pub verifier: Verifier,
    /// Scopes and roles per route.
    pub policy: Policy,
    /// Tenants that need a client certificate.
    pub cert_tenants: CertTenants,
    /// Rates per tenant.
    pub rate_limits: Arc<RateLimits>,
}

/// What the proxy's handlers share: one per HTTP thread (see [`ProxyState::sibling`]).
pub struct ProxyState {
    shared: Arc<Shared>,
    client: UpstreamClient,
}

/// What every thread's [`ProxyState`] shares.
struct Shared {
    checks: Checks,
    key: InternalKey,
    scheme: axum::http::uri::Scheme,
    authority: axum::http::uri::Authority,
    retries_max: u32,
    breaker: Breaker,
    draining: Arc<AtomicBool>,
    body_bytes_max: usize,
    settings: UpstreamSettings,
}

impl std::fmt::Debug for ProxyState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyState")
            .field("upstream", &self.shared.authority)
            .finish_non_exhaustive()
    }
}

impl ProxyState {
    /// The proxy's state: the checks, the key for assertions, and a pooled client.
    pub fn new(
        settings: &UpstreamSettings,
        checks: Checks,
        key: InternalKey,
        draining: Arc<AtomicBool>,
        body_bytes_max: usize,
    ) -> Result<ProxyState, UpstreamError> {
        let parts = settings.url.clone().into_parts();
        let shared = Arc::new(Shared {
            checks,
            key,
            scheme: parts.scheme.unwrap_or(axum::http::uri::Scheme::HTTP),
            authority: parts
                .authority
                .ok_or_else(|| UpstreamError::Tls("the upstream URL has no host".into()))?,
            retries_max: settings.retries_max,
            breaker: Breaker::new(settings.breaker_failures, settings.breaker_open),
            draining,
            body_bytes_max,
            settings: settings.clone(),
        });
        Ok(ProxyState {
            client: client(settings)?,
            shared,
        })
    }

    /// The same state with a pool of its own: each HTTP thread keeps its upstream connections
    /// (whose tasks run on the runtime that made them), so a request and its upstream
    /// exchange stay on one thread. The checks, the breaker and the counters are shared.
    pub fn sibling(&self) -> Result<ProxyState, UpstreamError> {
        Ok(ProxyState {
            client: client(&self.shared.settings)?,
            shared: self.shared.clone(),
        })
    }
}

/// A pooled client to the ledger: HTTP/1.1 keep-alive, over TLS verified against the
/// configured CA for `https://`.
pub fn client(settings: &UpstreamSettings) -> Result<UpstreamClient, UpstreamError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca) = &settings.ca_file {
        let certs = crate::tls::load_certs(ca).map_err(|e| UpstreamError::Ca(e.to_string()))?;
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| UpstreamError::Ca(e.to_string()))?;
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| UpstreamError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(settings.connect_timeout));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(UPSTREAM_IDLE_TIMEOUT)
        .pool_max_idle_per_host(settings.idle_max)
        .build(connector))
}

/// The proxy's routes: every served route forwards; health and the API description are local.
pub fn routes(state: Arc<ProxyState>, served: &[ServedRoute]) -> Router {
    let mut by_path: BTreeMap<&str, MethodRouter<Arc<ProxyState>>> = BTreeMap::new();
    for route in served {
        if route.path.starts_with("/health/") || route.path == OPENAPI_PATH {
            continue;
        }
        let Ok(filter) = MethodFilter::try_from(route.method.clone()) else {
            continue;
        };
        let entry = by_path.remove(route.path.as_str()).unwrap_or_default();
        by_path.insert(&route.path, entry.on(filter, forward));
    }
    let mut router = Router::new();
    for (path, methods) in by_path {
        router = router.route(path, methods);
    }
    let doc: Arc<str> = crate::api::openapi().to_json().unwrap_or_default().into();
    router
        .route_layer(axum::middleware::from_fn(crate::auditlog::note_route))
        .route("/health/live", axum::routing::get(live))
        .route("/health/ready", axum::routing::get(ready))
        .route(
            OPENAPI_PATH,
            axum::routing::get(move || {
                let doc = doc.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, "application/json")],
                        doc.to_string(),
                    )
                }
            }),
        )
        .with_state(state)
}

async fn live() -> Response {
    health(StatusCode::OK, "live")
}

/// Ready unless draining. The ledger's health is not the gateway's: while the breaker is open
/// every gateway task would fail alike, and pulling them all from the load balancer only turns
/// a clear 503 problem into connection errors.
async fn ready(State(state): State<Arc<ProxyState>>) -> Response {
    if state.shared.draining.load(Ordering::SeqCst) {
        health(StatusCode::SERVICE_UNAVAILABLE, "not_ready")
    } else {
        health(StatusCode::OK, "ready")
    }
}

fn health(status: StatusCode, text: &str) -> Response {
    crate::api::reply(
        status,
        &crate::api::dto::HealthResponse {
            status: text.into(),
        },
        false,
    )
}

/// Marks an answer that came from the ledger (which recorded the request), as opposed to one
/// the gateway made itself.
#[derive(Clone, Copy, Debug)]
pub struct FromUpstream;

/// Whether a request may be sent twice: the method is safe, or the ledger deduplicates it.
fn idempotent(method: &Method, headers: &HeaderMap) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
        || (*method == Method::POST && headers.contains_key(IDEMPOTENCY_KEY))
}

async fn forward(
    State(state): State<Arc<ProxyState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let shared = &state.shared;
    let checks = &shared.checks;
    let identity = extract::bearer_identity(
        &parts,
        &checks.verifier,
        &checks.cert_tenants,
        &checks.rate_limits,
    )
    .await?;
    extract::authorize(&parts, &identity, &checks.policy, None)?;
    let body = extract::read_body(
        Request::from_parts(parts.clone(), body),
        shared.body_bytes_max,
    )
    .await?;
    let request_id = REQUEST
        .try_with(|c| c.request_id.clone())
        .unwrap_or_else(|_| ulid::Ulid::generate().to_string());
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let uri = Uri::builder()
        .scheme(shared.scheme.clone())
        .authority(shared.authority.clone())
        .path_and_query(path_and_query.as_str())
        .build()
        .map_err(|_| ApiError::new(ProblemKind::NotFound, "no such route"))?;
    let mut headers = parts.headers;
    strip_hop_by_hop(&mut headers);
    headers.remove(header::AUTHORIZATION);
    headers.remove(header::HOST);
    // The partner's address goes into the assertion for the ledger's audit record.
    let client = checks.rate_limits.client_ip(Some(peer.ip()), &headers);
    let assertion = shared.key.assert_from(
        &identity,
        Some(client),
        Bound {
            method: parts.method.as_str(),
            path_and_query: &path_and_query,
            request_id: &request_id,
        },
        jsonwebtoken::get_current_timestamp(),
    );
    let value = |s: &str| {
        HeaderValue::from_str(s).map_err(|_| ApiError::new(ProblemKind::Internal, "bad header"))
    };
    headers.insert(IDENTITY_HEADER, value(&assertion)?);
    headers.insert(REQUEST_ID, value(&request_id)?);
    headers.insert(TRACEPARENT, value(&traceparent(headers.get(TRACEPARENT)))?);
    let forwarded = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(earlier) => format!("{earlier}, {}", peer.ip()),
        None => peer.ip().to_string(),
    };
    headers.insert("x-forwarded-for", value(&forwarded)?);
    headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));

    let retry_any = idempotent(&parts.method, &headers);
    let mut attempt = 0;
    loop {
        let trial = match shared.breaker.admit(shared.breaker.now_ms()) {
            Admission::Refused { retry_after_s } => {
                return Err(ApiError::new(
                    ProblemKind::UpstreamUnavailable,
                    "the ledger has been failing; requests are held back for a moment",
                )
                .retry_after(u32::try_from(retry_after_s).unwrap_or(u32::MAX)));
            }
            Admission::Go { trial } => trial,
        };
        let mut upstream = hyper::Request::new(Full::new(body.clone()));
        *upstream.method_mut() = parts.method.clone();
        *upstream.uri_mut() = uri.clone();
        *upstream.headers_mut() = headers.clone();
        match state.client.request(upstream).await {
            Ok(response) => {
                let status = response.status();
                if matches!(
                    status,
                    StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT
                ) {
                    shared.breaker.failure(shared.breaker.now_ms(), trial);
                } else {
                    shared.breaker.success();
                }
                let (mut head, incoming) = response.into_parts();
                strip_hop_by_hop(&mut head.headers);
                // The ledger recorded this request; the gateway writes no second record.
                head.extensions.insert(FromUpstream);
                return Ok(Response::from_parts(head, Body::new(incoming)));
            }
            Err(error) => {
                shared.breaker.failure(shared.breaker.now_ms(), trial);
                // A connection that was never made carried nothing: safe to retry any request.
                let retryable = error.is_connect() || retry_any;
                if retryable && attempt < shared.retries_max {
                    tracing::info!(%error, attempt, "upstream request failed; retrying");
                    tokio::time::sleep(RETRY_BACKOFF * 2u32.pow(attempt)).await;
                    attempt += 1;
                    continue;
                }
                tracing::warn!(%error, attempt, "upstream request failed");
                let detail = if error.is_connect() || parts.method == Method::GET {
                    "the ledger did not answer; nothing was done".to_owned()
                } else {
                    "the ledger did not answer; a write may still have been committed: retry \
                     with the same Idempotency-Key to learn its outcome"
                        .to_owned()
                };
                return Err(ApiError::new(ProblemKind::UpstreamFailed, detail).retry_after(1));
            }
        }
    }
}

/// Removes hop-by-hop headers, including those the `Connection` header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
}

/// The `traceparent` to send upstream: the caller's trace id and flags with a new span id of
/// ours, or a new trace when the caller sent none or an invalid one (W3C Trace Context,
/// version 00).
pub fn traceparent(given: Option<&HeaderValue>) -> String {
    let span = (ulid::Ulid::generate().0 as u64).max(1);
    if let Some(given) = given.and_then(|v| v.to_str().ok())
        && let Some((trace, flags)) = parse_traceparent(given)
    {
        return format!("00-{trace}-{span:016x}-{flags}");
    }
    let trace = ulid::Ulid::generate().0.max(1);
    format!("00-{trace:032x}-{span:016x}-01")
}

/// The trace id and flags of a valid version-00 `traceparent`.
fn parse_traceparent(value: &str) -> Option<(&str, &str)> {
    let mut parts = value.split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let zero = |s: &str| s.bytes().all(|b| b == b'0');
    (parts.next().is_none()
        && version == "00"
        && hex(trace, 32)
        && !zero(trace)
        && hex(parent, 16)
        && !zero(parent)
        && hex(flags, 2))
    .then_some((trace, flags))
}

/// What the breaker says about a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Send it; `trial` when it is the one request let through a half-open breaker.
    Go {
        /// Whether this is the half-open breaker's trial request.
        trial: bool,
    },
    /// Do not: the breaker is open.
    Refused {
        /// Seconds until it lets a trial through.
        retry_after_s: u64,
    },
}

/// A circuit breaker on the upstream: closed while requests succeed; open (refusing at once)
/// for `open_for` after `failures_max` consecutive failures; then half-open, letting one trial
/// request through, whose outcome closes or reopens it. Lock-free: a few atomics read on every
/// request.
#[derive(Debug)]
pub struct Breaker {
    failures: AtomicU32,
    /// When the open state ends, ms since `epoch`; 0 when closed.
    open_until_ms: AtomicU64,
    /// When the half-open breaker let its trial through, ms since `epoch`; 0 when none is out.
    /// A trial that never reports (its request was dropped at the timeout, say) is given up
    /// after `open_for`, and another one goes.
    trial_since_ms: AtomicU64,
    failures_max: u32,
    open_for: Duration,
    epoch: Instant,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(failures_max: u32, open_for: Duration) -> Breaker {
        Breaker {
            failures: AtomicU32::new(0),
            open_until_ms: AtomicU64::new(0),
            trial_since_ms: AtomicU64::new(0),
            failures_max: failures_max.max(1),
            open_for,
            epoch: Instant::now(),
        }
    }

    /// Now, on the breaker's clock.
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether a request may go now.
    pub fn admit(&self, now_ms: u64) -> Admission {
        let until = self.open_until_ms.load(Ordering::Acquire);
        if until == 0 {
            return Admission::Go { trial: false };
        }
        if now_ms < until {
            return Admission::Refused {
                retry_after_s: (until - now_ms).div_ceil(1000).max(1),
            };
        }
        // Half-open: one request finds out whether the ledger is back.
        let since = self.trial_since_ms.load(Ordering::Acquire);
        let given_up = since != 0 && now_ms >= since.saturating_add(self.open_for_ms());
        if (since == 0 || given_up)
            && self
                .trial_since_ms
                .compare_exchange(since, now_ms.max(1), Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            Admission::Go { trial: true }
        } else {
            Admission::Refused { retry_after_s: 1 }
        }
    }

    /// A request got an answer: the breaker closes.
    pub fn success(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
        if self.open_until_ms.load(Ordering::Relaxed) != 0 {
            self.open_until_ms.store(0, Ordering::Release);
            self.trial_since_ms.store(0, Ordering::Release);
            tracing::info!("upstream answers again; circuit closed");
        }
    }

    /// A request failed; enough in a row, or a failed trial, open the breaker.
    pub fn failure(&self, now_ms: u64, trial: bool) {
        let failures = self
            .failures
            .fetch_add(1, Ordering::AcqRel)
            .saturating_add(1);
        if trial || failures >= self.failures_max {
            let until = now_ms.saturating_add(self.open_for_ms()).max(1);
            if self.open_until_ms.swap(until, Ordering::AcqRel) == 0 {
                tracing::warn!(
                    failures,
                    open_ms = self.open_for.as_millis() as u64,
                    "upstream failing; circuit open"
                );
            }
            self.trial_since_ms.store(0, Ordering::Release);
        }
    }

    fn open_for_ms(&self) -> u64 {
        u64::try_from(self.open_for.as_millis()).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_opens_half_opens_and_closes() {
        let b = Breaker::new(3, Duration::from_millis(5_000));
        let go = Admission::Go { trial: false };
        assert_eq!(b.admit(0), go);
        b.failure(10, false);
        b.failure(20, false);
        b.success();
        b.failure(30, false);
        b.failure(40, false);
        assert_eq!(b.admit(41), go, "a success resets the count");
        b.failure(50, false);
        assert_eq!(b.admit(51), Admission::Refused { retry_after_s: 5 });
        assert_eq!(b.admit(4_100), Admission::Refused { retry_after_s: 1 });
        // Half-open: one trial, the others still refused.
        assert_eq!(b.admit(5_050), Admission::Go { trial: true });
        assert_eq!(b.admit(5_051), Admission::Refused { retry_after_s: 1 });
        // The trial fails: open again for the whole period.
        b.failure(5_060, true);
        assert_eq!(b.admit(5_061), Admission::Refused { retry_after_s: 5 });
        assert_eq!(b.admit(10_060), Admission::Go { trial: true });
        // A trial that never reports is given up after the open period; another one goes.
        assert_eq!(b.admit(15_059), Admission::Refused { retry_after_s: 1 });
        assert_eq!(b.admit(15_060), Admission::Go { trial: true });
        b.success();
        assert_eq!(b.admit(15_061), go);
        assert_eq!(b.admit(15_062), go);
    }

    #[test]
    fn traceparent_keeps_the_callers_trace() {
        let given =
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let sent = traceparent(Some(&given));
        assert!(
            sent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{sent}"
        );
        assert!(sent.ends_with("-01"));
        assert_ne!(&sent[36..52], "00f067aa0ba902b7", "our own span id");
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "garbage",
        ] {
            let sent = traceparent(Some(&HeaderValue::from_static(bad)));
            assert!(parse_traceparent(&sent).is_some(), "{sent}");
            assert!(!sent.contains("4bf92f3577b34da6"), "{bad} gets a new trace");
        }
        assert!(parse_traceparent(&traceparent(None)).is_some());
    }

    #[test]
    fn hop_by_hop_headers_are_removed() {
        let mut h = HeaderMap::new();
        for (name, value) in [
            ("connection", "close, x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("proxy-authorization", "Basic x"),
            ("content-type", "application/json"),
            ("idempotency-key", "k"),
        ] {
            h.insert(name, HeaderValue::from_static(value));
        }
        strip_hop_by_hop(&mut h);
        let left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["content-type", "idempotency-key"]);
    }

    #[test]
    fn which_requests_are_retried() {
        let mut keyed = HeaderMap::new();
        keyed.insert(IDEMPOTENCY_KEY, HeaderValue::from_static("k"));
        assert!(idempotent(&Method::GET, &HeaderMap::new()));
        assert!(idempotent(&Method::POST, &keyed));
        assert!(!idempotent(&Method::POST, &HeaderMap::new()));
        assert!(!idempotent(&Method::PATCH, &keyed));
    }
}
