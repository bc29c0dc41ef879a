//! Every error is an RFC 9457 problem: one type, one `IntoResponse`.
//!
//! [`ApiError`] is what handlers, extractors and the edge middleware fail with. Each
//! [`ProblemKind`] has a stable `type` URI (`https://strongroom.dev/problems/<slug>`), a status
//! and a title; clients branch on `type`. The body also carries `instance` (the request path)
//! and `request_id`, which the edge middleware knows and sets through a task-local. Ledger
//! rejections add their fields (`account`, `transfer`, ...) as extension members. 5xx bodies say
//! what kind of failure happened and nothing of the internals, which go to the log.
//!
//! A problem often quotes the request (serde's `invalid type: string "4111…"`, the path in
//! `instance`, a currency code), so every string it writes, in the body and in
//! `WWW-Authenticate`, has its card numbers masked ([`mask_json`]): no answer carries one in
//! the clear, whichever error path built it.

use std::borrow::Cow;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::auth::AuthError;

/// Base of every problem `type`.
pub const PROBLEM_BASE: &str = "https://strongroom.dev/problems/";

/// The media type of problems.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// What a request id and path are, for the current request.
#[derive(Clone, Debug)]
pub struct RequestContext {
    /// The request id (also in `x-request-id`).
    pub request_id: String,
    /// The request path.
    pub path: String,
}

tokio::task_local! {
    /// Set by the edge middleware around each request.
    pub static REQUEST: RequestContext;
}

macro_rules! problem_kinds {
    ($($kind:ident => ($status:ident, $slug:literal, $title:literal),)*) => {
        /// Every kind of problem the API answers with.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum ProblemKind { $(#[doc = $title] $kind,)* }

        impl ProblemKind {
            /// Every kind, for documentation and tests.
            pub const ALL: &'static [ProblemKind] = &[$(ProblemKind::$kind,)*];

            /// HTTP status.
            pub fn status(self) -> StatusCode {
                match self { $(ProblemKind::$kind => StatusCode::$status,)* }
            }

            /// The last segment of the `type` URI.
            pub fn slug(self) -> &'static str {
                match self { $(ProblemKind::$kind => $slug,)* }
            }

            /// Short, human-readable summary; the same for every occurrence.
            pub fn title(self) -> &'static str {
                match self { $(ProblemKind::$kind => $title,)* }
            }
        }
    };
}

problem_kinds! {
    MalformedJson => (BAD_REQUEST, "malformed-json", "The body is not valid JSON"),
    UnknownField => (BAD_REQUEST, "unknown-field", "The body has a field this endpoint does not take"),
    MissingField => (BAD_REQUEST, "missing-field", "The body lacks a required field"),
    InvalidType => (BAD_REQUEST, "invalid-type", "A field has the wrong type or value"),
    UnsupportedMediaType => (UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type", "The body must be application/json"),
    PayloadTooLarge => (PAYLOAD_TOO_LARGE, "payload-too-large", "The body is larger than the limit"),
    HeadersTooLarge => (REQUEST_HEADER_FIELDS_TOO_LARGE, "headers-too-large", "The request's header fields are over the limits"),
    ValidationFailed => (BAD_REQUEST, "validation-failed", "A field is out of its bounds"),
    InvalidAmount => (BAD_REQUEST, "invalid-amount", "An amount is not a positive integer within bounds"),
    InvalidParameter => (BAD_REQUEST, "invalid-parameter", "A query parameter is invalid"),
    InvalidCursor => (BAD_REQUEST, "invalid-cursor", "The cursor does not belong to this listing"),
    IdempotencyKeyRequired => (BAD_REQUEST, "idempotency-key-required", "This request needs an Idempotency-Key header"),
    IdempotencyKeyInvalid => (BAD_REQUEST, "idempotency-key-invalid", "The Idempotency-Key must be 1 to 255 visible ASCII characters, with no card number"),
    IdempotencyKeyReused => (UNPROCESSABLE_ENTITY, "idempotency-key-reused", "The Idempotency-Key was used for a different request"),
    Unauthorized => (UNAUTHORIZED, "unauthorized", "A valid bearer token is required"),
    InsufficientScope => (FORBIDDEN, "insufficient-scope", "The token lacks the scope this route needs"),
    CertificateTenant => (FORBIDDEN, "certificate-tenant", "The client certificate does not belong to the token's tenant"),
    CertificateRequired => (FORBIDDEN, "certificate-required", "This tenant must present a client certificate"),
    NotFound => (NOT_FOUND, "not-found", "No such resource"),
    MethodNotAllowed => (METHOD_NOT_ALLOWED, "method-not-allowed", "The route does not take this method"),
    SameAccount => (UNPROCESSABLE_ENTITY, "same-account", "A transfer cannot debit and credit the same account"),
    DuplicateAccount => (UNPROCESSABLE_ENTITY, "duplicate-account", "An account appears on more than one leg"),
    LegCount => (UNPROCESSABLE_ENTITY, "leg-count", "A journal entry has too few or too many legs"),
    Unbalanced => (UNPROCESSABLE_ENTITY, "unbalanced", "Debits and credits do not balance in a currency"),
    HoldNeedsTwoLegs => (UNPROCESSABLE_ENTITY, "hold-needs-two-legs", "Only a plain two-leg transfer can be pending"),
    UnknownAccount => (UNPROCESSABLE_ENTITY, "unknown-account", "An account named in the request does not exist"),
    AccountFrozen => (UNPROCESSABLE_ENTITY, "account-frozen", "The account is frozen"),
    AccountClosed => (UNPROCESSABLE_ENTITY, "account-closed", "The account is closed"),
    CurrencyMismatch => (UNPROCESSABLE_ENTITY, "currency-mismatch", "The currency is not the account's"),
    InsufficientFunds => (UNPROCESSABLE_ENTITY, "insufficient-funds", "The account's balance constraint refuses the transfer"),
    BalanceOverflow => (UNPROCESSABLE_ENTITY, "balance-overflow", "A balance would overflow"),
    PostExceedsHold => (UNPROCESSABLE_ENTITY, "post-exceeds-hold", "Cannot post more than the hold reserved"),
    BatchRejected => (UNPROCESSABLE_ENTITY, "batch-rejected", "Transfers of an atomic batch failed; nothing was posted"),
    BatchSize => (UNPROCESSABLE_ENTITY, "batch-size", "A batch holds 1 to 1000 transfers"),
    TooLarge => (UNPROCESSABLE_ENTITY, "too-large", "The request needs more than one storage transaction holds"),
    NotPending => (CONFLICT, "not-pending", "The transfer is not pending"),
    HoldExpired => (CONFLICT, "hold-expired", "The hold has expired"),
    NotPosted => (CONFLICT, "not-posted", "Only posted transfers can be reversed"),
    AlreadyReversed => (CONFLICT, "already-reversed", "The transfer was already reversed"),
    ExternalRefTaken => (CONFLICT, "external-ref-taken", "Another account has this external reference"),
    InvalidTransition => (CONFLICT, "invalid-transition", "The account's status does not allow this change"),
    AccountNotEmpty => (CONFLICT, "account-not-empty", "The account still has a balance or pending holds"),
    RateLimited => (TOO_MANY_REQUESTS, "rate-limited", "Too many requests; retry after the time Retry-After gives"),
    Overloaded => (SERVICE_UNAVAILABLE, "overloaded", "Too many requests are waiting; retry later"),
    Timeout => (SERVICE_UNAVAILABLE, "timeout", "The request took longer than the limit"),
    Contention => (SERVICE_UNAVAILABLE, "contention", "Concurrent writers kept conflicting; retry"),
    Unavailable => (SERVICE_UNAVAILABLE, "unavailable", "Storage is unavailable; nothing was acknowledged"),
    ShuttingDown => (SERVICE_UNAVAILABLE, "shutting-down", "The server is shutting down; retry elsewhere"),
    UpstreamFailed => (BAD_GATEWAY, "upstream-failed", "The ledger behind the gateway did not answer"),
    UpstreamUnavailable => (SERVICE_UNAVAILABLE, "upstream-unavailable", "The ledger behind the gateway is failing; retry later"),
    Internal => (INTERNAL_SERVER_ERROR, "internal", "Internal error; nothing was acknowledged"),
    SensitiveAuthenticationData => (UNPROCESSABLE_ENTITY, "sensitive-authentication-data", "Card verification codes, track data and PINs are refused and never stored"),
    UnknownCard => (UNPROCESSABLE_ENTITY, "unknown-card", "A card named in the request does not exist"),
    CardExpired => (UNPROCESSABLE_ENTITY, "card-expired", "The card has expired"),
    KeyServiceUnavailable => (SERVICE_UNAVAILABLE, "key-service-unavailable", "The key service is unavailable; nothing was stored or revealed"),
    CardUnreadable => (INTERNAL_SERVER_ERROR, "card-unreadable", "A stored card number did not decrypt"),
    AuditUnavailable => (SERVICE_UNAVAILABLE, "audit-unavailable", "The action could not be recorded in the audit log, so it was not answered; retry later"),
    InvalidAuditQuery => (BAD_REQUEST, "invalid-audit-query", "The audit log cannot answer this query as asked"),
}

impl ProblemKind {
    /// The `type` URI.
    pub fn type_uri(self) -> String {
        format!("{PROBLEM_BASE}{}", self.slug())
    }
}

/// An RFC 9457 problem body, as documented in the OpenAPI description.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// Stable URI of the problem kind.
    #[serde(rename = "type")]
    pub kind: String,
    /// Summary of the kind.
    pub title: String,
    /// HTTP status.
    pub status: u16,
    /// What happened this time.
    pub detail: String,
    /// The request path.
    pub instance: String,
    /// The request id, also in `x-request-id`.
    pub request_id: String,
}

/// The API's one error type. Small (a kind, a detail, a pointer) so that results carrying it
/// stay cheap on the success path.
#[derive(Debug)]
pub struct ApiError {
    /// The kind.
    pub kind: ProblemKind,
    /// What happened this time; never internals for 5xx.
    pub detail: String,
    more: Option<Box<Extensions>>,
}

/// The rarer parts of a problem.
#[derive(Debug, Default)]
struct Extensions {
    /// Extension members of the body.
    fields: Map<String, Value>,
    /// Seconds after which a retry makes sense (429, 503).
    retry_after_s: Option<u32>,
    /// For 401 and 403: the `WWW-Authenticate` challenge.
    challenge: Option<String>,
}

impl ApiError {
    /// A problem with a detail.
    pub fn new(kind: ProblemKind, detail: impl Into<String>) -> ApiError {
        ApiError {
            kind,
            detail: detail.into(),
            more: None,
        }
    }

    fn more(&mut self) -> &mut Extensions {
        self.more.get_or_insert_with(Default::default)
    }

    /// Adds an extension member.
    pub fn with(mut self, name: &str, value: Value) -> ApiError {
        self.more().fields.insert(name.to_owned(), value);
        self
    }

    /// Adds several extension members.
    pub fn with_fields(mut self, fields: Map<String, Value>) -> ApiError {
        self.more().fields.extend(fields);
        self
    }

    /// A 429 or 503 that says when to come back (`Retry-After`).
    pub fn retry_after(mut self, seconds: u32) -> ApiError {
        self.more().retry_after_s = Some(seconds);
        self
    }

    /// Sets the `WWW-Authenticate` challenge.
    pub fn challenge(mut self, challenge: String) -> ApiError {
        self.more().challenge = Some(challenge);
        self
    }

    /// An extension member, if set.
    pub fn field(&self, name: &str) -> Option<&Value> {
        self.more.as_ref()?.fields.get(name)
    }

    /// The body as a JSON object, card numbers masked in every string ([`mask_json`]).
    pub fn body(&self) -> Value {
        let (request_id, path) = REQUEST
            .try_with(|r| (r.request_id.clone(), r.path.clone()))
            .unwrap_or_else(|_| (String::new(), String::new()));
        let mut body = Map::new();
        body.insert("type".into(), Value::String(self.kind.type_uri()));
        body.insert("title".into(), Value::String(self.kind.title().into()));
        body.insert("status".into(), Value::from(self.kind.status().as_u16()));
        body.insert("detail".into(), Value::String(self.detail.clone()));
        body.insert("instance".into(), Value::String(path));
        body.insert("request_id".into(), Value::String(request_id));
        for (name, value) in self.more.iter().flat_map(|m| &m.fields) {
            body.entry(name.clone()).or_insert_with(|| value.clone());
        }
        let mut body = Value::Object(body);
        mask_json(&mut body);
        body
    }
}

/// Masks the card numbers in every string of `value`, object keys included. Numbers stay: the
/// ones a problem carries are amounts, counts and limits, not text.
pub fn mask_json(value: &mut Value) {
    match value {
        Value::String(text) => {
            if let Cow::Owned(masked) = audit::mask_pans(text) {
                *text = masked;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask_json),
        Value::Object(map) => {
            if map.keys().any(|k| audit::contains_pan(k)) {
                *map = std::mem::take(map)
                    .into_iter()
                    .map(|(k, v)| (audit::mask_pans(&k).into_owned(), v))
                    .collect();
            }
            map.values_mut().for_each(mask_json);
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// The one way an error becomes an answer: the problem body ([`ApiError::body`], masked) and
/// the headers, the challenge masked too.
/// What a problem answer tells the audit record of its request (`crate::auditlog`): the
/// problem type and detail, as the answer has them.
#[derive(Clone, Debug)]
pub struct ProblemNote(pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut response = (self.kind.status(), body).into_response();
        response.extensions_mut().insert(ProblemNote(format!(
            "{}: {}",
            self.kind.slug(),
            audit::mask_pans(&self.detail)
        )));
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(more) = self.more {
            if let Some(seconds) = more.retry_after_s {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            }
            let challenge = more
                .challenge
                .and_then(|c| HeaderValue::from_str(&audit::mask_pans(&c)).ok());
            if let Some(challenge) = challenge {
                headers.insert(header::WWW_AUTHENTICATE, challenge);
            }
        }
        response
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> ApiError {
        let challenge = match e {
            AuthError::Missing => r#"Bearer realm="strongroom""#.to_owned(),
            ref other => format!(
                r#"Bearer realm="strongroom", error="invalid_token", error_description="{other}""#
            ),
        };
        ApiError::new(ProblemKind::Unauthorized, e.to_string()).challenge(challenge)
    }
}

impl From<crate::mtls::Refusal> for ApiError {
    fn from(r: crate::mtls::Refusal) -> ApiError {
        use crate::mtls::Refusal;
        match r {
            // RFC 8705 section 3: a token used without its certificate is an invalid token.
            Refusal::NotBound => {
                ApiError::new(ProblemKind::Unauthorized, r.to_string()).challenge(format!(
                    r#"Bearer realm="strongroom", error="invalid_token", error_description="{r}""#
                ))
            }
            Refusal::TenantMismatch => ApiError::new(ProblemKind::CertificateTenant, r.to_string()),
            Refusal::CertificateRequired => {
                ApiError::new(ProblemKind::CertificateRequired, r.to_string())
            }
        }
    }
}

/// A vault failure: the key service down (503, retry), a sealed number that does not open
/// (500 `card-unreadable`: altered, or moved to another record or tenant), or no key service.
fn vault_error(error: &ledger::vault::VaultError) -> ApiError {
    use ledger::vault::VaultError as V;
    match error {
        V::Unavailable(_) => {
            tracing::error!(%error, "key service failure");
            ApiError::new(
                ProblemKind::KeyServiceUnavailable,
                "the key service did not answer; retry with the same Idempotency-Key",
            )
            .retry_after(1)
        }
        V::KeyUnwrap | V::Decrypt | V::UnknownKey { .. } => {
            tracing::error!(%error, "a sealed card did not open");
            ApiError::new(
                ProblemKind::CardUnreadable,
                format!("the stored card does not decrypt: {error}"),
            )
        }
        _ => {
            tracing::error!(%error, "vault failure");
            ApiError::new(
                ProblemKind::Internal,
                "the request was refused; nothing was acknowledged",
            )
        }
    }
}

impl From<ledger::Rejection> for ApiError {
    fn from(r: ledger::Rejection) -> ApiError {
        use ledger::Rejection as R;
        let kind = match &r {
            R::InvalidField { field, .. } if field == "limit" => ProblemKind::InvalidParameter,
            R::InvalidField { .. } => ProblemKind::ValidationFailed,
            R::LegCount { .. } => ProblemKind::LegCount,
            R::DuplicateAccount { .. } => ProblemKind::DuplicateAccount,
            R::SameAccount { .. } => ProblemKind::SameAccount,
            R::Unbalanced { .. } => ProblemKind::Unbalanced,
            R::HoldNeedsTwoLegs => ProblemKind::HoldNeedsTwoLegs,
            R::UnknownAccount { .. } => ProblemKind::UnknownAccount,
            R::AccountFrozen { .. } => ProblemKind::AccountFrozen,
            R::AccountClosed { .. } => ProblemKind::AccountClosed,
            R::CurrencyMismatch { .. } => ProblemKind::CurrencyMismatch,
            R::InsufficientFunds { .. } => ProblemKind::InsufficientFunds,
            R::BalanceOverflow { .. } => ProblemKind::BalanceOverflow,
            R::NotPending { .. } => ProblemKind::NotPending,
            R::HoldExpired { .. } => ProblemKind::HoldExpired,
            R::PostExceedsHold { .. } => ProblemKind::PostExceedsHold,
            R::NotPosted { .. } => ProblemKind::NotPosted,
            R::AlreadyReversed { .. } => ProblemKind::AlreadyReversed,
            R::ExternalRefTaken { .. } => ProblemKind::ExternalRefTaken,
            R::InvalidTransition { .. } => ProblemKind::InvalidTransition,
            R::AccountNotEmpty { .. } => ProblemKind::AccountNotEmpty,
            R::BatchSize { .. } => ProblemKind::BatchSize,
            R::TooLarge { .. } => ProblemKind::TooLarge,
            R::UnknownCard { .. } => ProblemKind::UnknownCard,
            R::CardExpired { .. } => ProblemKind::CardExpired,
        };
        ApiError::new(kind, r.to_string()).with_fields(rejection_fields(&r))
    }
}

/// A rejection's own fields (`account`, `transfer`, `state`, ...) as extension members. Written
/// out per variant: the wire names are part of the API contract, not of the storage format.
pub fn rejection_fields(r: &ledger::Rejection) -> Map<String, Value> {
    use ledger::Rejection as R;
    let text = |v: &dyn std::fmt::Display| Value::String(v.to_string());
    let debug = |v: &dyn std::fmt::Debug| Value::String(format!("{v:?}").to_ascii_lowercase());
    let fields: Vec<(&str, Value)> = match r {
        R::InvalidField { field, reason } => vec![("field", text(field)), ("reason", text(reason))],
        R::LegCount { min, max } => vec![("min", Value::from(*min)), ("max", Value::from(*max))],
        R::DuplicateAccount { account }
        | R::SameAccount { account }
        | R::UnknownAccount { account }
        | R::AccountFrozen { account }
        | R::AccountClosed { account }
        | R::InsufficientFunds { account }
        | R::BalanceOverflow { account }
        | R::AccountNotEmpty { account } => vec![("account", text(account))],
        R::Unbalanced { currency } => vec![("currency", text(currency))],
        R::HoldNeedsTwoLegs => vec![],
        R::CurrencyMismatch {
            account,
            account_currency,
            currency,
        } => vec![
            ("account", text(account)),
            ("account_currency", text(account_currency)),
            ("currency", text(currency)),
        ],
        R::NotPending { transfer, state } | R::NotPosted { transfer, state } => {
            vec![("transfer", text(transfer)), ("state", debug(state))]
        }
        R::HoldExpired { transfer } => vec![("transfer", text(transfer))],
        R::PostExceedsHold {
            transfer,
            held,
            requested,
        } => vec![
            ("transfer", text(transfer)),
            ("held", Value::from(*held)),
            ("requested", Value::from(*requested)),
        ],
        R::AlreadyReversed {
            transfer,
            reversed_by,
        } => {
            vec![
                ("transfer", text(transfer)),
                ("reversed_by", text(reversed_by)),
            ]
        }
        R::ExternalRefTaken { external_ref } => vec![("external_ref", text(external_ref))],
        R::InvalidTransition {
            account,
            status,
            action,
        } => vec![
            ("account", text(account)),
            ("status", debug(status)),
            ("action", debug(action)),
        ],
        R::BatchSize { max } => vec![("max", Value::from(*max))],
        R::TooLarge { items, max } => {
            vec![("items", Value::from(*items)), ("max", Value::from(*max))]
        }
        R::UnknownCard { card } | R::CardExpired { card } => vec![("card", text(card))],
    };
    fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

impl From<ledger::Error> for ApiError {
    fn from(e: ledger::Error) -> ApiError {
        use ledger::Error as E;
        match e {
            E::Rejected(r) => r.into(),
            E::BatchRejected(failures) => {
                let errors: Vec<Value> = failures
                    .iter()
                    .map(|f| {
                        let mut item = rejection_fields(&f.rejection);
                        let kind = ApiError::from(f.rejection.clone()).kind;
                        item.insert("index".into(), Value::from(f.index));
                        item.insert("type".into(), Value::String(kind.type_uri()));
                        item.insert("detail".into(), Value::String(f.rejection.to_string()));
                        Value::Object(item)
                    })
                    .collect();
                let detail = format!(
                    "{} transfers of the atomic batch failed; nothing was posted",
                    errors.len()
                );
                ApiError::new(ProblemKind::BatchRejected, detail)
                    .with("errors", Value::Array(errors))
            }
            E::NotFound => ApiError::new(ProblemKind::NotFound, "no such resource"),
            E::IdempotencyKeyReused => ApiError::new(
                ProblemKind::IdempotencyKeyReused,
                "this Idempotency-Key was used with a different request; use a new key",
            ),
            E::InvalidCursor => ApiError::new(
                ProblemKind::InvalidCursor,
                "the cursor does not belong to this listing",
            ),
            E::Overloaded => {
                ApiError::new(ProblemKind::Overloaded, "the commit queue is full").retry_after(1)
            }
            E::Contention => ApiError::new(
                ProblemKind::Contention,
                "retry with the same Idempotency-Key",
            )
            .retry_after(1),
            E::ShuttingDown => {
                ApiError::new(ProblemKind::ShuttingDown, "the server is shutting down")
                    .retry_after(1)
            }
            E::Store(error) => {
                tracing::error!(%error, "store failure");
                ApiError::new(
                    ProblemKind::Unavailable,
                    "retry with the same Idempotency-Key",
                )
                .retry_after(1)
            }
            E::Vault(error) => vault_error(&error),
            E::AuditQuery(why) => ApiError::new(ProblemKind::InvalidAuditQuery, why),
            E::Corrupt(why) => {
                tracing::error!(%why, "invariant broken; request refused");
                ApiError::new(
                    ProblemKind::Internal,
                    "the request was refused; nothing was acknowledged",
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// `error`, answered for a request to `path`: the body and the challenge have no card
    /// number left, and each text in `expected` is found masked in them.
    async fn check(error: ApiError, path: &str, expected: &[&str]) {
        let context = RequestContext {
            request_id: "01J0000000000000000000TEST".into(),
            path: path.into(),
        };
        let response = REQUEST
            .scope(context, async { error.into_response() })
            .await;
        let challenge = response
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let body = String::from_utf8(body.to_vec()).unwrap();
        let answer = format!("{challenge}\n{body}");
        assert!(!audit::contains_pan(&answer), "{answer}");
        for text in expected {
            assert!(answer.contains(text), "{text:?} not in {answer}");
        }
        serde_json::from_str::<Value>(&body).expect("still JSON");
    }

    #[tokio::test]
    async fn every_text_a_problem_writes_is_masked() {
        check(
            ApiError::new(
                ProblemKind::InvalidType,
                r#"invalid type: string "4111 1111 1111 1111", expected u64"#,
            ),
            "/v1/accounts",
            &[r#"\"4111 11** **** 1111\""#],
        )
        .await;
        check(
            ApiError::new(ProblemKind::NotFound, "no such route"),
            "/v1/accounts/5555-5555-5555-4444/balance",
            &[r#""instance":"/v1/accounts/5555-55**-****-4444/balance""#],
        )
        .await;
        check(
            ApiError::new(ProblemKind::ValidationFailed, "currency: bad")
                .with(
                    "errors",
                    json!([{"field": "currency", "message": "\"378282246310005\" is not a code"}]),
                )
                .with("4111111111111111", json!("a field named so")),
            "/v1/transfers",
            &[
                r#"\"378282*****0005\" is not a code"#,
                r#""411111******1111":"a field named so""#,
            ],
        )
        .await;
        check(
            ApiError::new(
                ProblemKind::Unauthorized,
                "invalid claims: sub 6011111111111117",
            )
            .challenge(r#"Bearer error_description="sub 6011111111111117""#.into()),
            "/v1/accounts",
            &[
                "sub 601111******1117",
                r#"error_description="sub 601111******1117""#,
            ],
        )
        .await;
        // Numbers are amounts and counts, not text: they stay.
        let body = ApiError::new(ProblemKind::PostExceedsHold, "too much")
            .with("held", Value::from(4_111_111_111_111_111_u64))
            .body();
        assert_eq!(body["held"], json!(4_111_111_111_111_111_u64));
    }

    #[tokio::test]
    async fn bad_input_quoting_a_card_number_is_answered_masked() {
        use axum::extract::FromRequestParts;

        use super::super::dto::{CreateTransferRequest, ListParams};
        use super::super::extract::{Params, json_error};

        // A body: serde quotes the value it could not take.
        let body = r#"{"debit_account_id": "a", "credit_account_id": "b", "amount": 1,
                       "currency": 5555555555554444}"#;
        let error = json_error(serde_json::from_str::<CreateTransferRequest>(body).unwrap_err());
        assert!(audit::contains_pan(&error.detail), "{}", error.detail);
        check(error, "/v1/transfers", &["integer `555555******4444`"]).await;
        // A query parameter: so does serde_urlencoded.
        let (mut parts, ()) = axum::http::Request::builder()
            .uri("/v1/accounts?order=4111-1111-1111-1111")
            .body(())
            .unwrap()
            .into_parts();
        let error = Params::<ListParams>::from_request_parts(&mut parts, &())
            .await
            .unwrap_err();
        assert_eq!(error.kind, ProblemKind::InvalidParameter);
        assert!(audit::contains_pan(&error.detail), "{}", error.detail);
        check(error, "/v1/accounts", &["`4111-11**-****-1111`"]).await;
    }

    #[test]
    fn kinds_have_unique_slugs_and_error_statuses() {
        let mut slugs: Vec<_> = ProblemKind::ALL.iter().map(|k| k.slug()).collect();
        slugs.sort_unstable();
        let before = slugs.len();
        slugs.dedup();
        assert_eq!(slugs.len(), before, "every problem kind has its own type");
        for kind in ProblemKind::ALL {
            assert!(
                kind.status().is_client_error() || kind.status().is_server_error(),
                "{kind:?}"
            );
        }
    }
}
