//! Operations: liveness, readiness, the trial balance.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use super::dto::{HealthResponse, TrialBalanceResponse};
use super::extract::{Auth, LedgerRead};
use super::problem::{ApiError, Problem};
use super::{AppState, reply};

/// The process is up and serving HTTP.
#[utoipa::path(get, path = "/health/live", tag = "operations",
    responses((status = 200, description = "Live", body = HealthResponse)))]
pub async fn live() -> Response {
    reply(
        StatusCode::OK,
        &HealthResponse {
            status: "live".into(),
        },
        false,
    )
}

/// The process should get traffic: not shutting down, the committer runs, the store answers.
#[utoipa::path(get, path = "/health/ready", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = HealthResponse),
        (status = 503, description = "Not ready", body = HealthResponse),
    ))]
pub async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let draining = state.draining.load(Ordering::SeqCst);
    let ok = !draining && state.ledger.ready().await.is_ok();
    let (status, text) = if ok {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not_ready")
    };
    reply(
        status,
        &HealthResponse {
            status: text.into(),
        },
        false,
    )
}

/// Proves that the caller's books balance: per currency, debits equal credits.
#[utoipa::path(get, path = "/v1/trial-balance", tag = "operations",
    responses(
        (status = 200, description = "The trial balance", body = TrialBalanceResponse),
        (status = "4XX", description = "Refused", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["ledger:read"])))]
pub async fn trial_balance(
    State(state): State<Arc<AppState>>,
    auth: Auth<LedgerRead>,
) -> Result<Response, ApiError> {
    let balance = state.ledger.trial_balance(&auth.0.tenant).await?;
    Ok(reply(
        StatusCode::OK,
        &TrialBalanceResponse::from(&balance),
        false,
    ))
}
