//! The records of what a gateway run alone answers itself, written in the stream of the ledger
//! behind it.
//!
//! In a split deployment the ledger records every request that reaches it, with the partner's
//! address the gateway vouches for ([`crate::internal`]). What the gateway answers without
//! asking the ledger (a missing or bad token, a scope the route policy refuses, a rate limit,
//! an unknown route, a body over the limit, the ledger not answering) would go unrecorded: the
//! gateway holds no store, by design (it faces the internet; the books are not its to touch).
//! So it hands those records to the ledger: [`Forwarder`] queues them (at most
//! [`FORWARD_QUEUE_MAX`]) and a background task posts them in batches (at most
//! [`FORWARD_BATCH_MAX`] records, about [`FORWARD_BATCH_BYTES`]) to `POST` [`RECORDS_PATH`] on
//! the ledger, with an internal assertion like any forwarded request. The ledger appends them
//! to its own stream ([`append`]), with the gateway's view of who and where, and answers which
//! ones it could not write; those are sent again.
//!
//! The gateway does not wait for these records before it answers: they are records of
//! refusals, which acknowledge nothing. A batch whose answer was lost is sent again, so a
//! record may be written twice (the same request id twice). A batch the ledger finds too large
//! (413, a smaller `body_bytes_max` there) is sent in halves. A record is never dropped
//! silently: when the queue is full, when the ledger refuses it outright (another 4xx than
//! 401, 403, 408 and 429), or when the ledger stays unreachable for the shutdown grace after
//! the last request was answered, each record not written is logged whole at `error` with
//! `audit_record_not_written`.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use http_body_util::Full;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use crate::api::AppState;
use crate::api::problem::{ApiError, ProblemKind};
use crate::internal::{Bound, IDENTITY_HEADER, InternalKey};

/// Where the ledger takes the gateway's records.
pub const RECORDS_PATH: &str = "/internal/audit/records";
/// Records waiting to be sent, at most; past it a record is logged instead.
pub const FORWARD_QUEUE_MAX: usize = 65_536;
/// Records in one batch, at most; also what the ledger takes in one request.
pub const FORWARD_BATCH_MAX: usize = 500;
/// A batch is closed once its records take this many bytes of JSON.
pub const FORWARD_BATCH_BYTES: usize = 256 * 1024;
/// First wait after a failed batch; doubled up to [`FORWARD_RETRY_MAX`].
pub const FORWARD_RETRY_FIRST: Duration = Duration::from_millis(100);
/// Longest wait between attempts.
pub const FORWARD_RETRY_MAX: Duration = Duration::from_secs(5);
/// Longest wait for the ledger's answer to one batch.
pub const FORWARD_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// The subject the gateway's assertions for its own records name.
pub const FORWARDER_SUBJECT: &str = "strongroom-gateway";

/// A batch, on the wire.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    /// The records, in the order the gateway answered.
    pub records: Vec<audit::Draft>,
}

/// The ledger's answer to a batch.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Written {
    /// How many were written.
    pub written: usize,
    /// The positions (in the batch) of those that were not: send them again.
    pub failed: Vec<usize>,
}

// ---- the ledger's side ---------------------------------------------------------------------

/// `POST /internal/audit/records` on a ledger run alone: appends the gateway's records to this
/// process's stream. Only the gateway can call it: the request needs a valid internal
/// assertion for this route, which only a holder of the shared key can make (the gateway's
/// proxy forwards only the API's routes, so no partner request is asserted for this one).
pub async fn append(State(state): State<Arc<AppState>>, req: Request) -> Response {
    match append_checked(&state, req).await {
        Ok(written) => (StatusCode::OK, Json(written)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn append_checked(state: &AppState, req: Request) -> Result<Written, ApiError> {
    let Some(key) = &state.internal else {
        return Err(ApiError::new(ProblemKind::NotFound, "no such route"));
    };
    let (parts, body) = req.into_parts();
    let value = parts
        .headers
        .get(IDENTITY_HEADER)
        .ok_or(crate::auth::AuthError::NotThroughGateway)?
        .to_str()
        .map_err(|_| crate::auth::AuthError::Malformed)?;
    let bound = Bound {
        method: parts.method.as_str(),
        path_and_query: parts.uri.path_and_query().map_or("/", |p| p.as_str()),
        request_id: parts
            .headers
            .get(crate::api::REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default(),
    };
    let identity = key
        .verify(value, bound, jsonwebtoken::get_current_timestamp())
        .inspect_err(|e| tracing::warn!(reason = %e, "internal assertion refused"))?;
    if identity.subject != FORWARDER_SUBJECT {
        return Err(ApiError::new(
            ProblemKind::InsufficientScope,
            "only the gateway's record forwarder may write here",
        ));
    }
    let body = crate::api::extract::read_body(
        Request::from_parts(parts, axum::body::Body::new(body)),
        state.body_bytes_max,
    )
    .await?;
    let batch: Batch = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            ProblemKind::MalformedJson,
            format!("not a batch of records: {e}"),
        )
    })?;
    if batch.records.len() > FORWARD_BATCH_MAX {
        return Err(ApiError::new(
            ProblemKind::PayloadTooLarge,
            format!(
                "{} records; at most {FORWARD_BATCH_MAX} in one batch",
                batch.records.len()
            ),
        ));
    }
    // Each record joins the committer's next batch; they commit together, or some in the
    // next one when the first is full. Outside this request's audit scope: they are the
    // gateway's records, not this request's.
    let count = batch.records.len();
    let mut appends = tokio::task::JoinSet::new();
    for (i, draft) in batch.records.into_iter().enumerate() {
        let ledger = state.ledger.clone();
        appends.spawn(async move { (i, ledger.audit_append(draft).await) });
    }
    let mut written = Written::default();
    let mut done = vec![false; count];
    while let Some(joined) = appends.join_next().await {
        match joined {
            Ok((i, Ok(_))) => {
                written.written += 1;
                if let Some(d) = done.get_mut(i) {
                    *d = true;
                }
            }
            Ok((_, Err(e))) => {
                tracing::warn!(error = %e, "a record from the gateway was not written; it will be sent again");
            }
            Err(e) => tracing::error!(error = %e, "an append task failed"),
        }
    }
    written.failed = (0..count).filter(|&i| !done[i]).collect();
    Ok(written)
}

// ---- the gateway's side --------------------------------------------------------------------

/// Where the gateway's records go, and how.
#[derive(Clone, Debug)]
pub struct ForwardSettings {
    /// The ledger (the `upstream` URL: scheme and authority).
    pub upstream: Uri,
    /// The shared key of internal assertions.
    pub key: InternalKey,
    /// How long records may still be sent after shutdown began.
    pub grace: Duration,
}

/// The gateway's queue of records for the ledger. Cheap to share.
#[derive(Debug)]
pub struct Forwarder {
    tx: mpsc::Sender<audit::Draft>,
}

impl Forwarder {
    /// Queues a record; when the queue is full, logs it whole instead.
    pub fn submit(&self, draft: audit::Draft) {
        match self.tx.try_send(draft) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(draft))
            | Err(mpsc::error::TrySendError::Closed(draft)) => {
                not_written(&draft, "the queue of records for the ledger is full");
            }
        }
    }
}

fn not_written(draft: &audit::Draft, why: &str) {
    let record = serde_json::to_string(draft).unwrap_or_default();
    tracing::error!(
        audit_record_not_written = %record,
        reason = why,
        "an audit record of the gateway was not written to the ledger's stream"
    );
}

/// Starts the forwarder: the queue, and the task that sends it (which ends once `stopped` is
/// set and the queue is sent, or the grace has passed).
pub fn start(
    settings: ForwardSettings,
    client: crate::proxy::UpstreamClient,
    stopped: watch::Receiver<bool>,
) -> (Arc<Forwarder>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(FORWARD_QUEUE_MAX);
    let forwarder = Arc::new(Forwarder { tx });
    let task = tokio::spawn(run(settings, client, rx, stopped));
    (forwarder, task)
}

async fn run(
    settings: ForwardSettings,
    client: crate::proxy::UpstreamClient,
    mut rx: mpsc::Receiver<audit::Draft>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut deadline: Option<tokio::time::Instant> = None;
    let mut pending: Vec<audit::Draft> = Vec::new();
    let mut wait = FORWARD_RETRY_FIRST;
    // Records per request; halved while the ledger answers that a batch is too large.
    let mut cap = FORWARD_BATCH_MAX;
    loop {
        if pending.is_empty() {
            let first = tokio::select! {
                first = rx.recv() => first,
                _ = stopped.changed(), if deadline.is_none() => {
                    deadline = Some(tokio::time::Instant::now() + settings.grace);
                    // Take what is queued now; nothing more arrives once the server stopped.
                    rx.close();
                    continue;
                }
            };
            let Some(first) = first else { return };
            pending.push(first);
        }
        let mut bytes: usize = pending.iter().map(draft_bytes).sum();
        while pending.len() < FORWARD_BATCH_MAX && bytes < FORWARD_BATCH_BYTES {
            match rx.try_recv() {
                Ok(draft) => {
                    bytes += draft_bytes(&draft);
                    pending.push(draft);
                }
                Err(_) => break,
            }
        }
        let n = pending.len().min(cap);
        match send(&settings, &client, &pending[..n]).await {
            Ok(failed) => {
                let mut kept = Vec::with_capacity(failed.len() + pending.len() - n);
                for (i, draft) in pending.drain(..).enumerate() {
                    if i >= n || failed.contains(&i) {
                        kept.push(draft);
                    }
                }
                let all_written = failed.is_empty();
                pending = kept;
                if all_written {
                    wait = FORWARD_RETRY_FIRST;
                    continue;
                }
            }
            Err(SendError::TooLarge) if n > 1 => {
                cap = (n / 2).max(1);
                continue;
            }
            Err(SendError::Refused(why)) => {
                // Sending it again would get the same answer.
                for draft in pending.drain(..n) {
                    not_written(&draft, &why);
                }
                continue;
            }
            Err(SendError::TooLarge) => {
                for draft in pending.drain(..n) {
                    not_written(&draft, "the ledger refuses a record this large");
                }
                continue;
            }
            Err(SendError::Failed(e)) => {
                tracing::warn!(error = %e, records = pending.len(), "audit records not yet sent to the ledger; retrying");
            }
        }
        // Something was not written: wait, then send it again (unless the grace is over).
        if let Some(deadline) = deadline
            && tokio::time::Instant::now() + wait > deadline
        {
            for draft in pending.drain(..) {
                not_written(&draft, "the ledger did not take it before shutdown");
            }
            while let Ok(draft) = rx.try_recv() {
                not_written(&draft, "the ledger did not take it before shutdown");
            }
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stopped.changed(), if deadline.is_none() => {
                deadline = Some(tokio::time::Instant::now() + settings.grace);
                rx.close();
            }
        }
        wait = (wait * 2).min(FORWARD_RETRY_MAX);
    }
}

/// Why a batch was not taken.
#[derive(Debug)]
enum SendError {
    /// The ledger says it is too large (413): send fewer at a time.
    TooLarge,
    /// The ledger refused it for good (another 4xx than 401, 403, 408 and 429, which a key
    /// rotation, a clock or a busy ledger explain).
    Refused(String),
    /// It may go through later.
    Failed(String),
}

/// About a record's JSON size (its text plus room for the names and quotes), without
/// writing it: what closes a batch at [`FORWARD_BATCH_BYTES`].
fn draft_bytes(draft: &audit::Draft) -> usize {
    let text = |s: &Option<String>| s.as_ref().map_or(4, String::len);
    256 + draft.action.len()
        + draft.resources.iter().map(|r| r.len() + 3).sum::<usize>()
        + text(&draft.reason)
        + text(&draft.detail)
        + text(&draft.actor.tenant)
        + text(&draft.actor.subject)
        + text(&draft.actor.client_id)
        + text(&draft.actor.source_ip)
        + text(&draft.origin.request_id)
        + text(&draft.origin.trace_id)
}

/// Posts one batch; the positions the ledger did not write, or why the batch failed as a
/// whole.
async fn send(
    settings: &ForwardSettings,
    client: &crate::proxy::UpstreamClient,
    drafts: &[audit::Draft],
) -> Result<Vec<usize>, SendError> {
    let failed = |e: String| SendError::Failed(e);
    let body = serde_json::to_vec(&BatchRef { records: drafts })
        .map_err(|e| SendError::Refused(e.to_string()))?;
    let request_id = ulid::Ulid::generate().to_string();
    let identity = crate::auth::Identity {
        subject: FORWARDER_SUBJECT.to_owned(),
        tenant: ledger::TenantId::new("strongroom")
            .ok_or_else(|| failed("no service tenant".into()))?,
        scopes: Vec::new(),
        roles: Vec::new(),
        expires_at: jsonwebtoken::get_current_timestamp() + crate::internal::ASSERTION_TTL_S,
        client_id: None,
        cert_thumbprint: None,
    };
    let assertion = settings.key.assert(
        &identity,
        Bound {
            method: "POST",
            path_and_query: RECORDS_PATH,
            request_id: &request_id,
        },
        jsonwebtoken::get_current_timestamp(),
    );
    let parts = settings.upstream.clone().into_parts();
    let uri = Uri::builder()
        .scheme(parts.scheme.unwrap_or(axum::http::uri::Scheme::HTTP))
        .authority(
            parts
                .authority
                .ok_or_else(|| failed("the upstream URL has no host".into()))?,
        )
        .path_and_query(RECORDS_PATH)
        .build()
        .map_err(|e| failed(e.to_string()))?;
    let mut request = hyper::Request::new(Full::new(Bytes::from(body)));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = uri;
    let headers = request.headers_mut();
    headers.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        IDENTITY_HEADER,
        HeaderValue::from_str(&assertion).map_err(|e| failed(e.to_string()))?,
    );
    headers.insert(
        crate::api::REQUEST_ID,
        HeaderValue::from_str(&request_id).map_err(|e| failed(e.to_string()))?,
    );
    let response = tokio::time::timeout(FORWARD_ATTEMPT_TIMEOUT, client.request(request))
        .await
        .map_err(|_| failed("no answer in time".into()))?
        .map_err(|e| failed(e.to_string()))?;
    let status = response.status();
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .map_err(|e| failed(e.to_string()))?
        .to_bytes();
    if !status.is_success() {
        let why = format!(
            "the ledger answered {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(512)])
        );
        return Err(match status {
            StatusCode::PAYLOAD_TOO_LARGE => SendError::TooLarge,
            StatusCode::UNAUTHORIZED
            | StatusCode::FORBIDDEN
            | StatusCode::REQUEST_TIMEOUT
            | StatusCode::TOO_MANY_REQUESTS => SendError::Failed(why),
            s if s.is_client_error() => SendError::Refused(why),
            _ => SendError::Failed(why),
        });
    }
    let written: Written =
        serde_json::from_slice(&body).map_err(|e| failed(format!("the ledger's answer: {e}")))?;
    Ok(written.failed)
}

#[derive(Serialize)]
struct BatchRef<'a> {
    records: &'a [audit::Draft],
}
