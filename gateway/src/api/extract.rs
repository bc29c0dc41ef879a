//! Extractors that turn every kind of bad input into the same problem responses.
//!
//! - [`Auth`]: a verified token with the route's scope; the type parameter names the scope, so a
//!   handler that takes `Auth<LedgerWrite>` cannot run without it.
//! - [`Json`] / [`OptionalJson`]: content type, size limit, syntax, unknown fields, types, then
//!   `validator` rules, each failure with its own problem type.
//! - [`Idempotency`]: the required `Idempotency-Key` header.
//! - [`Params`]: query parameters.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Query, Request};
use axum::http::HeaderMap;
use axum::http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::request::Parts;
use http_body_util::BodyExt;
use ledger::IdempotencyKey;
use ledger::limits::IDEMPOTENCY_KEY_LEN_MAX;
use serde::de::DeserializeOwned;
use serde_json::Value;
use validator::{Validate, ValidationErrors, ValidationErrorsKind};

use super::AppState;
use super::problem::{ApiError, ProblemKind};
use crate::auth::{AuthError, Identity, Verifier};
use crate::internal::{Bound, IDENTITY_HEADER};
use crate::mtls::{CertTenants, ClientCert};
use crate::policy::Policy;
use crate::ratelimit::RateLimits;

/// A scope a route requires.
pub trait Scope: Send + Sync + 'static {
    /// Its name in tokens.
    const NAME: &'static str;
}

/// `ledger:read`: read accounts, transfers, balances, history, trial balance.
#[derive(Debug)]
pub struct LedgerRead;
impl Scope for LedgerRead {
    const NAME: &'static str = "ledger:read";
}

/// `ledger:write`: every state change of the ledger.
#[derive(Debug)]
pub struct LedgerWrite;
impl Scope for LedgerWrite {
    const NAME: &'static str = "ledger:write";
}

/// `cards:read`: the masked form of the tenant's cards.
#[derive(Debug)]
pub struct CardsRead;
impl Scope for CardsRead {
    const NAME: &'static str = "cards:read";
}

/// `cards:write`: tokenize and delete cards.
#[derive(Debug)]
pub struct CardsWrite;
impl Scope for CardsWrite {
    const NAME: &'static str = "cards:write";
}

/// `cards:reveal`: a card's full number. No role grants it (`policies/routes.toml`): a token
/// must name it.
#[derive(Debug)]
pub struct CardsReveal;
impl Scope for CardsReveal {
    const NAME: &'static str = "cards:reveal";
}

/// `audit:read`: the audit log's records, checkpoints and proofs (the auditor role).
#[derive(Debug)]
pub struct AuditRead;
impl Scope for AuditRead {
    const NAME: &'static str = "audit:read";
}

/// A caller proven to hold scope `S`.
#[derive(Debug)]
pub struct Auth<S: Scope>(pub Arc<Identity>, PhantomData<S>);

impl<S: Scope> FromRequestParts<Arc<AppState>> for Auth<S> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let identity = verified(parts, state).await?;
        authorize(parts, &identity, &state.policy, Some(S::NAME))?;
        Ok(Auth(identity, PhantomData))
    }
}

/// Checks the route policy for the matched route: its scopes (checked at start to name every
/// route and to include the handler's own), then `floor`, the handler's own scope, beneath it.
pub(crate) fn authorize(
    parts: &Parts,
    identity: &Identity,
    policy: &Policy,
    floor: Option<&str>,
) -> Result<(), ApiError> {
    let route = parts
        .extensions
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    let Some(required) = route.and_then(|r| policy.required(&parts.method, r)) else {
        tracing::error!(route = ?route, "a route without a rule in the policy");
        return Err(ApiError::new(ProblemKind::NotFound, "no such route"));
    };
    let missing = required
        .iter()
        .map(String::as_str)
        .chain(floor)
        .find(|scope| !policy.grants(identity, scope));
    match missing {
        Some(scope) => Err(insufficient_scope(scope)),
        None => Ok(()),
    }
}

/// The identity the request proves: the gateway's internal assertion when this process is a
/// ledger run alone (`strongroom ledger`: bearer tokens are not even looked at), else the
/// bearer token.
pub(crate) async fn verified(parts: &Parts, state: &AppState) -> Result<Arc<Identity>, ApiError> {
    let Some(key) = &state.internal else {
        return bearer_identity(
            parts,
            &state.verifier,
            &state.cert_tenants,
            &state.rate_limits,
        )
        .await;
    };
    let value = parts
        .headers
        .get(IDENTITY_HEADER)
        .ok_or(AuthError::NotThroughGateway)?
        .to_str()
        .map_err(|_| AuthError::Malformed)?;
    let bound = Bound {
        method: parts.method.as_str(),
        path_and_query: parts.uri.path_and_query().map_or("/", |p| p.as_str()),
        request_id: parts
            .headers
            .get(super::REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default(),
    };
    let (identity, client) = key
        .verify_from(value, bound, jsonwebtoken::get_current_timestamp())
        .inspect_err(|e| tracing::warn!(reason = %e, "internal assertion refused"))?;
    note_identity(&identity);
    // The record names the partner's address, which the gateway vouches for, not the
    // gateway's own.
    if let (Some(client), Some(scope)) = (client, ledger::audit_log::current()) {
        scope.set_source_ip(&client.to_string());
    }
    tracing::Span::current().record("tenant", identity.tenant.as_str());
    Ok(Arc::new(identity))
}

/// The identity the request's bearer token proves, checked against the connection's client
/// certificate (if any; `crate::mtls::check`) on every request, cached token or not, and
/// counted against its tenant's rate limit (429 `rate-limited` when over it). A token naming an
/// unknown key may wait for a (rate-bounded) fetch of the identity provider's keys.
pub(crate) async fn bearer_identity(
    parts: &Parts,
    verifier: &Verifier,
    cert_tenants: &CertTenants,
    rate_limits: &RateLimits,
) -> Result<Arc<Identity>, ApiError> {
    let token = bearer(&parts.headers)?;
    let identity = verifier.verify_refreshing(token).await.inspect_err(|e| {
        tracing::info!(reason = %e, "token refused");
    })?;
    // Whatever is refused from here on (certificate, rate limit, scope) is recorded as this
    // identity's.
    note_identity(&identity);
    let cert = parts.extensions.get::<ClientCert>();
    crate::mtls::check(&identity, cert, cert_tenants).inspect_err(|e| {
        tracing::info!(reason = %e, tenant = identity.tenant.as_str(), "client certificate refused");
    })?;
    tracing::Span::current().record("tenant", identity.tenant.as_str());
    // The tenant's budget and daily quota, right after the token proved who is asking and
    // before anything else is read: a refused request does nothing.
    rate_limits.admit_tenant(&identity.tenant)?;
    Ok(identity)
}

/// Tells the request's audit context who is asking.
fn note_identity(identity: &Identity) {
    if let Some(scope) = ledger::audit_log::current() {
        scope.set_identity(
            identity.tenant.as_str(),
            &identity.subject,
            identity.client_id.as_deref(),
        );
    }
}

/// The problem of a token without `scope`.
pub(crate) fn insufficient_scope(scope: &str) -> ApiError {
    let challenge =
        format!(r#"Bearer realm="strongroom", error="insufficient_scope", scope="{scope}""#);
    ApiError::new(
        ProblemKind::InsufficientScope,
        format!("this route needs scope {scope}"),
    )
    .with("required_scope", Value::String(scope.into()))
    .challenge(challenge)
}

fn bearer(headers: &HeaderMap) -> Result<&str, AuthError> {
    let value = headers.get(AUTHORIZATION).ok_or(AuthError::Missing)?;
    let value = value.to_str().map_err(|_| AuthError::Malformed)?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim())
        }
        _ => Err(AuthError::Missing),
    }
}

/// The `Idempotency-Key` header, required on every state-changing POST.
#[derive(Debug)]
pub struct Idempotency(pub IdempotencyKey);

/// The header's name.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

impl<S: Send + Sync> FromRequestParts<S> for Idempotency {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let value = parts.headers.get(IDEMPOTENCY_KEY).ok_or_else(|| {
            ApiError::new(
                ProblemKind::IdempotencyKeyRequired,
                "send an Idempotency-Key header with every POST",
            )
        })?;
        let refused = |reason: String| ApiError::new(ProblemKind::IdempotencyKeyInvalid, reason);
        let Ok(key) = value.to_str() else {
            return Err(refused(format!(
                "1 to {IDEMPOTENCY_KEY_LEN_MAX} visible ASCII characters"
            )));
        };
        match IdempotencyKey::parse(key) {
            Ok(key) => Ok(Idempotency(key)),
            // Why, without the key: one holding a card number is refused, not masked.
            Err(ledger::Rejection::InvalidField { reason, .. }) => Err(refused(reason)),
            Err(other) => Err(refused(other.to_string())),
        }
    }
}

/// A JSON body, checked and validated.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T: DeserializeOwned + Validate> FromRequest<Arc<AppState>> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
        check_content_type(req.headers())?;
        let bytes = read_body(req, state.body_bytes_max).await?;
        parse(&bytes).map(Json)
    }
}

/// A JSON body that may be absent (empty); absent is `T::default()`.
#[derive(Debug)]
pub struct OptionalJson<T>(pub T);

impl<T: DeserializeOwned + Validate + Default> FromRequest<Arc<AppState>> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let headers = req.headers().clone();
        let bytes = read_body(req, state.body_bytes_max).await?;
        if bytes.is_empty() {
            return Ok(OptionalJson(T::default()));
        }
        check_content_type(&headers)?;
        parse(&bytes).map(OptionalJson)
    }
}

/// Most bytes read and thrown away after a body went over the limit.
pub const BODY_DRAIN_BYTES_MAX: usize = 64 << 20;
/// Longest time spent reading and throwing away an over-limit body.
pub const BODY_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads the body up to `limit` bytes. A larger body gets 413, but only after the rest was read
/// and discarded (within [`BODY_DRAIN_BYTES_MAX`] and [`BODY_DRAIN_TIMEOUT`]): closing an
/// HTTP/1.1 connection with unread data makes the kernel reset it, and a client still sending
/// would lose the answer along with the connection.
pub(crate) async fn read_body(req: Request, limit: usize) -> Result<Bytes, ApiError> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut body = req.into_body();
    let too_large = || {
        ApiError::new(
            ProblemKind::PayloadTooLarge,
            format!("the body exceeds {limit} bytes"),
        )
    };
    let unreadable = || ApiError::new(ProblemKind::MalformedJson, "the body could not be read");
    let mut buffer = Vec::with_capacity(
        declared
            .map_or(0, |n| usize::try_from(n).unwrap_or(0))
            .min(limit),
    );
    let mut over = declared.is_some_and(|n| n > limit as u64);
    while !over {
        match body.frame().await {
            None => return Ok(Bytes::from(buffer)),
            Some(Err(_)) => return Err(unreadable()),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    if buffer.len() + data.len() > limit {
                        over = true;
                    } else {
                        buffer.extend_from_slice(&data);
                    }
                }
            }
        }
    }
    drop(buffer);
    let drain = async {
        let mut drained = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            drained += frame.data_ref().map_or(0, |d| d.len());
            if drained > BODY_DRAIN_BYTES_MAX {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(BODY_DRAIN_TIMEOUT, drain).await;
    Err(too_large())
}

fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let media = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    match media.as_deref() {
        Some("application/json") => Ok(()),
        Some(m) if m.starts_with("application/") && m.ends_with("+json") => Ok(()),
        other => Err(ApiError::new(
            ProblemKind::UnsupportedMediaType,
            format!(
                "Content-Type must be application/json, not {}",
                other.unwrap_or("(none)")
            ),
        )),
    }
}

fn parse<T: DeserializeOwned + Validate>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: T = serde_json::from_slice(bytes).map_err(json_error)?;
    value.validate().map_err(validation_error)?;
    Ok(value)
}

/// A body already read as JSON, checked and validated like [`Json`]'s (for a route that looks
/// at the raw JSON first, such as the refusal of card verification codes).
pub(crate) fn from_value<T: DeserializeOwned + Validate>(value: Value) -> Result<T, ApiError> {
    let value: T = serde_json::from_value(value).map_err(json_error)?;
    value.validate().map_err(validation_error)?;
    Ok(value)
}

/// Sorts serde's complaint into a problem kind; the message names the field and the position.
pub fn json_error(e: serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    let message = e.to_string();
    let kind = match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => ProblemKind::MalformedJson,
        Category::Data if message.starts_with("unknown field") => ProblemKind::UnknownField,
        Category::Data if message.starts_with("missing field") => ProblemKind::MissingField,
        Category::Data => ProblemKind::InvalidType,
    };
    ApiError::new(kind, message)
}

/// Most validation errors listed in one problem; `errors_total` counts them all.
pub const VALIDATION_ERRORS_MAX: usize = 20;

/// Validation errors as `errors: [{field, code, message}]`, the first [`VALIDATION_ERRORS_MAX`]
/// by position; amounts get their own kind.
pub fn validation_error(errors: ValidationErrors) -> ApiError {
    let mut flat = Vec::new();
    flatten(&errors, String::new(), &mut flat);
    // `transfers[2]` before `transfers[10]`: compare digit runs as numbers.
    flat.sort_by_cached_key(|e| natural_key(&e.0));
    let kind = if flat.iter().any(|(_, code, _)| code == "invalid_amount") {
        ProblemKind::InvalidAmount
    } else {
        ProblemKind::ValidationFailed
    };
    let total = flat.len();
    flat.truncate(VALIDATION_ERRORS_MAX);
    let mut detail = flat
        .iter()
        .take(3)
        .map(|(f, _, m)| format!("{f}: {m}"))
        .collect::<Vec<_>>()
        .join("; ");
    if total > 3 {
        detail.push_str(&format!(" (and {} more)", total - 3));
    }
    let list = flat
        .into_iter()
        .map(|(field, code, message)| serde_json::json!({ "field": field, "code": code, "message": message }))
        .collect();
    ApiError::new(kind, detail)
        .with("errors", Value::Array(list))
        .with("errors_total", Value::from(total))
}

/// A sort key that orders digit runs by value.
fn natural_key(path: &str) -> Vec<(String, u64)> {
    let mut key = Vec::new();
    let mut text = String::new();
    let mut chars = path.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            let mut number = u64::from(c.to_digit(10).unwrap_or(0));
            while let Some(d) = chars.peek().and_then(|d| d.to_digit(10)) {
                number = number.saturating_mul(10).saturating_add(u64::from(d));
                chars.next();
            }
            key.push((std::mem::take(&mut text), number));
        } else {
            text.push(c);
        }
    }
    key.push((text, 0));
    key
}

fn flatten(errors: &ValidationErrors, prefix: String, out: &mut Vec<(String, String, String)>) {
    for (field, kind) in errors.errors() {
        let path = if prefix.is_empty() {
            field.to_string()
        } else {
            format!("{prefix}.{field}")
        };
        match kind {
            ValidationErrorsKind::Field(list) => {
                for e in list {
                    let message = e
                        .message
                        .as_deref()
                        .map_or_else(|| e.code.to_string(), str::to_owned);
                    out.push((path.clone(), e.code.to_string(), message));
                }
            }
            ValidationErrorsKind::Struct(inner) => flatten(inner, path, out),
            ValidationErrorsKind::List(items) => {
                for (index, inner) in items {
                    flatten(inner, format!("{path}[{index}]"), out);
                }
            }
        }
    }
}

/// Query parameters.
#[derive(Debug)]
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| Params(q))
            .map_err(|e| ApiError::new(ProblemKind::InvalidParameter, e.body_text()))
    }
}

#[cfg(test)]
mod tests {
    use axum::http::Request;

    use super::*;

    /// The `Idempotency-Key` header `value` is taken (`Ok`) or refused with this detail.
    async fn check(value: &[u8], expected: Result<&str, &str>) {
        let (mut parts, ()) = Request::builder()
            .header(IDEMPOTENCY_KEY, value)
            .body(())
            .unwrap()
            .into_parts();
        let got = Idempotency::from_request_parts(&mut parts, &())
            .await
            .map(|Idempotency(key)| key.as_str().to_owned())
            .map_err(|e| (e.kind, e.detail));
        let expected = expected
            .map(str::to_owned)
            .map_err(|detail| (ProblemKind::IdempotencyKeyInvalid, detail.to_owned()));
        assert_eq!(got, expected, "{value:?}");
    }

    #[tokio::test]
    async fn idempotency_keys() {
        check(b"order-1", Ok("order-1")).await;
        check(b"order-411111111111", Ok("order-411111111111")).await;
        check(b"a b", Err("1 to 255 visible ASCII characters")).await;
        check(b"caf\xe9", Err("1 to 255 visible ASCII characters")).await;
        // A card number: refused, and the detail does not quote it.
        check(
            b"order-4111111111111111",
            Err("must not contain a card number"),
        )
        .await;
        check(
            b"4111-1111-1111-1111",
            Err("must not contain a card number"),
        )
        .await;
    }
}
