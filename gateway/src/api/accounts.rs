//! Account routes: create, read, list, freeze/unfreeze/close, balance, entries.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use ledger::{AccountId, Metadata, NewAccount, StatusAction};

use super::dto::{
    AccountList, AccountResponse, BalanceParams, BalanceResponse, BalancesResponse,
    CreateAccountRequest, EmptyRequest, EntryList, EntryResponse, ListParams, parse_currency,
    parse_timestamp, timestamp,
};
use super::extract::{Auth, Idempotency, Json, LedgerRead, LedgerWrite, OptionalJson, Params};
use super::problem::{ApiError, Problem, ProblemKind};
use super::{AppState, reply};

/// An id that cannot exist is simply not found.
pub(super) fn account_path(id: &str) -> Result<AccountId, ApiError> {
    id.parse().map_err(|_| ledger::Error::NotFound.into())
}

/// Creates an account.
#[utoipa::path(post, path = "/v1/accounts", tag = "accounts",
    params(("Idempotency-Key" = String, Header, description = "Unique per request; a replay returns the original answer")),
    request_body = CreateAccountRequest,
    responses(
        (status = 201, description = "Created", body = AccountResponse),
        (status = "4XX", description = "Refused; nothing changed", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["ledger:write"])))]
pub async fn create_account(
    State(state): State<Arc<AppState>>,
    auth: Auth<LedgerWrite>,
    Idempotency(key): Idempotency,
    Json(body): Json<CreateAccountRequest>,
) -> Result<Response, ApiError> {
    let new = NewAccount::new(
        parse_currency(&body.currency)?,
        body.normal_side.into(),
        body.balance_constraint.into(),
        body.name,
        body.external_ref,
        Metadata::new(body.metadata)?,
    )?;
    let committed = state
        .ledger
        .create_account(&auth.0.tenant, key, new)
        .await?;
    Ok(reply(
        StatusCode::CREATED,
        &AccountResponse::from(&committed.value),
        committed.replayed,
    ))
}

/// Lists the caller's accounts, oldest first.
#[utoipa::path(get, path = "/v1/accounts", tag = "accounts",
    params(ListParams),
    responses(
        (status = 200, description = "A page", body = AccountList),
        (status = "4XX", description = "Refused", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["ledger:read"])))]
pub async fn list_accounts(
    State(state): State<Arc<AppState>>,
    auth: Auth<LedgerRead>,
    Params(params): Params<ListParams>,
) -> Result<Response, ApiError> {
    let page = state
        .ledger
        .list_accounts(&auth.0.tenant, params.into())
        .await?;
    let body = AccountList {
        data: page.items.iter().map(AccountResponse::from).collect(),
        next_cursor: page.next_cursor,
    };
    Ok(reply(StatusCode::OK, &body, false))
}

/// Reads an account with its current balances.
#[utoipa::path(get, path = "/v1/accounts/{account_id}", tag = "accounts",
    params(("account_id" = String, Path, description = "acct_…")),
    responses(
        (status = 200, description = "The account", body = AccountResponse),
        (status = "4XX", description = "Refused or not found", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["ledger:read"])))]
pub async fn get_account(
    State(state): State<Arc<AppState>>,
    auth: Auth<LedgerRead>,
    Path(account_id): Path<String>,
) -> Result<Response, ApiError> {
    let account = state
        .ledger
        .get_account(&auth.0.tenant, &account_path(&account_id)?)
        .await?;
    Ok(reply(
        StatusCode::OK,
        &AccountResponse::from(&account),
        false,
    ))
}

async fn set_status(
    state: &AppState,
    auth: &Auth<LedgerWrite>,
    key: ledger::IdempotencyKey,
    account_id: &str,
    action: StatusAction,
) -> Result<Response, ApiError> {
    let committed = state
        .ledger
        .set_account_status(&auth.0.tenant, key, account_path(account_id)?, action)
        .await?;
    Ok(reply(
        StatusCode::OK,
        &AccountResponse::from(&committed.value),
        committed.replayed,
    ))
}

macro_rules! status_route {
    ($name:ident, $path:literal, $action:expr, $doc:literal) => {
        #[doc = $doc]
        #[utoipa::path(post, path = $path, tag = "accounts",
            params(
                ("account_id" = String, Path, description = "acct_…"),
                ("Idempotency-Key" = String, Header, description = "Unique per request"),
            ),
            responses(
                (status = 200, description = "The account after the change", body = AccountResponse),
                (status = "4XX", description = "Refused; nothing changed", body = Problem, content_type = "application/problem+json"),
            ),
            security(("bearer" = ["ledger:write"])))]
        pub async fn $name(
            State(state): State<Arc<AppState>>,
            auth: Auth<LedgerWrite>,
            Idempotency(key): Idempotency,
            Path(account_id): Path<String>,
            OptionalJson(_): OptionalJson<EmptyRequest>,
        ) -> Result<Response, ApiError> {
            set_status(&state, &auth, key, &account_id, $action).await
        }
    };
}

status_route!(
    freeze_account,
    "/v1/accounts/{account_id}/freeze",
    StatusAction::Freeze,
    "Freezes an account: it refuses postings; holds can still be voided."
);
status_route!(
    unfreeze_account,
    "/v1/accounts/{account_id}/unfreeze",
    StatusAction::Unfreeze,
    "Unfreezes a frozen account."
);
status_route!(
    close_account,
    "/v1/accounts/{account_id}/close",
    StatusAction::Close,
    "Closes an account with no balance and no pending holds; for good."
);

/// An account's balances now, or as of an instant.
#[utoipa::path(get, path = "/v1/accounts/{account_id}/balance", tag = "accounts",
    params(
        ("account_id" = String, Path, description = "acct_…"),
        ("as_of" = Option<String>, Query, description = "RFC 3339 instant; default now"),
    ),
    responses(
        (status = 200, description = "Balances", body = BalanceResponse),
        (status = "4XX", description = "Refused or not found", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["ledger:read"])))]
pub async fn get_balance(
    State(state): State<Arc<AppState>>,
    auth: Auth<LedgerRead>,
    Path(account_id): Path<String>,
    Params(params): Params<BalanceParams>,
) -> Result<Response, ApiError> {
    let id = account_path(&account_id)?;
    let tenant = &auth.0.tenant;
    let body = match params.as_of {
        None => {
            let account = state.ledger.get_account(tenant, &id).await?;
            BalanceResponse {
                account_id: account.id.to_string(),
                currency: account.currency.code().to_owned(),
                as_of: timestamp(account.updated_at),
                balances: BalancesResponse::new(&account.balances, account.normal_side),
                entry_seq: account.entry_seq,
            }
        }
        Some(text) => {
            let at = parse_timestamp(&text).ok_or_else(|| {
                ApiError::new(
                    ProblemKind::InvalidParameter,
                    "as_of must be an RFC 3339 instant",
                )
            })?;
            let b = state.ledger.balance_at(tenant, &id, at).await?;
            BalanceResponse {
                account_id: b.account.id.to_string(),
                currency: b.account.currency.code().to_owned(),
                as_of: timestamp(b.at),
                balances: BalancesResponse::new(&b.balances, b.account.normal_side),
                entry_seq: b.entry_seq,
            }
        }
    };
    Ok(reply(StatusCode::OK, &body, false))
}

/// An account's history: every entry with the balances after it.
#[utoipa::path(get, path = "/v1/accounts/{account_id}/entries", tag = "accounts",
    params(
        ("account_id" = String, Path, description = "acct_…"),
        ListParams,
    ),
    responses(
        (status = 200, description = "A page", body = EntryList),
        (status = "4XX", description = "Refused or not found", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["ledger:read"])))]
pub async fn list_entries(
    State(state): State<Arc<AppState>>,
    auth: Auth<LedgerRead>,
    Path(account_id): Path<String>,
    Params(params): Params<ListParams>,
) -> Result<Response, ApiError> {
    let id = account_path(&account_id)?;
    let (account, page) = state
        .ledger
        .history(&auth.0.tenant, &id, params.into())
        .await?;
    let body = EntryList {
        data: page
            .items
            .iter()
            .map(|e| EntryResponse::new(e, account.normal_side))
            .collect(),
        next_cursor: page.next_cursor,
    };
    Ok(reply(StatusCode::OK, &body, false))
}
