//! The audit log, as configured: settings, the checkpoint signer, the record of each request,
//! and the `audit` commands.
//!
//! | setting | default | meaning |
//! |---|---|---|
//! | `audit_log` | `on` | `off` writes no records: only for measuring what they cost (`bench/`); refused in production |
//! | `audit_writer` | `$HOSTNAME`, else `strongroom` | this process's name; its streams are `{writer}-{start ULID}` |
//! | `audit_signer` | `local` | `local`: an Ed25519 key file; `kms`: an AWS KMS `ECC_NIST_P256` key |
//! | `audit_signing_key_file` | `<data_dir>/audit-signing.key` | the local key (owner-only; created on first run in dev mode) |
//! | `audit_kms_key_id` | | the KMS signing key (id, ARN or alias; checkpoints name it by its ARN) |
//! | `audit_kms_region`, `audit_kms_endpoint` | `kms_region`, `kms_endpoint` | where KMS is |
//! | `audit_checkpoint_interval_s` | 10 | a checkpoint is signed at least this often while records arrive (1 to 3600) |
//! | `audit_checkpoint_records` | 10000 | and as soon as this many records wait for one (1 to 1000000) |
//!
//! The `audit` commands ([`AuditCommand`]) work on the configured store (and record what they
//! do in a stream of their own), except `verify --export` and `proof --export`, which read an
//! export's files and a public key and nothing else: what an auditor holds. A proof from the
//! store is checked against the stored checkpoint's root; one from an export also has its
//! checkpoint's signature checked ([`audit::export::prove`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ledger::audit_log::{
    AuditConfig, CHECKPOINT_INTERVAL_DEFAULT, CHECKPOINT_INTERVAL_MAX, CHECKPOINT_INTERVAL_MIN,
    CHECKPOINT_RECORDS_DEFAULT, CHECKPOINT_RECORDS_MAX, CheckpointSigner, KmsSigner,
    LocalCheckpointSigner,
};

use crate::config::{ConfigError, Mode, Source, bounded, parse};

/// The local signing key's file name in the data directory.
pub const SIGNING_KEY_FILE_NAME: &str = "audit-signing.key";
/// Longest a KMS call of the signer waits per attempt.
pub const KMS_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// The setting names this module reads.
pub const SETTINGS: &[&str] = &[
    "audit_log",
    "audit_writer",
    "audit_signer",
    "audit_signing_key_file",
    "audit_kms_key_id",
    "audit_kms_region",
    "audit_kms_endpoint",
    "audit_checkpoint_interval_s",
    "audit_checkpoint_records",
];

/// Who signs checkpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignerChoice {
    /// An Ed25519 key in a file.
    Local {
        /// Where it is.
        file: PathBuf,
    },
    /// A KMS asymmetric key.
    Kms {
        /// The key.
        key_id: String,
        /// Its region.
        region: Option<String>,
        /// Another endpoint (tests: moto).
        endpoint: Option<String>,
    },
}

/// The audit log's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditSettings {
    /// What the ledger is told.
    pub config: AuditConfig,
    /// Who signs.
    pub signer: SignerChoice,
}

impl AuditSettings {
    /// Reads the settings; `data_dir` places the default key file.
    pub fn load(
        source: &dyn Source,
        data_dir: &Path,
        mode: Mode,
    ) -> Result<AuditSettings, ConfigError> {
        let enabled = match source.get("audit_log").as_deref().map(str::trim) {
            None | Some("on") => true,
            Some("off") if mode == Mode::Production => {
                return Err(ConfigError(
                    "audit_log = off is refused in production: every action must be recorded"
                        .into(),
                ));
            }
            Some("off") => false,
            Some(other) => {
                return Err(ConfigError(format!(
                    "audit_log must be on or off, not {other:?}"
                )));
            }
        };
        let writer = source
            .get("audit_writer")
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|w| w.trim().to_owned())
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "strongroom".to_owned());
        let signer = match source.get("audit_signer").as_deref().map(str::trim) {
            None | Some("local") => SignerChoice::Local {
                file: source
                    .get("audit_signing_key_file")
                    .map_or_else(|| data_dir.join(SIGNING_KEY_FILE_NAME), PathBuf::from),
            },
            Some("kms") => SignerChoice::Kms {
                key_id: source
                    .get("audit_kms_key_id")
                    .filter(|k| !k.trim().is_empty())
                    .ok_or_else(|| {
                        ConfigError("audit_signer = kms needs audit_kms_key_id".into())
                    })?,
                region: source
                    .get("audit_kms_region")
                    .or_else(|| source.get("kms_region")),
                endpoint: source
                    .get("audit_kms_endpoint")
                    .or_else(|| source.get("kms_endpoint")),
            },
            Some(other) => {
                return Err(ConfigError(format!(
                    "audit_signer must be local or kms, not {other:?}"
                )));
            }
        };
        let config = AuditConfig {
            enabled,
            writer,
            checkpoint_interval: Duration::from_secs(bounded(
                "audit_checkpoint_interval_s",
                parse(
                    source,
                    "audit_checkpoint_interval_s",
                    CHECKPOINT_INTERVAL_DEFAULT.as_secs(),
                )?,
                CHECKPOINT_INTERVAL_MIN.as_secs(),
                CHECKPOINT_INTERVAL_MAX.as_secs(),
            )?),
            checkpoint_records: bounded(
                "audit_checkpoint_records",
                parse(
                    source,
                    "audit_checkpoint_records",
                    CHECKPOINT_RECORDS_DEFAULT,
                )?,
                1,
                CHECKPOINT_RECORDS_MAX,
            )?,
        };
        Ok(AuditSettings { config, signer })
    }
}

impl std::fmt::Display for AuditSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "audit_log = {}",
            if self.config.enabled { "on" } else { "off" }
        )?;
        writeln!(f, "audit_writer = {}", self.config.writer)?;
        match &self.signer {
            SignerChoice::Local { file } => {
                writeln!(f, "audit_signer = local")?;
                writeln!(f, "audit_signing_key_file = {}", file.display())?;
            }
            SignerChoice::Kms {
                key_id,
                region,
                endpoint,
            } => {
                writeln!(f, "audit_signer = kms")?;
                writeln!(f, "audit_kms_key_id = {key_id}")?;
                writeln!(
                    f,
                    "audit_kms_region = {}",
                    region.as_deref().unwrap_or("(SDK default)")
                )?;
                writeln!(
                    f,
                    "audit_kms_endpoint = {}",
                    endpoint.as_deref().unwrap_or("(AWS)")
                )?;
            }
        }
        writeln!(
            f,
            "audit_checkpoint_interval_s = {}",
            self.config.checkpoint_interval.as_secs()
        )?;
        write!(
            f,
            "audit_checkpoint_records = {}",
            self.config.checkpoint_records
        )
    }
}

/// Why the checkpoint signer would not open.
#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    /// The local key file.
    #[error("audit signing key {file}: {reason}")]
    KeyFile {
        /// Which file.
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// KMS.
    #[error("audit signing key in KMS: {0}")]
    Kms(String),
}

/// Opens the checkpoint signer. A local key file is created in dev mode when missing; a
/// production start needs it made beforehand (`strongroom audit init-key`), as for the keyring.
pub async fn signer(
    settings: &AuditSettings,
    mode: Mode,
) -> Result<Arc<dyn CheckpointSigner>, SignerError> {
    match &settings.signer {
        SignerChoice::Local { file } => {
            let key_file = |reason: String| SignerError::KeyFile {
                file: file.display().to_string(),
                reason,
            };
            let key = if mode == Mode::Production {
                audit::checkpoint::LocalSigner::load(file)
            } else {
                audit::checkpoint::LocalSigner::load_or_create(file)
            }
            .map_err(|e| key_file(e.to_string()))?;
            let signer = LocalCheckpointSigner::new(key);
            tracing::info!(
                key_id = signer.key_id(),
                "audit checkpoints are signed with a local Ed25519 key"
            );
            Ok(Arc::new(signer))
        }
        SignerChoice::Kms {
            key_id,
            region,
            endpoint,
        } => {
            let signer = KmsSigner::connect(
                key_id,
                region.as_deref(),
                endpoint.as_deref(),
                KMS_ATTEMPT_TIMEOUT,
            )
            .await
            .map_err(|e| SignerError::Kms(e.to_string()))?;
            tracing::info!(
                key_id = signer.key_id(),
                "audit checkpoints are signed with a KMS key"
            );
            Ok(Arc::new(signer))
        }
    }
}

// ---- the record of each request -----------------------------------------------------------

/// Whether requests to `path` are recorded: everything but health checks and the API
/// description, which read no data.
pub fn audited(path: &str) -> bool {
    !path.starts_with("/health/") && path != crate::api::OPENAPI_PATH
}

/// The trace id of a W3C `traceparent` header (`00-{trace id}-{span id}-{flags}`), if it is
/// well-formed.
pub fn trace_id(traceparent: Option<&axum::http::HeaderValue>) -> Option<String> {
    let value = traceparent?.to_str().ok()?;
    let mut parts = value.split('-');
    let (_, trace) = (parts.next()?, parts.next()?);
    (trace.len() == 32
        && trace.bytes().all(|b| b.is_ascii_hexdigit())
        && trace.bytes().any(|b| b != b'0'))
    .then(|| trace.to_ascii_lowercase())
}

/// Carries the matched route (`/v1/accounts/{account_id}`) out to `edge` on the response, which
/// names the record's action and resources after it.
pub async fn note_route(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let matched = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .cloned();
    let mut response = next.run(req).await;
    if let Some(matched) = matched {
        response.extensions_mut().insert(matched);
    }
    response
}

/// The action a route names: the first segment after `/v1`, singular, then the route's other
/// literal segments, or the method's verb (`GET /v1/accounts/{account_id}` is
/// `account.read`, `POST /v1/accounts/{account_id}/freeze` is `account.freeze`, `GET
/// /v1/audit/events` is `audit.events`). The committer names ledger commands the same way.
pub fn action(method: &axum::http::Method, template: &str) -> String {
    let mut literals = template
        .trim_start_matches('/')
        .split('/')
        .filter(|s| !s.starts_with('{'))
        .skip_while(|s| *s == "v1");
    let noun = literals.next().unwrap_or("route");
    let noun = match noun {
        "journal-entries" => "journal_entry",
        "trial-balance" => "trial_balance",
        other => other.strip_suffix('s').unwrap_or(other),
    };
    let rest: Vec<&str> = literals.collect();
    let verb = if rest.is_empty() {
        let by_id = template.ends_with('}');
        match *method {
            axum::http::Method::GET if by_id => "read".to_owned(),
            axum::http::Method::GET => "list".to_owned(),
            axum::http::Method::POST => "create".to_owned(),
            axum::http::Method::DELETE => "delete".to_owned(),
            ref other => other.as_str().to_ascii_lowercase(),
        }
    } else {
        rest.join(".")
    };
    format!("{noun}.{verb}")
}

/// The ids a request's path names: each `{kind_id}` parameter of the route with the path's
/// segment in its place, as `kind:value`.
pub fn path_resources(template: &str, path: &str) -> Vec<(String, String)> {
    template
        .split('/')
        .zip(path.split('/'))
        .filter_map(|(t, p)| {
            let name = t.strip_prefix('{')?.strip_suffix('}')?;
            let kind = name.strip_suffix("_id").unwrap_or(name);
            Some((kind.to_owned(), p.to_owned()))
        })
        .collect()
}

/// Who writes the records of a process's requests.
#[derive(Debug)]
pub enum Recorder {
    /// This process's ledger, in its own stream (the combined server, the ledger alone).
    Ledger(ledger::Ledger),
    /// The gateway alone: the ledger behind it writes the records of what the gateway answers
    /// itself ([`crate::audit_forward`]); what it forwards, the ledger records anyway.
    Forward(Arc<crate::audit_forward::Forwarder>),
}

impl Recorder {
    /// Records a request unless its record was written already, and answers (see [`record`]).
    pub async fn record(
        &self,
        scope: &ledger::audit_log::AuditScope,
        method: &axum::http::Method,
        path: &str,
        response: axum::response::Response,
    ) -> axum::response::Response {
        match self {
            Recorder::Ledger(ledger) => record(ledger, scope, method, path, response).await,
            Recorder::Forward(forwarder) => {
                let answered_upstream = response
                    .extensions()
                    .get::<crate::proxy::FromUpstream>()
                    .is_some();
                if !answered_upstream && !scope.recorded() {
                    forwarder.submit(draft_of(scope, method, path, &response));
                }
                response
            }
        }
    }
}

/// The record of a request and its answer: the action and resources named after the matched
/// route, the outcome and reason from the answer, who and where from the scope.
pub fn draft_of(
    scope: &ledger::audit_log::AuditScope,
    method: &axum::http::Method,
    path: &str,
    response: &axum::response::Response,
) -> audit::Draft {
    let template = response
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let action = match &template {
        Some(t) => action(method, t),
        None => "route.unknown".to_owned(),
    };
    let status = response.status();
    let mut draft = if status.is_success() || status.is_redirection() {
        audit::Draft::success(action, scope.actor(), scope.origin())
    } else {
        let reason = response
            .extensions()
            .get::<crate::api::problem::ProblemNote>()
            .map_or_else(|| status.to_string(), |n| n.0.clone());
        audit::Draft::failure(action, scope.actor(), scope.origin(), reason)
    };
    if let Some(detail) = scope.detail() {
        draft = draft.detail(detail);
    }
    match &template {
        Some(t) => {
            for (kind, id) in path_resources(t, path) {
                draft = draft.resource(&kind, id);
            }
        }
        None => draft = draft.resource("path", path),
    }
    draft
}

/// Writes the record of a request the ledger did not already record with its command, and
/// answers. A request whose record cannot be written is not answered with data: a success
/// becomes 503 `audit-unavailable` (a refusal keeps its own answer: it shows nothing).
pub async fn record(
    ledger: &ledger::Ledger,
    scope: &ledger::audit_log::AuditScope,
    method: &axum::http::Method,
    path: &str,
    response: axum::response::Response,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if scope.recorded() {
        return response;
    }
    let status = response.status();
    let draft = draft_of(scope, method, path, &response);
    match ledger.audit_append(draft).await {
        Ok(_) => response,
        Err(e) if status.is_success() => {
            tracing::error!(error = %e, "the request's audit record was not written; answered 503");
            crate::api::problem::ApiError::new(
                crate::api::problem::ProblemKind::AuditUnavailable,
                "the request's audit record could not be written; nothing was answered",
            )
            .retry_after(1)
            .into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, status = status.as_u16(), "the audit record of a refused request was not written");
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::Method;

    use super::*;

    #[test]
    fn actions_are_named_after_routes() {
        let check = |m: Method, t: &str, want: &str| assert_eq!(action(&m, t), want, "{m} {t}");
        check(Method::POST, "/v1/accounts", "account.create");
        check(Method::GET, "/v1/accounts", "account.list");
        check(Method::GET, "/v1/accounts/{account_id}", "account.read");
        check(
            Method::GET,
            "/v1/accounts/{account_id}/balance",
            "account.balance",
        );
        check(
            Method::POST,
            "/v1/accounts/{account_id}/freeze",
            "account.freeze",
        );
        check(
            Method::POST,
            "/v1/transfers/{transfer_id}/post",
            "transfer.post",
        );
        check(Method::DELETE, "/v1/cards/{card_id}", "card.delete");
        check(Method::POST, "/v1/cards/{card_id}/reveal", "card.reveal");
        check(Method::GET, "/v1/audit/events", "audit.events");
        check(
            Method::GET,
            "/v1/audit/checkpoints/latest",
            "audit.checkpoints.latest",
        );
        check(Method::GET, "/v1/trial-balance", "trial_balance.list");
    }

    #[test]
    fn path_parameters_become_resources() {
        assert_eq!(
            path_resources(
                "/v1/accounts/{account_id}/freeze",
                "/v1/accounts/acct_1/freeze"
            ),
            vec![("account".to_owned(), "acct_1".to_owned())]
        );
        assert!(path_resources("/v1/accounts", "/v1/accounts").is_empty());
    }

    #[test]
    fn trace_ids_come_from_well_formed_traceparents_only() {
        let h = |s: &str| axum::http::HeaderValue::from_str(s).expect("header");
        assert_eq!(
            trace_id(Some(&h(
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"
            )))
            .as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(
            trace_id(Some(&h(
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01"
            ))),
            None
        );
        assert_eq!(trace_id(Some(&h("garbage"))), None);
        assert_eq!(trace_id(None), None);
    }
}

// ---- the `audit` commands -----------------------------------------------------------------

/// `strongroom audit …`.
#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Checks every stream: each record's hash, sequence continuity, the tree against every
    /// checkpoint, every checkpoint's signature. Exit status 1 on any failure.
    Verify {
        /// An export directory (`audit export`) instead of the configured store.
        #[arg(long)]
        export: Option<PathBuf>,
        /// The public key file (`audit public-key`); default: the configured signer's.
        #[arg(long)]
        public_key: Option<PathBuf>,
    },
    /// Prints, as JSON, the proof that a record is in its stream's tree (checked before it is
    /// printed), from the configured store or from an export alone. Exit status 1 when there
    /// is none.
    Proof {
        /// The stream.
        #[arg(long)]
        stream: String,
        /// The record's sequence number.
        #[arg(long)]
        seq: u64,
        /// The tree to prove against; default: the stream's latest checkpoint. On an export,
        /// the size of one of the stream's checkpoints.
        #[arg(long)]
        tree_size: Option<u64>,
        /// An export directory (`audit export`) instead of the configured store, which is then
        /// not opened: the proof comes from the export's files, and the checkpoint's signature
        /// is checked too.
        #[arg(long)]
        export: Option<PathBuf>,
        /// The public key file (`audit public-key`) that verifies the export's checkpoints;
        /// only with `--export`; default: the configured signer's.
        #[arg(long, requires = "export")]
        public_key: Option<PathBuf>,
    },
    /// Writes every stream's records and checkpoints to a new directory, for an auditor.
    Export {
        /// The directory (must not exist, or be empty).
        dir: PathBuf,
    },
    /// Prints the public key that verifies this deployment's checkpoints (JSON).
    PublicKey,
    /// Prints the latest checkpoint of every stream.
    Checkpoint,
}

/// Opens the store and a ledger whose stream records what the command does.
async fn open(config: &crate::config::Config) -> Result<ledger::Ledger, String> {
    open_store(config, true).await
}

async fn open_store(
    config: &crate::config::Config,
    must_exist: bool,
) -> Result<ledger::Ledger, String> {
    if must_exist
        && config.store == crate::config::StoreChoice::Sqlite
        && !config.database_path().exists()
    {
        return Err(format!(
            "no database at {}",
            config.database_path().display()
        ));
    }
    let store = crate::server::open_store(config)
        .await
        .map_err(|e| e.to_string())?;
    let signer = signer(&config.audit, config.mode)
        .await
        .map_err(|e| e.to_string())?;
    Ok(ledger::Ledger::start_with_signer(
        store,
        Arc::new(ledger::SystemClock),
        ledger::LedgerConfig {
            commit: config.commit,
            hold_sweep_interval: None,
            audit: config.audit.config.clone(),
        },
        None,
        Some(signer),
    ))
}

/// Records an operation done outside the server (a key rotation), in a stream of its own.
pub async fn record_operation(
    config: &crate::config::Config,
    draft: audit::Draft,
) -> Result<(), String> {
    let ledger = open_store(config, false).await?;
    let result = ledger.audit_append(draft).await.map_err(|e| e.to_string());
    ledger.shutdown().await;
    result.map(|_| ())
}

/// The actor of a command-line operation: the operating-system user.
pub fn operator() -> audit::Actor {
    audit::Actor {
        tenant: None,
        subject: std::env::var("USER").ok().map(|u| format!("os-user:{u}")),
        client_id: Some("strongroom-cli".to_owned()),
        source_ip: None,
    }
}

fn progress(stream: &str, done: u64) {
    eprintln!("  {stream}: {done} records");
}

/// Runs an `audit` command.
pub async fn command(
    config: crate::config::Config,
    action: AuditCommand,
) -> std::process::ExitCode {
    use std::process::ExitCode;
    let result = match action {
        AuditCommand::Verify { export, public_key } => verify(&config, export, public_key).await,
        AuditCommand::Proof {
            stream,
            seq,
            tree_size,
            export: Some(dir),
            public_key,
        } => proof_of_export(&config, &dir, public_key, &stream, seq, tree_size).await,
        AuditCommand::Proof {
            stream,
            seq,
            tree_size,
            export: None,
            public_key: _,
        } => proof(&config, &stream, seq, tree_size).await,
        AuditCommand::Export { dir } => export(&config, &dir).await,
        AuditCommand::PublicKey => public_key(&config).await,
        AuditCommand::Checkpoint => checkpoints(&config).await,
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("strongroom: {e}");
            ExitCode::FAILURE
        }
    }
}

fn keys_of(key: audit::checkpoint::PublicKey) -> Result<audit::checkpoint::PublicKeys, String> {
    let mut keys = audit::checkpoint::PublicKeys::new();
    keys.add(key).map_err(|e| e.to_string())?;
    Ok(keys)
}

fn cli_draft(action: &str) -> audit::Draft {
    audit::Draft::success(action, operator(), audit::Origin::default())
}

/// The public keys in `key_file`, or the configured signer's.
async fn load_keys(
    config: &crate::config::Config,
    key_file: Option<&Path>,
) -> Result<audit::checkpoint::PublicKeys, String> {
    match key_file {
        Some(file) => {
            let bytes = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
            audit::checkpoint::PublicKeys::from_json(&bytes)
                .map_err(|e| format!("{}: {e}", file.display()))
        }
        None => {
            let signer = signer(&config.audit, config.mode)
                .await
                .map_err(|e| e.to_string())?;
            let key = signer.public_key().await.map_err(|e| e.to_string())?;
            keys_of(key)
        }
    }
}

async fn verify(
    config: &crate::config::Config,
    export: Option<PathBuf>,
    key_file: Option<PathBuf>,
) -> Result<bool, String> {
    let keys = load_keys(config, key_file.as_deref()).await?;
    let report = match &export {
        Some(dir) => {
            eprintln!("verifying the export in {}", dir.display());
            let mut on_progress = |p: audit::export::Progress| progress(&p.stream, p.records_done);
            audit::export::verify_export(dir, &keys, &mut on_progress).map_err(|e| e.to_string())?
        }
        None => {
            let ledger = open(config).await?;
            eprintln!("verifying every stream in the store");
            let mut on_progress = progress;
            let report = ledger.audit_verify(&keys, &mut on_progress).await;
            let _ = ledger.audit_append(cli_draft("audit.verify")).await;
            ledger.shutdown().await;
            report.map_err(|e| e.to_string())?
        }
    };
    Ok(print_report(&report))
}

/// Prints a verification report; whether every stream passed.
pub fn print_report(report: &audit::export::Report) -> bool {
    let mut ok = true;
    for result in &report.streams {
        match result {
            Ok(s) => {
                let uncovered = s.records.saturating_sub(s.covered);
                println!(
                    "ok      {}: {} records, {} checkpoints, {} records under a signed checkpoint{}",
                    s.stream,
                    s.records,
                    s.checkpoints,
                    s.covered,
                    if uncovered > 0 {
                        format!(" ({uncovered} after the last checkpoint: not yet provable)")
                    } else {
                        String::new()
                    }
                );
            }
            Err(f) => {
                ok = false;
                println!("FAILED  {f}");
            }
        }
    }
    println!(
        "{} streams, {}",
        report.streams.len(),
        if ok {
            "all verified"
        } else {
            "verification FAILED"
        }
    );
    ok
}

async fn proof(
    config: &crate::config::Config,
    stream: &str,
    seq: u64,
    tree_size: Option<u64>,
) -> Result<bool, String> {
    let ledger = open(config).await?;
    let proof = ledger.audit_inclusion(stream, seq, tree_size).await;
    let _ = ledger
        .audit_append(cli_draft("audit.proof").resource("audit-record", format!("{stream}/{seq}")))
        .await;
    ledger.shutdown().await;
    let proof = proof.map_err(|e| e.to_string())?;
    audit::merkle::verify_inclusion(
        &audit::merkle::leaf_hash(&proof.record),
        proof.seq,
        proof.tree_size,
        &proof.proof,
        &proof.root,
    )
    .map_err(|e| format!("the proof does not verify: {e}"))?;
    if let Some(cp) = &proof.checkpoint
        && cp.checkpoint.root != proof.root
    {
        return Err("the proof's root is not the signed checkpoint's".into());
    }
    print_proof(&proof);
    Ok(true)
}

/// `audit proof --export`: from the export's files and the public key alone, checked by
/// [`audit::export::prove`] (the proof, the root against the checkpoint's, its signature).
async fn proof_of_export(
    config: &crate::config::Config,
    dir: &Path,
    key_file: Option<PathBuf>,
    stream: &str,
    seq: u64,
    tree_size: Option<u64>,
) -> Result<bool, String> {
    let keys = load_keys(config, key_file.as_deref()).await?;
    let proof = audit::export::prove(dir, stream, seq, tree_size, &keys)
        .map_err(|e| format!("no proof of record {seq} of stream {stream}: {e}"))?;
    print_proof(&proof);
    Ok(true)
}

/// Prints a checked proof as pretty JSON: `stream`, `seq`, `record`, `leaf`, `tree_size`,
/// `root`, `proof` (hex, deepest first) and `checkpoint` (null when none was signed at the
/// tree's size).
fn print_proof(proof: &audit::RecordProof) {
    let record: serde_json::Value = serde_json::from_slice(&proof.record).unwrap_or_default();
    let out = serde_json::json!({
        "stream": proof.stream,
        "seq": proof.seq,
        "record": record,
        "leaf": hex::encode(proof.leaf),
        "tree_size": proof.tree_size,
        "root": hex::encode(proof.root),
        "proof": proof.proof.iter().map(hex::encode).collect::<Vec<_>>(),
        "checkpoint": proof.checkpoint.as_ref().map(|cp| serde_json::from_slice::<serde_json::Value>(&cp.encode()).unwrap_or_default()),
    });
    println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
}

async fn export(config: &crate::config::Config, dir: &Path) -> Result<bool, String> {
    let ledger = open(config).await?;
    // The export's own record goes in first, so that the export holds it.
    let _ = ledger
        .audit_append(cli_draft("audit.export").detail(dir.display().to_string()))
        .await;
    let _ = ledger.audit_checkpoint_now().await;
    let mut on_progress = progress;
    let result = ledger.audit_export(dir, &mut on_progress).await;
    ledger.shutdown().await;
    let records = result.map_err(|e| e.to_string())?;
    println!("exported {records} records to {}", dir.display());
    Ok(true)
}

async fn public_key(config: &crate::config::Config) -> Result<bool, String> {
    let signer = signer(&config.audit, config.mode)
        .await
        .map_err(|e| e.to_string())?;
    let key = signer.public_key().await.map_err(|e| e.to_string())?;
    println!("{}", String::from_utf8_lossy(&key.to_json()));
    Ok(true)
}

async fn checkpoints(config: &crate::config::Config) -> Result<bool, String> {
    let ledger = open(config).await?;
    let mut out = Vec::new();
    let result: Result<(), ledger::Error> = async {
        for (stream, _) in ledger.audit_streams().await? {
            if let Some(cp) = ledger.audit_checkpoint_latest(&stream).await? {
                out.push(cp);
            }
        }
        Ok(())
    }
    .await;
    let _ = ledger
        .audit_append(cli_draft("audit.checkpoints.latest"))
        .await;
    ledger.shutdown().await;
    result.map_err(|e| e.to_string())?;
    for cp in out {
        println!("{}", String::from_utf8_lossy(&cp.encode()));
    }
    Ok(true)
}
