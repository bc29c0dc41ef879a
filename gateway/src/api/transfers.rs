//! Transfer routes: create, journal entries, batches, holds (post, void), reversal, reads.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use ledger::{BalancedLegs, BatchMode, Leg, Metadata, NewTransfer, Rejection, TransferId};
use serde_json::Value;

use super::dto::{
    BatchItem, BatchRequest, BatchResponse, CreateTransferRequest, JournalEntryRequest, ListParams,
    PostRequest, ReverseRequest, TransferList, TransferResponse, parse_account, parse_amount,
    parse_currency,
};
use super::extract::{Auth, Idempotency, Json, LedgerRead, LedgerWrite, OptionalJson, Params};
use super::problem::{ApiError, Problem, rejection_fields};
use super::{AppState, reply};

fn transfer_path(id: &str) -> Result<TransferId, ApiError> {
    id.parse().map_err(|_| ledger::Error::NotFound.into())
}

/// A plain transfer request as a ledger transfer.
pub fn new_transfer(body: CreateTransferRequest) -> Result<NewTransfer, Rejection> {
    let legs = BalancedLegs::transfer(
        parse_account(&body.debit_account_id)?,
        parse_account(&body.credit_account_id)?,
        parse_amount(&body.amount)?,
        parse_currency(&body.currency)?,
    )?;
    let card = body
        .card_id
        .as_deref()
        .map(str::parse::<ledger::CardId>)
        .transpose()
        .map_err(|reason| Rejection::InvalidField {
            field: "card_id".into(),
            reason,
        })?;
    let new = NewTransfer::new(
        legs,
        body.description,
        Metadata::new(body.metadata)?,
        body.pending.map(|p| p.timeout_seconds),
    )?;
    Ok(match card {
        Some(card) => new.with_instrument(card),
        None => new,
    })
}

/// Posts a transfer, or places a hold when `pending` is given.
#[utoipa::path(post, path = "/v1/transfers", tag = "transfers",
    params(("Idempotency-Key" = String, Header, description = "Unique per request; a replay returns the original answer")),
    request_body = CreateTransferRequest,
    responses(
        (status = 201, description = "Posted, or held", body = TransferResponse),
        (status = "4XX", description = "Refused; nothing changed", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["ledger:write"])))]
pub async fn create_transfer(
    State(state): State<Arc<AppState>>,
    auth: Auth<LedgerWrite>,
    Idempotency(key): Idempotency,
    Json(body): Json<CreateTransferRequest>,
) -> Result<Response, ApiError> {
    let committed = state
        .ledger
        .create_transfer(&auth.0.tenant, key, new_transfer(body)?)
        .await?;
    Ok(reply(
        StatusCode::CREATED,
        &TransferResponse::from(&committed.value),
        committed.replayed,
    ))
}

/// Posts a multi-leg journal entry: balanced per currency, all legs or none.
#[utoipa::path(post, path = "/v1/journal-entries", tag = "transfers",
    params(("Idempotency-Key" = String, Header, description = "Unique per request")),
    request_body = JournalEntryRequest,
    responses(
        (status = 201, description = "Posted", body = TransferResponse),
        (status = "4XX", description = "Refused; nothing changed", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["ledger:write"])))]
pub async fn create_journal_entry(
    State(state): State<Arc<AppState>>,
    auth: Auth<LedgerWrite>,
    Idempotency(key): Idempotency,
    Json(body): Json<JournalEntryRequest>,
) -> Result<Response, ApiError> {
    let legs = body
        .legs
        .iter()
        .map(|l| {
            Ok(Leg {
                account: parse_account(&l.account_id)?,
                side: l.direction.into(),
                amount: parse_amount(&l.amount)?,
                currency: parse_currency(&l.currency)?,
            })
        })
        .collect::<Result<Vec<_>, Rejection>>()?;
    let new = NewTransfer::new(
        BalancedLegs::new(legs)?,
        body.description,
        Metadata::new(body.metadata)?,
        None,
    )?;
    let committed = state
        .ledger
        .create_transfer(&auth.0.tenant, key, new)
        .await?;
    Ok(reply(
        StatusCode::CREATED,
        &TransferResponse::from(&committed.value),
        committed.replayed,
    ))
}

/// Posts up to 1000 transfers in one commit: atomic (all or nothing) or independent.
#[utoipa::path(post, path = "/v1/transfers/batch", tag = "transfers",
    params(("Idempotency-Key" = String, Header, description = "Unique per request")),
    request_body = BatchRequest,
    responses(
        (status = 201, description = "Atomic batch posted", body = BatchResponse),
        (status = 200, description = "Independent batch ran; see each result", body = BatchResponse),
        (status = "4XX", description = "Refused; nothing changed", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["ledger:write"])))]
pub async fn create_batch(
    State(state): State<Arc<AppState>>,
    auth: Auth<LedgerWrite>,
    Idempotency(key): Idempotency,
    Json(body): Json<BatchRequest>,
) -> Result<Response, ApiError> {
    let mode = body.mode;
    let transfers = body
        .transfers
        .into_iter()
        .map(new_transfer)
        .collect::<Result<Vec<_>, _>>()?;
    let committed = state
        .ledger
        .create_batch(&auth.0.tenant, key, mode.into(), transfers)
        .await?;
    let results: Vec<BatchItem> = committed
        .value
        .iter()
        .enumerate()
        .map(|(index, result)| match result {
            Ok(t) => BatchItem {
                index,
                transfer: Some(TransferResponse::from(t)),
                error: None,
            },
            Err(r) => BatchItem {
                index,
                transfer: None,
                error: Some(item_problem(r)),
            },
        })
        .collect();
    let failed = results.iter().filter(|r| r.error.is_some()).count();
    let body = BatchResponse {
        mode,
        posted: results.len() - failed,
        failed,
        results,
    };
    let status = match BatchMode::from(mode) {
        BatchMode::Atomic => StatusCode::CREATED,
        BatchMode::Independent => StatusCode::OK,
    };
    Ok(reply(status, &body, committed.replayed))
}

fn item_problem(r: &Rejection) -> Value {
    let kind = ApiError::from(r.clone()).kind;
    let mut map = rejection_fields(r);
    map.insert("type".into(), Value::String(kind.type_uri()));
    map.insert("title".into(), Value::String(kind.title().into()));
    map.insert("status".into(), Value::from(kind.status().as_u16()));
    map.insert("detail".into(), Value::String(r.to_string()));
    Value::Object(map)
}

/// Lists the caller's transfers, oldest first.
#[utoipa::path(get, path = "/v1/transfers", tag = "transfers",
    params(ListParams),
    responses(
        (status = 200, description = "A page", body = TransferList),
        (status = "4XX", description = "Refused", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["ledger:read"])))]
pub async fn list_transfers(
    State(state): State<Arc<AppState>>,
    auth: Auth<LedgerRead>,
    Params(params): Params<ListParams>,
) -> Result<Response, ApiError> {
    let page = state
        .ledger
        .list_transfers(&auth.0.tenant, params.into())
        .await?;
    let body = TransferList {
        data: page.items.iter().map(TransferResponse::from).collect(),
        next_cursor: page.next_cursor,
    };
    Ok(reply(StatusCode::OK, &body, false))
}

/// Reads a transfer.
#[utoipa::path(get, path = "/v1/transfers/{transfer_id}", tag = "transfers",
    params(("transfer_id" = String, Path, description = "xfer_…")),
    responses(
        (status = 200, description = "The transfer", body = TransferResponse),
        (status = "4XX", description = "Refused or not found", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["ledger:read"])))]
pub async fn get_transfer(
    State(state): State<Arc<AppState>>,
    auth: Auth<LedgerRead>,
    Path(transfer_id): Path<String>,
) -> Result<Response, ApiError> {
    let transfer = state
        .ledger
        .get_transfer(&auth.0.tenant, &transfer_path(&transfer_id)?)
        .await?;
    Ok(reply(
        StatusCode::OK,
        &TransferResponse::from(&transfer),
        false,
    ))
}

/// Posts a hold, in full or in part; the rest is released.
#[utoipa::path(post, path = "/v1/transfers/{transfer_id}/post", tag = "transfers",
    params(
        ("transfer_id" = String, Path, description = "xfer_…"),
        ("Idempotency-Key" = String, Header, description = "Unique per request"),
    ),
    request_body(content = PostRequest, description = "Optional; no body posts the whole hold"),
    responses(
        (status = 200, description = "The transfer, posted", body = TransferResponse),
        (status = "4XX", description = "Refused; nothing changed", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["ledger:write"])))]
pub async fn post_transfer(
    State(state): State<Arc<AppState>>,
    auth: Auth<LedgerWrite>,
    Idempotency(key): Idempotency,
    Path(transfer_id): Path<String>,
    OptionalJson(body): OptionalJson<PostRequest>,
) -> Result<Response, ApiError> {
    let amount = body.amount.as_ref().map(parse_amount).transpose()?;
    let committed = state
        .ledger
        .post_pending(&auth.0.tenant, key, transfer_path(&transfer_id)?, amount)
        .await?;
    Ok(reply(
        StatusCode::OK,
        &TransferResponse::from(&committed.value),
        committed.replayed,
    ))
}

/// Voids a hold: nothing moves, the reservation is released.
#[utoipa::path(post, path = "/v1/transfers/{transfer_id}/void", tag = "transfers",
    params(
        ("transfer_id" = String, Path, description = "xfer_…"),
        ("Idempotency-Key" = String, Header, description = "Unique per request"),
    ),
    responses(
        (status = 200, description = "The transfer, voided", body = TransferResponse),
        (status = "4XX", description = "Refused; nothing changed", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["ledger:write"])))]
pub async fn void_transfer(
    State(state): State<Arc<AppState>>,
    auth: Auth<LedgerWrite>,
    Idempotency(key): Idempotency,
    Path(transfer_id): Path<String>,
    OptionalJson(_): OptionalJson<super::dto::EmptyRequest>,
) -> Result<Response, ApiError> {
    let committed = state
        .ledger
        .void_pending(&auth.0.tenant, key, transfer_path(&transfer_id)?)
        .await?;
    Ok(reply(
        StatusCode::OK,
        &TransferResponse::from(&committed.value),
        committed.replayed,
    ))
}

/// Reverses a posted transfer with a new, linked transfer; once only.
#[utoipa::path(post, path = "/v1/transfers/{transfer_id}/reverse", tag = "transfers",
    params(
        ("transfer_id" = String, Path, description = "xfer_…"),
        ("Idempotency-Key" = String, Header, description = "Unique per request"),
    ),
    request_body(content = ReverseRequest, description = "Optional"),
    responses(
        (status = 201, description = "The reversal", body = TransferResponse),
        (status = "4XX", description = "Refused; nothing changed", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["ledger:write"])))]
pub async fn reverse_transfer(
    State(state): State<Arc<AppState>>,
    auth: Auth<LedgerWrite>,
    Idempotency(key): Idempotency,
    Path(transfer_id): Path<String>,
    OptionalJson(body): OptionalJson<ReverseRequest>,
) -> Result<Response, ApiError> {
    let metadata = Metadata::new(body.metadata)?;
    let id = transfer_path(&transfer_id)?;
    let committed = state
        .ledger
        .reverse(&auth.0.tenant, key, id, body.description, metadata)
        .await?;
    Ok(reply(
        StatusCode::CREATED,
        &TransferResponse::from(&committed.value),
        committed.replayed,
    ))
}
