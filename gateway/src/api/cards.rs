//! Card routes: tokenize, read (masked), reveal (privileged), delete.
//!
//! A card number enters only through `POST /v1/cards` and leaves only through
//! `POST /v1/cards/{card_id}/reveal`, which needs the `cards:reveal` scope (no role grants it),
//! a stated reason, and passes a per-tenant rate limit of its own (`rate_reveal`) before the
//! vault is asked. Every other answer shows the card masked. Sensitive authentication data
//! (verification codes, track data, PINs) is refused before anything else is looked at, and its
//! values are never echoed or logged.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use ledger::CardId;
use ledger::card::{Card, Expiry, MaskStyle, NewCard, Pan, RevealReason};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use validator::Validate;
use zeroize::Zeroizing;

use super::dto::timestamp;
use super::extract::{Auth, CardsRead, CardsReveal, CardsWrite, Idempotency, Json, OptionalJson};
use super::problem::{ApiError, Problem, ProblemKind};
use super::{AppState, reply};

/// Field names of sensitive authentication data (PCI DSS 3.3.1), refused wherever they appear
/// in a card request.
pub const SENSITIVE_FIELDS: &[&str] = &[
    "cvv",
    "cvv2",
    "cvc",
    "cvc2",
    "cid",
    "csc",
    "security_code",
    "card_verification_code",
    "track",
    "track1",
    "track2",
    "track_data",
    "magstripe",
    "pin",
    "pin_block",
];

/// Any JSON body, for a look at its raw form before it is parsed.
#[derive(Debug, Deserialize)]
#[serde(transparent)]
pub struct RawBody(Value);

impl Validate for RawBody {
    fn validate(&self) -> Result<(), validator::ValidationErrors> {
        Ok(())
    }
}

/// A card to tokenize.
#[derive(Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenizeRequest {
    /// The card number: 13 to 19 digits, single spaces or dashes between groups allowed.
    #[schema(value_type = String, example = "4111 1111 1111 1111")]
    pub pan: Zeroizing<String>,
    /// Expiry month, 1 to 12.
    pub exp_month: u8,
    /// Expiry year, four digits.
    pub exp_year: u16,
    /// The name on the card.
    #[schema(value_type = String)]
    pub cardholder_name: Zeroizing<String>,
}

impl std::fmt::Debug for TokenizeRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenizeRequest(<redacted>)")
    }
}

/// Why a card number is revealed.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevealRequest {
    /// Why the number is needed (8 to 256 bytes); recorded with the access.
    pub reason: String,
}

/// A card as the API shows it: never its number.
#[derive(Debug, Serialize, ToSchema, PartialEq)]
pub struct CardResponse {
    /// The token (`card_…`).
    pub id: String,
    /// The network (`visa`, `mastercard`, `amex`, ...).
    pub brand: String,
    /// The number masked: the BIN and the last four, or only the last four (`card_mask`).
    pub masked_pan: String,
    /// The last four digits.
    pub last4: String,
    /// Expiry month.
    pub exp_month: u8,
    /// Expiry year.
    pub exp_year: u16,
    /// Keyed fingerprint of the number: equal for the same card tokenized twice by this tenant.
    pub fingerprint: String,
    /// When it was tokenized.
    pub created_at: String,
}

impl CardResponse {
    fn new(card: &Card, mask: MaskStyle) -> CardResponse {
        CardResponse {
            id: card.id.to_string(),
            brand: card.brand.as_str().to_owned(),
            masked_pan: card.masked(mask),
            last4: card.last4.clone(),
            exp_month: card.expiry.month,
            exp_year: card.expiry.year,
            fingerprint: card.fingerprint.to_hex(),
            created_at: timestamp(card.created_at),
        }
    }
}

/// A revealed card: its number and name.
#[derive(Serialize, ToSchema)]
pub struct RevealResponse {
    /// The token.
    pub id: String,
    /// The full number.
    #[schema(value_type = String)]
    pub pan: Zeroizing<String>,
    /// The name on the card.
    #[schema(value_type = String)]
    pub cardholder_name: Zeroizing<String>,
    /// Expiry month.
    pub exp_month: u8,
    /// Expiry year.
    pub exp_year: u16,
}

impl std::fmt::Debug for RevealResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RevealResponse({})", self.id)
    }
}

/// The card id of a path: an id that cannot exist is simply not found.
fn card_path(id: &str) -> Result<CardId, ApiError> {
    id.parse().map_err(|_| ledger::Error::NotFound.into())
}

/// Refuses a body that carries sensitive authentication data, naming the field, never its
/// value. Runs on the raw JSON before the request type is parsed, so the refusal is this one
/// (not "unknown field") and nothing else of the body is looked at.
fn refuse_sensitive(body: &Value) -> Result<(), ApiError> {
    match sensitive_field(body) {
        Some(name) => Err(ApiError::new(
            ProblemKind::SensitiveAuthenticationData,
            format!(
                "{name:?}: card verification codes, track data and PINs must not be sent; \
                 Strongroom refuses them and never stores them. Nothing was stored"
            ),
        )
        .with("field", Value::String(name.to_owned()))),
        None => Ok(()),
    }
}

/// The first field, at any depth, named like sensitive authentication data: compared without
/// case and without `_`, `-` or spaces (`CVC2`, `track-2`, `Security Code`).
fn sensitive_field(value: &Value) -> Option<&str> {
    let plain = |name: &str| -> String {
        name.chars()
            .filter(|c| !matches!(c, '_' | '-' | ' '))
            .map(|c| c.to_ascii_lowercase())
            .collect()
    };
    match value {
        Value::Object(fields) => fields.iter().find_map(|(name, value)| {
            let key = plain(name);
            if SENSITIVE_FIELDS.iter().any(|f| plain(f) == key) {
                Some(name.as_str())
            } else {
                sensitive_field(value)
            }
        }),
        Value::Array(items) => items.iter().find_map(sensitive_field),
        _ => None,
    }
}

/// Tokenizes a card: checks the number (length, Luhn), the expiry and the name, and stores it
/// sealed under the tenant's data key. Answers with the token and the masked card.
#[utoipa::path(post, path = "/v1/cards", tag = "cards",
    params(("Idempotency-Key" = String, Header, description = "Unique per request; a replay returns the original answer")),
    request_body = TokenizeRequest,
    responses(
        (status = 201, description = "Tokenized", body = CardResponse),
        (status = "4XX", description = "Refused; nothing stored", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["cards:write"])))]
pub async fn tokenize_card(
    State(state): State<Arc<AppState>>,
    auth: Auth<CardsWrite>,
    Idempotency(key): Idempotency,
    Json(RawBody(raw)): Json<RawBody>,
) -> Result<Response, ApiError> {
    refuse_sensitive(&raw)?;
    let body: TokenizeRequest = super::extract::from_value(raw)?;
    let now = ledger::Clock::now(&ledger::SystemClock);
    let new = NewCard::new(
        Pan::parse(&body.pan)?,
        Expiry::new(body.exp_month, body.exp_year, now)?,
        body.cardholder_name.to_string(),
    )?;
    let committed = state.ledger.tokenize_card(&auth.0.tenant, key, new).await?;
    Ok(reply(
        StatusCode::CREATED,
        &CardResponse::new(&committed.value, state.card_mask),
        committed.replayed,
    ))
}

/// Reads a card, masked.
#[utoipa::path(get, path = "/v1/cards/{card_id}", tag = "cards",
    params(("card_id" = String, Path, description = "card_…")),
    responses(
        (status = 200, description = "The card, masked", body = CardResponse),
        (status = "4XX", description = "Refused or not found", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["cards:read"])))]
pub async fn get_card(
    State(state): State<Arc<AppState>>,
    auth: Auth<CardsRead>,
    Path(card_id): Path<String>,
) -> Result<Response, ApiError> {
    let card = state
        .ledger
        .get_card(&auth.0.tenant, &card_path(&card_id)?)
        .await?;
    Ok(reply(
        StatusCode::OK,
        &CardResponse::new(&card, state.card_mask),
        false,
    ))
}

/// Reveals a card's number to a token holding `cards:reveal`, for a stated reason; limited
/// per tenant (`rate_reveal`) and recorded.
#[utoipa::path(post, path = "/v1/cards/{card_id}/reveal", tag = "cards",
    params(("card_id" = String, Path, description = "card_…")),
    request_body = RevealRequest,
    responses(
        (status = 200, description = "The number", body = RevealResponse),
        (status = "4XX", description = "Refused", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["cards:reveal"])))]
pub async fn reveal_card(
    State(state): State<Arc<AppState>>,
    auth: Auth<CardsReveal>,
    Path(card_id): Path<String>,
    Json(body): Json<RevealRequest>,
) -> Result<Response, ApiError> {
    // The stated reason goes into the request's audit record (masked and bounded there),
    // whether the reveal is then done or refused.
    if let Some(scope) = ledger::audit_log::current() {
        scope.set_detail(&body.reason);
    }
    RevealReason::new(&body.reason)?;
    let id = card_path(&card_id)?;
    state.rate_limits.admit_reveal(&auth.0.tenant)?;
    let revealed = state.ledger.reveal_card(&auth.0.tenant, &id).await?;
    let answer = RevealResponse {
        id: id.to_string(),
        pan: revealed.pan,
        cardholder_name: revealed.name,
        exp_month: revealed.card.expiry.month,
        exp_year: revealed.card.expiry.year,
    };
    Ok(reply(StatusCode::OK, &answer, false))
}

/// Deletes a card: its sealed number is destroyed; the token stays taken and is not found
/// from then on.
#[utoipa::path(delete, path = "/v1/cards/{card_id}", tag = "cards",
    params(
        ("card_id" = String, Path, description = "card_…"),
        ("Idempotency-Key" = String, Header, description = "Unique per request; a replay returns the original answer"),
    ),
    responses(
        (status = 200, description = "Deleted; the card as it was, masked", body = CardResponse),
        (status = "4XX", description = "Refused or not found", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["cards:write"])))]
pub async fn delete_card(
    State(state): State<Arc<AppState>>,
    auth: Auth<CardsWrite>,
    Idempotency(key): Idempotency,
    Path(card_id): Path<String>,
    OptionalJson(_): OptionalJson<super::dto::EmptyRequest>,
) -> Result<Response, ApiError> {
    let committed = state
        .ledger
        .delete_card(&auth.0.tenant, key, card_path(&card_id)?)
        .await?;
    Ok(reply(
        StatusCode::OK,
        &CardResponse::new(&committed.value, state.card_mask),
        committed.replayed,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensitive_fields_are_refused_by_name_without_their_value() {
        let check = |body: Value, refused: Option<&str>| {
            let got = refuse_sensitive(&body);
            match (got, refused) {
                (Ok(()), None) => {}
                (Err(e), Some(field)) => {
                    assert_eq!(e.kind, ProblemKind::SensitiveAuthenticationData);
                    let text = format!("{e:?}");
                    assert!(text.contains(field), "{text}");
                    assert!(!text.contains("9876"), "{text}");
                }
                (got, want) => panic!("{body}: {got:?}, wanted {want:?}"),
            }
        };
        check(serde_json::json!({"pan": "4111111111111111"}), None);
        check(
            serde_json::json!({"pan": "4111", "cvv": "9876"}),
            Some("cvv"),
        );
        check(serde_json::json!({"CVC2": "9876"}), Some("CVC2"));
        check(serde_json::json!({"track-2": ";9876=1"}), Some("track-2"));
        check(serde_json::json!({"pin_block": "9876"}), Some("pin_block"));
        check(serde_json::json!(["cvv"]), None);
        check(
            serde_json::json!({"card": {"Security Code": "9876"}}),
            Some("Security Code"),
        );
        check(
            serde_json::json!({"extra": [{"pinBlock": "9876"}]}),
            Some("pinBlock"),
        );
        check(serde_json::json!({"pinned": "9876", "tracking": "x"}), None);
    }
}
