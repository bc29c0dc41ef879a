//! The REST API: routes, the tower stack around them, and the OpenAPI description.
//!
//! Routes are registered through `utoipa-axum`, so each handler and its OpenAPI operation come
//! from one annotation; `/openapi.json` serves the document built from the same registrations.
//!
//! The stack, outermost first (see [`router`]):
//! 1. `edge`: request id (taken from `x-request-id` when well-formed, else a new ULID), a
//!    span and an access log line, the per-address rate limit (429 `rate-limited`, before the
//!    token is looked at), the concurrency limit (503 `overloaded`), the request timeout (503
//!    `timeout`), the task-locals that problem bodies read their `request_id` and `instance`
//!    from and that the tenant's rate-limit standing is recorded in, and the `RateLimit` fields.
//! 2. catch-panic: a bug answers 500 `internal` instead of dropping the connection.
//! 3. body limit: `DefaultBodyLimit`, enforced where the body is read (413 `payload-too-large`).
//! 4. the handlers, whose extractors check token and scope, `Idempotency-Key`, and the body.

pub mod accounts;
pub mod audit_log;
pub mod cards;
pub mod dto;
pub mod extract;
pub mod ops;
pub mod problem;
pub mod transfers;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ledger::Ledger;
use serde::Serialize;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tracing::Instrument;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use self::problem::{ApiError, ProblemKind, REQUEST, RequestContext};
use crate::auth::Verifier;
use crate::ratelimit::{self, RateLimits, Standing};

/// The header carrying the request id, both ways.
pub const REQUEST_ID: &str = "x-request-id";
/// Set on a response that replays an earlier request with the same `Idempotency-Key`.
pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";
/// Longest client-supplied request id kept; longer or odd ones are replaced.
pub const REQUEST_ID_LEN_MAX: usize = 64;

/// What every handler shares.
#[derive(Debug)]
pub struct AppState {
    /// The ledger.
    pub ledger: Ledger,
    /// Token verification.
    pub verifier: Verifier,
    /// Set when this process is a ledger run alone (`strongroom ledger`): identities come
    /// from the gateway's internal assertion, never from bearer tokens.
    pub internal: Option<crate::internal::InternalKey>,
    /// Set on shutdown: readiness turns false at once.
    pub draining: Arc<AtomicBool>,
    /// Request body limit in bytes.
    pub body_bytes_max: usize,
    /// Who may call which route.
    pub policy: crate::policy::Policy,
    /// Tenants whose requests need a client certificate (`mtls_tenants`).
    pub cert_tenants: crate::mtls::CertTenants,
    /// Request rates per client address (checked by `edge`) and per tenant (checked once the
    /// token verified); shared with `Edge` and the background sweep.
    pub rate_limits: Arc<RateLimits>,
    /// How much of a card number answers show (`card_mask`).
    pub card_mask: ledger::card::MaskStyle,
}

/// What the outermost layer (`edge`) needs, in every role.
#[derive(Debug)]
pub struct Edge {
    /// End-to-end request timeout.
    pub request_timeout: Duration,
    /// Permits for requests being served (`concurrency_max`); a request that finds none is shed.
    pub in_flight: Arc<tokio::sync::Semaphore>,
    /// Request body limit in bytes.
    pub body_bytes_max: usize,
    /// Browser origins allowed (CORS).
    pub cors_origins: Vec<String>,
    /// Request rates: the per-address limit is checked here, before the token is looked at.
    pub rate_limits: Arc<RateLimits>,
    /// Most header fields in a request (`headers_max`).
    pub headers_max: usize,
    /// Most bytes in a request's head (`header_bytes_max`).
    pub header_bytes_max: usize,
    /// Who records every request (set once it started): this process's ledger, or, for the
    /// gateway alone, the forwarder that hands the ledger the records of what the gateway
    /// answers itself.
    pub audit: std::sync::OnceLock<crate::auditlog::Recorder>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Strongroom",
        description = "Double-entry ledger API. Every state-changing POST takes an `Idempotency-Key`; every error is an RFC 9457 problem."
    ),
    modifiers(&BearerAuth),
    components(schemas(problem::Problem)),
    tags(
        (name = "accounts", description = "Accounts, balances, history"),
        (name = "transfers", description = "Transfers, journal entries, batches, holds, reversals"),
        (name = "cards", description = "The card vault: tokenize, read masked, reveal, delete"),
        (name = "audit", description = "The audit log: records, signed checkpoints, inclusion and consistency proofs"),
        (name = "operations", description = "Health and trial balance"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.bearer_format = Some("JWT".into());
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// Every route and its OpenAPI operation, registered together.
fn api_routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(accounts::create_account, accounts::list_accounts))
        .routes(routes!(accounts::get_account))
        .routes(routes!(accounts::freeze_account))
        .routes(routes!(accounts::unfreeze_account))
        .routes(routes!(accounts::close_account))
        .routes(routes!(accounts::get_balance))
        .routes(routes!(accounts::list_entries))
        .routes(routes!(
            transfers::create_transfer,
            transfers::list_transfers
        ))
        .routes(routes!(transfers::create_batch))
        .routes(routes!(transfers::get_transfer))
        .routes(routes!(transfers::post_transfer))
        .routes(routes!(transfers::void_transfer))
        .routes(routes!(transfers::reverse_transfer))
        .routes(routes!(transfers::create_journal_entry))
        .routes(routes!(cards::tokenize_card))
        .routes(routes!(cards::get_card, cards::delete_card))
        .routes(routes!(cards::reveal_card))
        .routes(routes!(audit_log::list_events))
        .routes(routes!(audit_log::latest_checkpoints))
        .routes(routes!(audit_log::inclusion_proof))
        .routes(routes!(audit_log::consistency_proof))
        .routes(routes!(ops::trial_balance))
        .routes(routes!(ops::live))
        .routes(routes!(ops::ready))
}

/// The OpenAPI 3.1 document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_routes().into_openapi()
}

/// Every route the server serves, with the scopes its handler requires: the document's
/// operations and `/openapi.json`.
pub fn served_routes() -> Vec<crate::policy::ServedRoute> {
    let doc = serde_json::to_value(openapi()).unwrap_or_default();
    let mut routes = crate::policy::served_routes(&doc);
    routes.push(crate::policy::ServedRoute {
        method: axum::http::Method::GET,
        path: OPENAPI_PATH.to_owned(),
        scopes: Vec::new(),
    });
    routes
}

/// Where the OpenAPI document is served.
pub const OPENAPI_PATH: &str = "/openapi.json";

/// The whole application: routes, fallbacks, `/openapi.json`, and the stack around them.
pub fn router(state: Arc<AppState>, edge: Arc<Edge>) -> Router {
    let (routes, doc) = api_routes().split_for_parts();
    let doc_json: Arc<str> = doc.to_json().unwrap_or_default().into();
    // A ledger run alone also takes the records of what its gateway answered itself.
    let routes = if state.internal.is_some() {
        routes.route(
            crate::audit_forward::RECORDS_PATH,
            axum::routing::post(crate::audit_forward::append),
        )
    } else {
        routes
    };
    let routes = routes
        .route(
            OPENAPI_PATH,
            get(move || {
                let doc = doc_json.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, "application/json")],
                        doc.to_string(),
                    )
                }
            }),
        )
        .with_state(state)
        .route_layer(middleware::from_fn(crate::auditlog::note_route));
    stack(routes, edge)
}

/// The stack around a role's routes (the combined server's handlers, or the proxy's): answers
/// for unknown routes and methods, the body limit, panics caught, CORS, and `edge` outermost.
pub fn stack(routes: Router, edge_state: Arc<Edge>) -> Router {
    routes
        .fallback(|| async { ApiError::new(ProblemKind::NotFound, "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                ProblemKind::MethodNotAllowed,
                "this route does not take this method",
            )
        })
        .layer(DefaultBodyLimit::max(edge_state.body_bytes_max))
        .layer(CatchPanicLayer::custom(panic_problem))
        .layer(cors(&edge_state.cors_origins))
        .layer(middleware::from_fn_with_state(edge_state, edge))
}

fn panic_problem(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("handler panicked");
    ApiError::new(
        ProblemKind::Internal,
        "the request was refused; nothing was acknowledged",
    )
    .into_response()
}

fn request_id(req: &Request) -> String {
    let given = req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok());
    match given {
        Some(id)
            if !id.is_empty()
                && id.len() <= REQUEST_ID_LEN_MAX
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
                // Echoed and logged: one holding a card number is replaced, not masked.
                && !audit::identifier_holds_pan(id) =>
        {
            id.to_owned()
        }
        _ => ulid::Ulid::generate().to_string(),
    }
}

async fn edge(State(state): State<Arc<Edge>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request_id(&req);
    let method = req.method().clone();
    // Logged and quoted in problems (`instance`): card numbers masked here already, though
    // the log writer and the problem body would mask them again.
    let path = audit::mask_pans(req.uri().path()).into_owned();
    let span = tracing::info_span!("request", request_id = %id, %method, %path, tenant = tracing::field::Empty);
    // Heads over the limits get a problem body here; hyper's own limits (twice these) refuse
    // larger ones before they are parsed.
    let oversized = head_oversized(&req, state.headers_max, state.header_bytes_max);
    // Health checks are never limited or shed: an orchestrator must see a busy task alive.
    let health = path.starts_with("/health/");
    // The client address's budget first, before anything looks at the token: a flood of bad
    // tokens costs a map lookup each, not a signature check.
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let ip = if health {
        None
    } else {
        state.rate_limits.check_ip(peer, req.headers())
    };
    // The request's audit context: what is known before the token is read.
    let recorder = state
        .audit
        .get()
        .filter(|_| crate::auditlog::audited(&path));
    let scope = recorder.as_ref().map(|_| {
        ledger::audit_log::AuditScope::new(
            Some(state.rate_limits.client_ip(peer, req.headers()).to_string()),
            Some(id.clone()),
            crate::auditlog::trace_id(req.headers().get("traceparent")),
        )
    });
    let audit_method = req.method().clone();
    let audit_path = path.clone();
    let ip_refused = ip.filter(Standing::refused);
    let permit = if health || ip_refused.is_some() {
        None
    } else {
        Some(state.in_flight.clone().try_acquire_owned())
    };
    let context = RequestContext {
        request_id: id.clone(),
        path,
    };
    let timeout = state.request_timeout;
    let work = async move {
        if let Some(detail) = oversized {
            return ApiError::new(ProblemKind::HeadersTooLarge, detail).into_response();
        }
        if let Some(standing) = ip_refused {
            return ratelimit::refusal(&standing).into_response();
        }
        if let Some(Err(_)) = permit {
            return ApiError::new(
                ProblemKind::Overloaded,
                "too many requests in progress; nothing was done",
            )
            .retry_after(1)
            .into_response();
        }
        let response = match tokio::time::timeout(timeout, next.run(req)).await {
            Ok(response) => response,
            Err(_) => ApiError::new(
                ProblemKind::Timeout,
                format!(
                    "no answer within {} ms; a write may still have been committed: retry with \
                     the same Idempotency-Key to learn its outcome",
                    timeout.as_millis()
                ),
            )
            .retry_after(1)
            .into_response(),
        };
        drop(permit);
        response
    };
    let scoped = async {
        match &scope {
            Some(scope) => ledger::audit_log::scoped(scope.clone(), work).await,
            None => work.await,
        }
    };
    let (mut response, tenant) = REQUEST
        .scope(context, ratelimit::scope(scoped))
        .instrument(span.clone())
        .await;
    if let (Some(recorder), Some(scope)) = (recorder, &scope) {
        response = recorder
            .record(scope, &audit_method, &audit_path, response)
            .instrument(span.clone())
            .await;
    }
    let headers = response.headers_mut();
    let standings: Vec<Standing> = ip.into_iter().chain(tenant.into_iter().flatten()).collect();
    ratelimit::fields::write(headers, &standings);
    if let Ok(value) = HeaderValue::from_str(&id) {
        headers.insert(REQUEST_ID, value);
    }
    secure(headers);
    let status = response.status().as_u16();
    let latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    span.in_scope(|| tracing::info!(status, latency_us, "request"));
    response
}

/// Why a request's head is over the limits, if it is: more than `headers_max` fields, or more
/// than `header_bytes_max` bytes of request line and fields (each counted as `name: value`
/// and a line end, as HTTP/1.1 sends them).
fn head_oversized(req: &Request, headers_max: usize, header_bytes_max: usize) -> Option<String> {
    let headers = req.headers();
    if headers.len() > headers_max {
        return Some(format!(
            "{} header fields; at most {headers_max} are read",
            headers.len()
        ));
    }
    let target = req.uri().path_and_query().map_or(1, |p| p.as_str().len());
    let line = req.method().as_str().len() + target + 12;
    let bytes = headers.iter().fold(line, |sum, (name, value)| {
        sum + name.as_str().len() + value.len() + 4
    });
    (bytes > header_bytes_max)
        .then(|| format!("a request head of {bytes} bytes; at most {header_bytes_max} are read"))
}

/// CORS for the configured browser origins; with none, a layer that adds nothing (a preflight
/// then meets the router like any OPTIONS request: 405). Bearer tokens, not cookies: no
/// credentials mode.
fn cors(origins: &[String]) -> tower::util::Either<CorsLayer, tower::layer::util::Identity> {
    if origins.is_empty() {
        return tower::util::Either::Right(tower::layer::util::Identity::new());
    }
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    let name = header::HeaderName::from_static;
    tower::util::Either::Left(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([axum::http::Method::GET, axum::http::Method::POST])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                name(extract::IDEMPOTENCY_KEY),
                name(REQUEST_ID),
            ])
            .expose_headers([
                name(REQUEST_ID),
                name(IDEMPOTENT_REPLAYED),
                header::RETRY_AFTER,
                header::WWW_AUTHENTICATE,
                ratelimit::fields::RATELIMIT,
                ratelimit::fields::RATELIMIT_POLICY,
            ])
            .max_age(Duration::from_secs(600)),
    )
}

/// HTTP Strict Transport Security: two years, subdomains included.
pub const HSTS: &str = "max-age=63072000; includeSubDomains";

/// Headers every answer carries: browsers keep to HTTPS and do not sniff types; nothing is
/// cached unless the answer says otherwise (every ledger answer is sensitive).
fn secure(headers: &mut axum::http::HeaderMap) {
    headers.insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static(HSTS),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
}

/// A JSON answer; a replay says so. (`edge` marks every answer `no-store`.)
pub fn reply<T: Serialize>(status: StatusCode, body: &T, replayed: bool) -> Response {
    let bytes = match serde_json::to_vec(body) {
        Ok(bytes) => bytes,
        Err(error) => {
            tracing::error!(%error, "response serialization failed");
            return ApiError::new(ProblemKind::Internal, "the answer could not be written")
                .into_response();
        }
    };
    let mut response = (status, bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if replayed {
        headers.insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    response
}
