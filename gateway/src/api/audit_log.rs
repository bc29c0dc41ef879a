//! The audit log, for auditors (`audit:read`): records with filters, the latest checkpoints,
//! inclusion and consistency proofs. Every one of these requests is itself recorded (`edge`).
//!
//! Records are answered as they are stored (the exact JSON whose hash is the Merkle leaf), so
//! that an auditor can check a proof against what this API returned. A caller sees the records
//! of its own tenant and the service's own (start, stop), never another tenant's.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::extract::{AuditRead, Auth, Params};
use super::problem::{ApiError, Problem, ProblemKind};
use super::{AppState, reply};

/// Filters of `GET /v1/audit/events`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventParams {
    /// At or after this instant (RFC 3339).
    pub from: Option<String>,
    /// Before this instant (RFC 3339).
    pub to: Option<String>,
    /// The actor's subject or client id.
    pub actor: Option<String>,
    /// An action (`transfer.create`), or every action of a noun (`transfer.`).
    pub action: Option<String>,
    /// A resource: `kind:id` or the id alone.
    pub resource: Option<String>,
    /// `success` or `failure`.
    pub outcome: Option<String>,
    /// One stream only.
    pub stream: Option<String>,
    /// 1 to 500, default 50.
    pub limit: Option<usize>,
    /// next_cursor of the previous page.
    pub cursor: Option<String>,
}

/// A page of audit records.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventList {
    /// The records, as stored (schema version 1: `v`, `stream`, `seq`, `time`, `actor`,
    /// `action`, `resources`, `outcome`, `reason`, `detail`, `origin`).
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<Value>,
    /// Where the next page starts; absent on the last. A page examines a bounded number of
    /// records, so it may hold fewer than `limit` and still have a next one.
    pub next_cursor: Option<String>,
}

/// A signed checkpoint (a tree head): the tree of `size` records of `stream` has `root`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckpointView {
    /// Schema version.
    pub v: u32,
    /// The stream.
    pub stream: String,
    /// Records in the tree.
    pub size: u64,
    /// The tree's root hash (hex).
    pub root: String,
    /// When it was signed.
    pub time: String,
    /// `ed25519` or `ecdsa-p256-sha256`.
    pub algorithm: String,
    /// The signing key's id.
    pub key_id: String,
    /// The signature (base64).
    pub signature: String,
}

fn checkpoint_view(cp: &audit::checkpoint::SignedCheckpoint) -> Value {
    // The stored JSON form is the view: one shape for the API, the export and the verifier.
    serde_json::from_slice(&cp.encode()).unwrap_or(Value::Null)
}

/// The latest checkpoint of every stream.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckpointList {
    /// One per stream that has one.
    #[schema(value_type = Vec<CheckpointView>)]
    pub checkpoints: Vec<Value>,
}

/// `GET /v1/audit/checkpoints/latest` parameters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LatestParams {
    /// One stream only.
    pub stream: Option<String>,
}

/// `GET /v1/audit/proofs/inclusion` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InclusionParams {
    /// The stream.
    pub stream: String,
    /// The record's sequence number (its leaf index).
    pub seq: u64,
    /// The tree to prove against; default: the stream's latest checkpoint.
    pub tree_size: Option<u64>,
}

/// Proof that a record is in a tree.
#[derive(Debug, Serialize, ToSchema)]
pub struct InclusionView {
    /// The stream.
    pub stream: String,
    /// The record's sequence.
    pub seq: u64,
    /// The record, as stored.
    #[schema(value_type = Object)]
    pub record: Value,
    /// Its leaf hash: SHA-256 of 0x00 and the record's bytes (hex).
    pub leaf: String,
    /// The tree's size.
    pub tree_size: u64,
    /// The tree's root (hex).
    pub root: String,
    /// The audit path, leaf to root (hex), RFC 9162 section 2.1.3.
    pub proof: Vec<String>,
    /// The signed checkpoint of that tree, if one was signed.
    #[schema(value_type = Option<CheckpointView>)]
    pub checkpoint: Option<Value>,
}

/// `GET /v1/audit/proofs/consistency` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ConsistencyParams {
    /// The stream.
    pub stream: String,
    /// The older tree's size.
    pub from_size: u64,
    /// The newer tree's size; default: the stream's latest checkpoint.
    pub to_size: Option<u64>,
}

/// Proof that a tree extends an older one.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsistencyView {
    /// The stream.
    pub stream: String,
    /// The older tree's size.
    pub from_size: u64,
    /// Its root (hex).
    pub from_root: String,
    /// The newer tree's size.
    pub to_size: u64,
    /// Its root (hex).
    pub to_root: String,
    /// The proof (hex), RFC 9162 section 2.1.4.
    pub proof: Vec<String>,
    /// The signed checkpoints of the two trees, where they exist.
    #[schema(value_type = Option<CheckpointView>)]
    pub from_checkpoint: Option<Value>,
    /// The newer tree's.
    #[schema(value_type = Option<CheckpointView>)]
    pub to_checkpoint: Option<Value>,
}

fn time_param(name: &str, value: Option<&str>) -> Result<Option<i64>, ApiError> {
    value
        .map(|t| {
            audit::record::parse_time(t).ok_or_else(|| {
                ApiError::new(
                    ProblemKind::InvalidParameter,
                    format!("{name} must be an RFC 3339 instant"),
                )
            })
        })
        .transpose()
}

/// Records of the caller's tenant (and the service's own), filtered, a page at a time.
#[utoipa::path(get, path = "/v1/audit/events", tag = "audit",
    params(EventParams),
    responses(
        (status = 200, description = "A page of records", body = EventList),
        (status = "4XX", description = "Refused", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["audit:read"])))]
pub async fn list_events(
    State(state): State<Arc<AppState>>,
    auth: Auth<AuditRead>,
    Params(params): Params<EventParams>,
) -> Result<Response, ApiError> {
    let outcome = match params.outcome.as_deref() {
        None => None,
        Some("success") => Some(audit::Outcome::Success),
        Some("failure") => Some(audit::Outcome::Failure),
        Some(_) => {
            return Err(ApiError::new(
                ProblemKind::InvalidParameter,
                "outcome must be success or failure",
            ));
        }
    };
    let limit = params.limit.unwrap_or(ledger::limits::PAGE_LEN_DEFAULT);
    if limit == 0 || limit > ledger::audit_log::read::AUDIT_PAGE_LEN_MAX {
        return Err(ApiError::new(
            ProblemKind::InvalidParameter,
            format!(
                "limit must be 1 to {}",
                ledger::audit_log::read::AUDIT_PAGE_LEN_MAX
            ),
        ));
    }
    let filter = ledger::audit_log::read::EventFilter {
        tenant: Some(auth.0.tenant.to_string()),
        from_us: time_param("from", params.from.as_deref())?,
        to_us: time_param("to", params.to.as_deref())?,
        actor: params.actor,
        action: params.action,
        resource: params.resource,
        outcome,
        stream: params.stream,
    };
    let page = state
        .ledger
        .audit_events(&filter, limit, params.cursor.as_deref())
        .await?;
    let items = page
        .records
        .iter()
        .map(|r| serde_json::to_value(r).unwrap_or(Value::Null))
        .collect();
    Ok(reply(
        StatusCode::OK,
        &EventList {
            items,
            next_cursor: page.next_cursor,
        },
        false,
    ))
}

/// The latest signed checkpoint of every stream.
#[utoipa::path(get, path = "/v1/audit/checkpoints/latest", tag = "audit",
    params(LatestParams),
    responses(
        (status = 200, description = "The latest checkpoints", body = CheckpointList),
        (status = "4XX", description = "Refused", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["audit:read"])))]
pub async fn latest_checkpoints(
    State(state): State<Arc<AppState>>,
    _auth: Auth<AuditRead>,
    Params(params): Params<LatestParams>,
) -> Result<Response, ApiError> {
    let mut checkpoints = Vec::new();
    for (stream, _) in state.ledger.audit_streams().await? {
        if params.stream.as_ref().is_some_and(|s| s != &stream) {
            continue;
        }
        if let Some(cp) = state.ledger.audit_checkpoint_latest(&stream).await? {
            checkpoints.push(checkpoint_view(&cp));
        }
    }
    Ok(reply(
        StatusCode::OK,
        &CheckpointList { checkpoints },
        false,
    ))
}

fn hexes(hashes: &[audit::merkle::Hash]) -> Vec<String> {
    hashes.iter().map(hex::encode).collect()
}

/// Proof that a record is in a stream's tree. A record of another tenant is not shown: its
/// proof is refused as not found.
#[utoipa::path(get, path = "/v1/audit/proofs/inclusion", tag = "audit",
    params(InclusionParams),
    responses(
        (status = 200, description = "The proof", body = InclusionView),
        (status = "4XX", description = "Refused", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["audit:read"])))]
pub async fn inclusion_proof(
    State(state): State<Arc<AppState>>,
    auth: Auth<AuditRead>,
    Params(params): Params<InclusionParams>,
) -> Result<Response, ApiError> {
    let proof = state
        .ledger
        .audit_inclusion(&params.stream, params.seq, params.tree_size)
        .await?;
    let record: Value = serde_json::from_slice(&proof.record).unwrap_or(Value::Null);
    let tenant = record.pointer("/actor/tenant").and_then(Value::as_str);
    if tenant.is_some_and(|t| t != auth.0.tenant.as_str()) {
        return Err(ApiError::new(ProblemKind::NotFound, "no such record"));
    }
    Ok(reply(
        StatusCode::OK,
        &InclusionView {
            stream: proof.stream,
            seq: proof.seq,
            record,
            leaf: hex::encode(proof.leaf),
            tree_size: proof.tree_size,
            root: hex::encode(proof.root),
            proof: hexes(&proof.proof),
            checkpoint: proof.checkpoint.as_ref().map(checkpoint_view),
        },
        false,
    ))
}

/// Proof that a stream's tree only grew between two sizes.
#[utoipa::path(get, path = "/v1/audit/proofs/consistency", tag = "audit",
    params(ConsistencyParams),
    responses(
        (status = 200, description = "The proof", body = ConsistencyView),
        (status = "4XX", description = "Refused", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["audit:read"])))]
pub async fn consistency_proof(
    State(state): State<Arc<AppState>>,
    _auth: Auth<AuditRead>,
    Params(params): Params<ConsistencyParams>,
) -> Result<Response, ApiError> {
    let proof = state
        .ledger
        .audit_consistency(&params.stream, params.from_size, params.to_size)
        .await?;
    Ok(reply(
        StatusCode::OK,
        &ConsistencyView {
            stream: proof.stream,
            from_size: proof.old_size,
            from_root: hex::encode(proof.old_root),
            to_size: proof.new_size,
            to_root: hex::encode(proof.new_root),
            proof: hexes(&proof.proof),
            from_checkpoint: proof.old_checkpoint.as_ref().map(checkpoint_view),
            to_checkpoint: proof.new_checkpoint.as_ref().map(checkpoint_view),
        },
        false,
    ))
}
