//! Configuration: read once at start from the environment and an optional file, validated,
//! printed.
//!
//! Every setting has a name (`listen`), an environment variable (`STRONGROOM_LISTEN`) and a
//! default. The environment wins over the file; the file wins over the default. Zero
//! configuration is a working development instance: SQLite under `./strongroom-data`, a
//! self-signed certificate, a local dev token issuer, HTTPS on 127.0.0.1:8443. Production mode
//! refuses to start without a real certificate and a real token issuer.

use crate::mtls::MtlsMode;
use crate::ratelimit::RateLimitConfig;
use crate::tls::TlsMode;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ledger::limits::{
    COMMIT_BATCH_LEN_DEFAULT, COMMIT_QUEUE_LEN_DEFAULT, COMMIT_RETRIES_DEFAULT,
    COMMIT_WAIT_US_DEFAULT,
};
use ledger::store::dynamodb::{DYNAMODB_TABLE_DEFAULT, DynamoConfig};
use ledger::{CommitConfig, TenantId};

/// Prefix of every environment variable.
pub const ENV_PREFIX: &str = "STRONGROOM_";

/// Default data directory (relative to the working directory).
pub const DEFAULT_DATA_DIR: &str = "strongroom-data";
/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8443";
/// Default token audience.
pub const DEFAULT_JWT_AUDIENCE: &str = "strongroom";
/// Default clock-skew leeway for `exp` and `nbf`, in seconds.
pub const DEFAULT_JWT_LEEWAY_S: u64 = 30;
/// Largest leeway accepted, in seconds.
pub const JWT_LEEWAY_S_MAX: u64 = 300;
/// Default request body limit: a 1000-transfer batch with modest metadata fits.
pub const DEFAULT_BODY_BYTES_MAX: usize = 2 << 20;
/// Default bound on requests being served at once; one more is shed with 503.
pub const DEFAULT_CONCURRENCY_MAX: usize = 1024;
/// Default longest wait for a request's complete head (slow clients), in milliseconds.
pub const DEFAULT_HEADER_READ_TIMEOUT_MS: u64 = 10_000;
/// Default most header fields in one request.
pub const DEFAULT_HEADERS_MAX: usize = 64;
/// Default most bytes of one request's head (request line and header fields).
pub const DEFAULT_HEADER_BYTES_MAX: usize = 16 << 10;
/// Fewest bytes a request head may be limited to (hyper reads HTTP/1.1 heads into at least
/// 8 KiB).
pub const HEADER_BYTES_MIN: usize = 8 << 10;
/// Default interval at which the certificate and key files are checked for changes, in
/// milliseconds.
pub const DEFAULT_TLS_RELOAD_MS: u64 = 5_000;
/// Default time a request may take, end to end.
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 10_000;
/// Default time in-flight requests get to finish after SIGTERM or SIGINT.
pub const DEFAULT_SHUTDOWN_GRACE_MS: u64 = 20_000;
/// Most threads of the HTTP runtime.
pub const HTTP_THREADS_MAX: usize = 256;
/// Default interval of the hold-expiry sweeper.
pub const DEFAULT_HOLD_SWEEP_MS: u64 = 1_000;
/// Default bound of the verified-token cache.
pub const DEFAULT_TOKEN_CACHE_LEN_MAX: usize = 10_000;
/// Default interval at which keys from `jwks_url` are fetched again: five minutes, the
/// order of magnitude at which identity providers announce a new key before signing with it.
pub const DEFAULT_JWKS_REFRESH_MS: u64 = 300_000;
/// Default least time between two fetches of `jwks_url` that tokens with an unknown `kid`
/// cause: random `kid`s cannot make the gateway hammer the identity provider.
pub const DEFAULT_JWKS_REFETCH_MIN_INTERVAL_MS: u64 = 30_000;
/// Default longest time one fetch of `jwks_url` may take, connection to last byte.
pub const DEFAULT_JWKS_FETCH_TIMEOUT_MS: u64 = 5_000;
/// Longest `jwks_url` accepted, in bytes.
pub const JWKS_URL_BYTES_MAX: usize = 2_048;
/// Default log filter.
pub const DEFAULT_LOG: &str = "info";

/// Which store holds the ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreChoice {
    /// SQLite files in the data directory (the zero-configuration default).
    Sqlite,
    /// A DynamoDB table: any number of instances can share it.
    Dynamodb(DynamoConfig),
}

/// Which part of Strongroom this process runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Gateway and ledger in one process (`strongroom serve`; the default).
    Combined,
    /// The gateway alone, forwarding to a remote ledger (`strongroom serve --upstream URL`, or
    /// the `upstream` setting).
    Gateway,
    /// The ledger alone, taking requests only from a gateway (`strongroom ledger`).
    Ledger,
}

/// Development or production.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Self-signed certificate and a local token issuer are allowed.
    Dev,
    /// Both are refused.
    Production,
}

/// The whole configuration, typed and validated.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Dev or production.
    pub mode: Mode,
    /// What this process runs; chosen by the command and `upstream`, not a setting of its own.
    pub role: Role,
    /// The ledger to forward to (`http://` or `https://` host and port); makes this process a
    /// gateway alone.
    pub upstream: Option<axum::http::Uri>,
    /// CA bundle the ledger's certificate must chain to, for an `https://` upstream (in dev
    /// mode, the development certificate of the data directory when unset).
    pub upstream_ca_file: Option<PathBuf>,
    /// Retries of a failed upstream request (idempotent requests only, or ones never sent).
    pub upstream_retries_max: u32,
    /// Longest wait for a connection to the ledger.
    pub upstream_connect_timeout: Duration,
    /// Most idle keep-alive connections kept to the ledger.
    pub upstream_idle_max: usize,
    /// Whether an `http://` upstream is accepted in production mode: the assertion is MACed,
    /// but request and answer bodies cross the network unprotected (for a ledger on the same
    /// host or behind a protected link; `https://` otherwise).
    pub upstream_plaintext_ok: bool,
    /// Consecutive upstream failures that open the circuit breaker.
    pub breaker_failures: u32,
    /// How long the open breaker refuses before it lets a trial request through.
    pub breaker_open: Duration,
    /// The key the gateway and a ledger run alone share for internal assertions (hex, owner-only
    /// permissions); in dev mode `internal.key` in the data directory, generated when missing.
    pub internal_key_file: Option<PathBuf>,
    /// Where the database, the generated certificate and the dev issuer key live.
    pub data_dir: PathBuf,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Where to serve `GET /metrics` (Prometheus text, plain HTTP) for a scraper beside the
    /// process; off when unset.
    pub metrics_listen: Option<SocketAddr>,
    /// PEM certificate chain; generated in the data directory in dev mode when unset.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key, with `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Protocol versions and cipher suites offered.
    pub tls_mode: TlsMode,
    /// PEM bundle of the CAs whose client certificates are verified (mutual TLS, see
    /// `crate::mtls`); off when unset.
    pub tls_client_ca_file: Option<PathBuf>,
    /// With `tls_client_ca_file`: whether a client without a certificate may connect.
    pub mtls: MtlsMode,
    /// Tenants whose requests need a client certificate even in `optional` mode.
    pub mtls_tenants: Vec<TenantId>,
    /// A route policy file replacing the built-in `policies/routes.toml`.
    pub policy_file: Option<PathBuf>,
    /// Browser origins allowed to call the API (CORS); empty: none, CORS off.
    pub cors_origins: Vec<String>,
    /// How often the certificate and key files are checked for changes (zero: only on SIGHUP).
    pub tls_reload: Duration,
    /// JWKS file of the identity provider's public keys.
    pub jwks_file: Option<PathBuf>,
    /// HTTPS URL of the identity provider's JWKS (instead of `jwks_file`): fetched at start,
    /// then every `jwks_refresh`, and when a token names an unknown key.
    pub jwks_url: Option<String>,
    /// PEM bundle of the CAs trusted for `jwks_url`'s certificate; the Mozilla roots
    /// (webpki-root-certs) when unset.
    pub jwks_ca_file: Option<PathBuf>,
    /// How often the keys of `jwks_url` are fetched again.
    pub jwks_refresh: Duration,
    /// Least time between two fetches that unknown `kid`s cause.
    pub jwks_refetch_min_interval: Duration,
    /// Longest time one fetch may take.
    pub jwks_fetch_timeout: Duration,
    /// The `iss` that tokens signed by the JWKS keys must carry.
    pub jwt_issuer: Option<String>,
    /// The `aud` every token must carry.
    pub jwt_audience: String,
    /// Clock-skew leeway for `exp` and `nbf`.
    pub jwt_leeway_s: u64,
    /// Most verified tokens remembered.
    pub token_cache_len_max: usize,
    /// Request body limit in bytes.
    pub body_bytes_max: usize,
    /// Most requests served at once; one more gets 503 with `Retry-After`.
    pub concurrency_max: usize,
    /// Rate limits per client address and per tenant (all off unless set; see
    /// [`crate::ratelimit`]).
    pub rate: RateLimitConfig,
    /// Longest wait for a request's complete head.
    pub header_read_timeout: Duration,
    /// Most header fields in one request.
    pub headers_max: usize,
    /// Most bytes of one request's head.
    pub header_bytes_max: usize,
    /// End-to-end request timeout.
    pub request_timeout: Duration,
    /// How long in-flight requests may take after a shutdown signal.
    pub shutdown_grace: Duration,
    /// Threads of the HTTP runtime (TLS, HTTP, JSON, tokens); 0 chooses (see
    /// [`Config::http_threads`]).
    pub http_threads: usize,
    /// Where the ledger is stored.
    pub store: StoreChoice,
    /// The DynamoDB table settings (used by `store = "dynamodb"` and by
    /// `strongroom dynamodb create-tables`).
    pub dynamodb: DynamoConfig,
    /// The key service and the card vault (see [`crate::keys`]).
    pub vault: crate::keys::VaultSettings,
    /// The audit log (see [`crate::auditlog`]).
    pub audit: crate::auditlog::AuditSettings,
    /// Group commit bounds.
    pub commit: CommitConfig,
    /// Hold-expiry sweep interval.
    pub hold_sweep_interval: Duration,
    /// Log filter (tracing `EnvFilter` syntax).
    pub log: String,
}

/// Where settings come from.
pub trait Source {
    /// The raw value of a setting, by its name (`listen`, `data_dir`, ...).
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment: `listen` is `STRONGROOM_LISTEN`.
#[derive(Debug, Clone, Copy, Default)]
pub struct EnvSource;

impl Source for EnvSource {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(format!("{ENV_PREFIX}{}", name.to_ascii_uppercase())).ok()
    }
}

/// A fixed map; for tests and for the parsed config file.
#[derive(Debug, Clone, Default)]
pub struct MapSource(pub BTreeMap<String, String>);

impl Source for MapSource {
    fn get(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

/// Several sources, first one that has a setting wins.
pub struct Layered<'a>(pub Vec<&'a dyn Source>);

impl fmt::Debug for Layered<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Layered({} sources)", self.0.len())
    }
}

impl Source for Layered<'_> {
    fn get(&self, name: &str) -> Option<String> {
        self.0.iter().find_map(|s| s.get(name))
    }
}

/// A configuration that cannot be used; the process exits with status 64.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

/// Reads a TOML file of `name = value` settings.
pub fn file_source(path: &Path) -> Result<MapSource, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
    let mut map = BTreeMap::new();
    for (name, value) in table {
        if !SETTINGS.contains(&name.as_str())
            && !crate::keys::SETTINGS.contains(&name.as_str())
            && !crate::auditlog::SETTINGS.contains(&name.as_str())
        {
            return Err(ConfigError(format!(
                "{}: unknown setting {name:?}",
                path.display()
            )));
        }
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => return Err(ConfigError(format!("{name}: unsupported value {other}"))),
        };
        map.insert(name, value);
    }
    Ok(MapSource(map))
}

/// Every setting name but the vault's ([`crate::keys::SETTINGS`]), for checking a file for
/// typos.
pub const SETTINGS: &[&str] = &[
    "mode",
    "upstream",
    "upstream_ca_file",
    "upstream_retries_max",
    "upstream_connect_timeout_ms",
    "upstream_idle_max",
    "upstream_plaintext_ok",
    "breaker_failures",
    "breaker_open_ms",
    "internal_key_file",
    "data_dir",
    "listen",
    "metrics_listen",
    "tls_cert",
    "tls_key",
    "tls_mode",
    "tls_client_ca_file",
    "mtls",
    "mtls_tenants",
    "tls_reload_ms",
    "policy_file",
    "cors_origins",
    "jwks_file",
    "jwks_url",
    "jwks_ca_file",
    "jwks_refresh_ms",
    "jwks_refetch_min_interval_ms",
    "jwks_fetch_timeout_ms",
    "jwt_issuer",
    "jwt_audience",
    "jwt_leeway_s",
    "token_cache_len_max",
    "body_bytes_max",
    "concurrency_max",
    "rate_ip",
    "rate_tenant",
    "rate_tenant_tiers",
    "rate_tenant_tier_of",
    "trusted_proxies",
    "rate_keys_max",
    "quota_tenant_day",
    "quota_flush_ms",
    "quota_batch_max",
    "header_read_timeout_ms",
    "headers_max",
    "header_bytes_max",
    "request_timeout_ms",
    "shutdown_grace_ms",
    "http_threads",
    "store",
    "dynamodb_table",
    "dynamodb_region",
    "dynamodb_endpoint",
    "commit_queue_len_max",
    "commit_batch_len_max",
    "commit_wait_us",
    "commit_retries_max",
    "hold_sweep_ms",
    "log",
    "rate_reveal",
];

pub(crate) fn parse<T: std::str::FromStr>(
    source: &dyn Source,
    name: &str,
    default: T,
) -> Result<T, ConfigError>
where
    T::Err: fmt::Display,
{
    match source.get(name) {
        None => Ok(default),
        Some(raw) => raw
            .trim()
            .parse()
            .map_err(|e| ConfigError(format!("{name}={raw:?}: {e}"))),
    }
}

pub(crate) fn bounded<T: PartialOrd + fmt::Display + Copy>(
    name: &str,
    value: T,
    min: T,
    max: T,
) -> Result<T, ConfigError> {
    if value < min || value > max {
        return Err(ConfigError(format!(
            "{name} must be between {min} and {max}, not {value}"
        )));
    }
    Ok(value)
}

/// Most tenants `mtls_tenants` may list.
pub const MTLS_TENANTS_MAX: usize = 10_000;

/// A comma-separated setting: at most `len_max` items, each checked by `item`; empty or unset
/// is none.
fn comma_list<T>(
    name: &str,
    raw: Option<&str>,
    len_max: usize,
    item: impl Fn(&str) -> Result<T, String>,
) -> Result<Vec<T>, ConfigError> {
    let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else {
        return Ok(Vec::new());
    };
    let items: Vec<&str> = raw.split(',').map(str::trim).collect();
    if items.len() > len_max {
        return Err(ConfigError(format!("{name}: at most {len_max} items")));
    }
    items
        .into_iter()
        .map(|i| item(i).map_err(|why| ConfigError(format!("{name}: {i:?} {why}"))))
        .collect()
}

/// `mtls_tenants`: comma-separated tenant ids.
fn mtls_tenants(raw: Option<&str>) -> Result<Vec<TenantId>, ConfigError> {
    comma_list("mtls_tenants", raw, MTLS_TENANTS_MAX, |t| {
        TenantId::new(t).ok_or_else(|| "is not a tenant id".to_owned())
    })
}

/// Most origins `cors_origins` may list.
pub const CORS_ORIGINS_MAX: usize = 64;

/// `cors_origins`: comma-separated origins, each `http(s)://host[:port]` exactly as a browser
/// sends it in `Origin`; no wildcard, no path.
fn cors_origins(raw: Option<&str>) -> Result<Vec<String>, ConfigError> {
    comma_list("cors_origins", raw, CORS_ORIGINS_MAX, |origin| {
        let host = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"));
        let valid = host.is_some_and(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        });
        if valid {
            Ok(origin.to_owned())
        } else {
            Err("is not an origin (scheme://host[:port], no wildcard, no path)".to_owned())
        }
    })
}

/// `upstream`: an `http://` or `https://` URL of a host and port, without path or query.
fn upstream_url(raw: &str) -> Result<axum::http::Uri, ConfigError> {
    let bad = |why: &str| ConfigError(format!("upstream={raw:?}: {why}"));
    let uri: axum::http::Uri = raw.parse().map_err(|_| bad("not a URL"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(bad("must start with http:// or https://"));
    }
    if uri.authority().is_none_or(|a| a.host().is_empty()) {
        return Err(bad("no host"));
    }
    if uri.path() != "/" || uri.query().is_some() {
        return Err(bad(
            "no path or query (the ledger serves the API at its root)",
        ));
    }
    Ok(uri)
}

/// `jwks_url`: an `https://` URL with a host and no user info, at most [`JWKS_URL_BYTES_MAX`].
fn jwks_url(raw: Option<&str>) -> Result<Option<String>, ConfigError> {
    let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else {
        return Ok(None);
    };
    let bad = |why: &str| ConfigError(format!("jwks_url {raw:?}: {why}"));
    if raw.len() > JWKS_URL_BYTES_MAX {
        return Err(bad(&format!("longer than {JWKS_URL_BYTES_MAX} bytes")));
    }
    let uri: axum::http::Uri = raw.parse().map_err(|e| bad(&format!("{e}")))?;
    if uri.scheme_str() != Some("https") {
        return Err(bad("must be an https:// URL"));
    }
    let authority = uri.authority().ok_or_else(|| bad("has no host"))?;
    if authority.as_str().contains('@') || authority.host().is_empty() {
        return Err(bad("needs a host and no user info"));
    }
    Ok(Some(raw.to_owned()))
}

impl Config {
    /// The internal assertion key file, if this role uses one: as configured, or in dev mode
    /// `internal.key` in the data directory.
    pub fn internal_key_path(&self) -> Option<PathBuf> {
        match self.role {
            Role::Combined => None,
            Role::Gateway | Role::Ledger => Some(
                self.internal_key_file
                    .clone()
                    .unwrap_or_else(|| crate::internal::InternalKey::default_path(&self.data_dir)),
            ),
        }
    }

    /// Reads and validates a configuration.
    pub fn load(source: &dyn Source) -> Result<Config, ConfigError> {
        Self::load_as(source, None)
    }

    /// Reads and validates a configuration for `strongroom ledger` ([`Role::Ledger`], checked as
    /// such: no token keys needed, the internal key is), or, with `None`, for `serve` (the
    /// gateway alone when `upstream` is set, else the combined server).
    pub fn load_as(source: &dyn Source, role: Option<Role>) -> Result<Config, ConfigError> {
        let mode = match source.get("mode").as_deref().map(str::trim) {
            None | Some("dev") => Mode::Dev,
            Some("production") => Mode::Production,
            Some(other) => {
                return Err(ConfigError(format!(
                    "mode must be dev or production, not {other:?}"
                )));
            }
        };
        let path = |name: &str| {
            source
                .get(name)
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
        };
        let commit = CommitConfig {
            queue_len_max: bounded(
                "commit_queue_len_max",
                parse(source, "commit_queue_len_max", COMMIT_QUEUE_LEN_DEFAULT)?,
                1,
                1 << 20,
            )?,
            batch_len_max: bounded(
                "commit_batch_len_max",
                parse(source, "commit_batch_len_max", COMMIT_BATCH_LEN_DEFAULT)?,
                1,
                65_536,
            )?,
            wait: Duration::from_micros(bounded(
                "commit_wait_us",
                parse(source, "commit_wait_us", COMMIT_WAIT_US_DEFAULT)?,
                0,
                100_000,
            )?),
            retries_max: bounded(
                "commit_retries_max",
                parse(source, "commit_retries_max", COMMIT_RETRIES_DEFAULT)?,
                0,
                100,
            )?,
        };
        let dynamodb = DynamoConfig {
            table: source
                .get("dynamodb_table")
                .unwrap_or_else(|| DYNAMODB_TABLE_DEFAULT.to_owned()),
            region: source.get("dynamodb_region").filter(|s| !s.is_empty()),
            endpoint: source.get("dynamodb_endpoint").filter(|s| !s.is_empty()),
            ..DynamoConfig::default()
        };
        let store = match source.get("store").as_deref().map(str::trim) {
            None | Some("sqlite") => StoreChoice::Sqlite,
            Some("dynamodb") => StoreChoice::Dynamodb(dynamodb.clone()),
            Some(other) => {
                return Err(ConfigError(format!(
                    "store must be sqlite or dynamodb, not {other:?}"
                )));
            }
        };
        let tls_mode = match source.get("tls_mode").as_deref().map(str::trim) {
            None | Some("intermediate") => TlsMode::Intermediate,
            Some("modern") => TlsMode::Modern,
            Some(other) => {
                return Err(ConfigError(format!(
                    "tls_mode must be intermediate or modern, not {other:?}"
                )));
            }
        };
        let mtls = match source.get("mtls").as_deref().map(str::trim) {
            None | Some("optional") => MtlsMode::Optional,
            Some("required") => MtlsMode::Required,
            Some(other) => {
                return Err(ConfigError(format!(
                    "mtls must be optional or required, not {other:?}"
                )));
            }
        };
        let tls_reload_ms = parse(source, "tls_reload_ms", DEFAULT_TLS_RELOAD_MS)?;
        if tls_reload_ms != 0 {
            bounded("tls_reload_ms", tls_reload_ms, 100, 3_600_000)?;
        }
        let upstream = match source.get("upstream").as_deref().map(str::trim) {
            None | Some("") => None,
            Some(raw) => Some(upstream_url(raw)?),
        };
        let config = Config {
            mode,
            role: if upstream.is_some() {
                Role::Gateway
            } else {
                Role::Combined
            },
            upstream,
            upstream_ca_file: path("upstream_ca_file"),
            upstream_retries_max: bounded(
                "upstream_retries_max",
                parse(
                    source,
                    "upstream_retries_max",
                    crate::proxy::DEFAULT_UPSTREAM_RETRIES,
                )?,
                0,
                crate::proxy::UPSTREAM_RETRIES_MAX,
            )?,
            upstream_connect_timeout: Duration::from_millis(bounded(
                "upstream_connect_timeout_ms",
                parse(
                    source,
                    "upstream_connect_timeout_ms",
                    crate::proxy::DEFAULT_UPSTREAM_CONNECT_TIMEOUT_MS,
                )?,
                10,
                60_000,
            )?),
            upstream_idle_max: bounded(
                "upstream_idle_max",
                parse(
                    source,
                    "upstream_idle_max",
                    crate::proxy::DEFAULT_UPSTREAM_IDLE_MAX,
                )?,
                0,
                65_536,
            )?,
            breaker_failures: bounded(
                "breaker_failures",
                parse(
                    source,
                    "breaker_failures",
                    crate::proxy::DEFAULT_BREAKER_FAILURES,
                )?,
                1,
                10_000,
            )?,
            breaker_open: Duration::from_millis(bounded(
                "breaker_open_ms",
                parse(
                    source,
                    "breaker_open_ms",
                    crate::proxy::DEFAULT_BREAKER_OPEN_MS,
                )?,
                10,
                600_000,
            )?),
            internal_key_file: path("internal_key_file"),
            upstream_plaintext_ok: parse(source, "upstream_plaintext_ok", false)?,
            data_dir: path("data_dir").unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            listen: parse(
                source,
                "listen",
                DEFAULT_LISTEN
                    .parse()
                    .map_err(|_| ConfigError("default listen".into()))?,
            )?,
            metrics_listen: match source.get("metrics_listen").as_deref().map(str::trim) {
                None | Some("") => None,
                Some(raw) => Some(
                    raw.parse()
                        .map_err(|e| ConfigError(format!("metrics_listen={raw:?}: {e}")))?,
                ),
            },
            tls_cert: path("tls_cert"),
            tls_key: path("tls_key"),
            tls_mode,
            tls_client_ca_file: path("tls_client_ca_file"),
            mtls,
            mtls_tenants: mtls_tenants(source.get("mtls_tenants").as_deref())?,
            tls_reload: Duration::from_millis(tls_reload_ms),
            policy_file: path("policy_file"),
            cors_origins: cors_origins(source.get("cors_origins").as_deref())?,
            jwks_file: path("jwks_file"),
            jwks_url: jwks_url(source.get("jwks_url").as_deref())?,
            jwks_ca_file: path("jwks_ca_file"),
            jwks_refresh: Duration::from_millis(bounded(
                "jwks_refresh_ms",
                parse(source, "jwks_refresh_ms", DEFAULT_JWKS_REFRESH_MS)?,
                1_000,
                86_400_000,
            )?),
            jwks_refetch_min_interval: Duration::from_millis(bounded(
                "jwks_refetch_min_interval_ms",
                parse(
                    source,
                    "jwks_refetch_min_interval_ms",
                    DEFAULT_JWKS_REFETCH_MIN_INTERVAL_MS,
                )?,
                100,
                3_600_000,
            )?),
            jwks_fetch_timeout: Duration::from_millis(bounded(
                "jwks_fetch_timeout_ms",
                parse(
                    source,
                    "jwks_fetch_timeout_ms",
                    DEFAULT_JWKS_FETCH_TIMEOUT_MS,
                )?,
                100,
                60_000,
            )?),
            jwt_issuer: source.get("jwt_issuer").filter(|s| !s.is_empty()),
            jwt_audience: source
                .get("jwt_audience")
                .unwrap_or_else(|| DEFAULT_JWT_AUDIENCE.to_owned()),
            jwt_leeway_s: bounded(
                "jwt_leeway_s",
                parse(source, "jwt_leeway_s", DEFAULT_JWT_LEEWAY_S)?,
                0,
                JWT_LEEWAY_S_MAX,
            )?,
            token_cache_len_max: bounded(
                "token_cache_len_max",
                parse(source, "token_cache_len_max", DEFAULT_TOKEN_CACHE_LEN_MAX)?,
                0,
                10_000_000,
            )?,
            body_bytes_max: bounded(
                "body_bytes_max",
                parse(source, "body_bytes_max", DEFAULT_BODY_BYTES_MAX)?,
                1024,
                64 << 20,
            )?,
            concurrency_max: bounded(
                "concurrency_max",
                parse(source, "concurrency_max", DEFAULT_CONCURRENCY_MAX)?,
                1,
                1_000_000,
            )?,
            rate: RateLimitConfig::load(source)?,
            header_read_timeout: Duration::from_millis(bounded(
                "header_read_timeout_ms",
                parse(
                    source,
                    "header_read_timeout_ms",
                    DEFAULT_HEADER_READ_TIMEOUT_MS,
                )?,
                100,
                600_000,
            )?),
            headers_max: bounded(
                "headers_max",
                parse(source, "headers_max", DEFAULT_HEADERS_MAX)?,
                8,
                1_000,
            )?,
            header_bytes_max: bounded(
                "header_bytes_max",
                parse(source, "header_bytes_max", DEFAULT_HEADER_BYTES_MAX)?,
                HEADER_BYTES_MIN,
                1 << 20,
            )?,
            request_timeout: Duration::from_millis(bounded(
                "request_timeout_ms",
                parse(source, "request_timeout_ms", DEFAULT_REQUEST_TIMEOUT_MS)?,
                10,
                600_000,
            )?),
            shutdown_grace: Duration::from_millis(bounded(
                "shutdown_grace_ms",
                parse(source, "shutdown_grace_ms", DEFAULT_SHUTDOWN_GRACE_MS)?,
                0,
                600_000,
            )?),
            http_threads: bounded(
                "http_threads",
                parse(source, "http_threads", 0)?,
                0,
                HTTP_THREADS_MAX,
            )?,
            store,
            dynamodb,
            vault: crate::keys::VaultSettings::load(
                source,
                &path("data_dir").unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            )?,
            audit: crate::auditlog::AuditSettings::load(
                source,
                &path("data_dir").unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
                mode,
            )?,
            commit,
            hold_sweep_interval: Duration::from_millis(bounded(
                "hold_sweep_ms",
                parse(source, "hold_sweep_ms", DEFAULT_HOLD_SWEEP_MS)?,
                10,
                3_600_000,
            )?),
            log: source.get("log").unwrap_or_else(|| DEFAULT_LOG.to_owned()),
        };
        let mut config = config;
        if let Some(role) = role {
            if role == Role::Ledger && config.upstream.is_some() {
                return Err(ConfigError(
                    "upstream is a gateway setting; `strongroom ledger` is the upstream".into(),
                ));
            }
            config.role = role;
        }
        config.check()?;
        Ok(config)
    }

    /// Threads of the HTTP runtime: as configured, or else one fewer than the cores this process
    /// may use (at least one). The ledger's committer has an OS thread of its own, which on
    /// SQLite also plans, checks and syncs each transaction; leaving it a core keeps the
    /// request path from queueing behind HTTP work (measured in `bench/README.md`).
    pub fn http_threads(&self) -> usize {
        if self.http_threads > 0 {
            return self.http_threads;
        }
        // A gateway alone has no committer: every core serves requests.
        if self.role == Role::Gateway {
            return std::thread::available_parallelism().map_or(1, |n| n.get());
        }
        std::thread::available_parallelism()
            .map_or(1, |n| n.get().saturating_sub(1))
            .max(1)
    }

    /// Checks what no single setting can: settings that go together, and production needs.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ConfigError("tls_cert and tls_key go together".into()));
        }
        if self.mtls == MtlsMode::Required && self.tls_client_ca_file.is_none() {
            return Err(ConfigError(
                "mtls = required needs tls_client_ca_file".into(),
            ));
        }
        if !self.mtls_tenants.is_empty() && self.tls_client_ca_file.is_none() {
            return Err(ConfigError("mtls_tenants needs tls_client_ca_file".into()));
        }
        if self.jwks_file.is_some() && self.jwks_url.is_some() {
            return Err(ConfigError(
                "jwks_file and jwks_url are alternatives: set one".into(),
            ));
        }
        let keys = self.jwks_file.is_some() || self.jwks_url.is_some();
        if keys != self.jwt_issuer.is_some() {
            return Err(ConfigError(
                "jwt_issuer goes with jwks_file or jwks_url".into(),
            ));
        }
        if self.jwks_ca_file.is_some() && self.jwks_url.is_none() {
            return Err(ConfigError("jwks_ca_file needs jwks_url".into()));
        }
        let table = &self.dynamodb.table;
        // DynamoDB's rule for table names.
        let table_ok = (3..=255).contains(&table.len())
            && table
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !table_ok {
            return Err(ConfigError(format!(
                "dynamodb_table must be 3 to 255 of a-z, A-Z, 0-9, '_', '-', '.', not {table:?}"
            )));
        }
        if let Some(endpoint) = &self.dynamodb.endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(ConfigError(format!(
                "dynamodb_endpoint must be an http:// or https:// URL, not {endpoint:?}"
            )));
        }
        if let Some(metrics) = self.metrics_listen
            && metrics.port() != 0
            && metrics == self.listen
        {
            return Err(ConfigError(format!(
                "metrics_listen must differ from listen ({metrics})"
            )));
        }
        if self.jwt_audience.trim().is_empty() {
            return Err(ConfigError("jwt_audience must not be empty".into()));
        }
        if self.mode == Mode::Production {
            if self.tls_cert.is_none() {
                return Err(ConfigError(
                    "production mode needs tls_cert and tls_key".into(),
                ));
            }
            // A ledger run alone trusts the gateway's assertions, not tokens.
            if self.role != Role::Ledger && !keys {
                return Err(ConfigError(
                    "production mode needs jwks_file or jwks_url, and jwt_issuer".into(),
                ));
            }
            if self.role != Role::Combined && self.internal_key_file.is_none() {
                return Err(ConfigError(
                    "production mode needs internal_key_file for a split deployment".into(),
                ));
            }
            if self.upstream.as_ref().and_then(|u| u.scheme_str()) == Some("https")
                && self.upstream_ca_file.is_none()
            {
                return Err(ConfigError(
                    "production mode needs upstream_ca_file for an https:// upstream".into(),
                ));
            }
            if self.upstream.as_ref().and_then(|u| u.scheme_str()) == Some("http")
                && !self.upstream_plaintext_ok
            {
                return Err(ConfigError(
                    "production mode needs an https:// upstream (or upstream_plaintext_ok = true \
                     for a ledger behind a protected link)"
                        .into(),
                ));
            }
        }
        Ok(())
    }

    /// The SQLite database file.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("ledger.db")
    }
}

/// Printed at start-up. Holds no secrets today (key material lives in files, named by path);
/// anything secret added later is printed as `<redacted>`.
impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let opt = |p: &Option<PathBuf>| {
            p.as_ref()
                .map_or("(unset)".to_owned(), |p| p.display().to_string())
        };
        writeln!(f, "mode = {:?}", self.mode)?;
        writeln!(f, "role = {:?}", self.role)?;
        if let Some(upstream) = &self.upstream {
            writeln!(f, "upstream = {upstream}")?;
            writeln!(f, "upstream_ca_file = {}", opt(&self.upstream_ca_file))?;
            writeln!(f, "upstream_retries_max = {}", self.upstream_retries_max)?;
            writeln!(
                f,
                "upstream_connect_timeout_ms = {}",
                self.upstream_connect_timeout.as_millis()
            )?;
            writeln!(f, "upstream_idle_max = {}", self.upstream_idle_max)?;
            writeln!(f, "upstream_plaintext_ok = {}", self.upstream_plaintext_ok)?;
            writeln!(f, "breaker_failures = {}", self.breaker_failures)?;
            writeln!(f, "breaker_open_ms = {}", self.breaker_open.as_millis())?;
        }
        if let Some(key) = self.internal_key_path() {
            writeln!(f, "internal_key_file = {}", key.display())?;
        }
        writeln!(f, "data_dir = {}", self.data_dir.display())?;
        writeln!(f, "listen = {}", self.listen)?;
        match self.metrics_listen {
            Some(addr) => writeln!(f, "metrics_listen = {addr}")?,
            None => writeln!(f, "metrics_listen = (off)")?,
        }
        writeln!(f, "tls_cert = {}", opt(&self.tls_cert))?;
        writeln!(f, "tls_key = {}", opt(&self.tls_key))?;
        writeln!(
            f,
            "tls_mode = {}",
            match self.tls_mode {
                TlsMode::Intermediate => "intermediate",
                TlsMode::Modern => "modern",
            }
        )?;
        match &self.tls_client_ca_file {
            None => writeln!(f, "tls_client_ca_file = (off: no client certificates)")?,
            Some(path) => {
                writeln!(f, "tls_client_ca_file = {}", path.display())?;
                writeln!(
                    f,
                    "mtls = {}",
                    match self.mtls {
                        MtlsMode::Optional => "optional",
                        MtlsMode::Required => "required",
                    }
                )?;
                let tenants: Vec<&str> = self.mtls_tenants.iter().map(TenantId::as_str).collect();
                writeln!(f, "mtls_tenants = {}", tenants.join(","))?;
            }
        }
        writeln!(f, "tls_reload_ms = {}", self.tls_reload.as_millis())?;
        writeln!(
            f,
            "cors_origins = {}",
            if self.cors_origins.is_empty() {
                "(off)".to_owned()
            } else {
                self.cors_origins.join(",")
            }
        )?;
        writeln!(
            f,
            "policy_file = {}",
            self.policy_file
                .as_ref()
                .map_or_else(|| "(built in)".to_owned(), |p| p.display().to_string())
        )?;
        writeln!(f, "jwks_file = {}", opt(&self.jwks_file))?;
        writeln!(
            f,
            "jwks_url = {}",
            self.jwks_url.as_deref().unwrap_or("(unset)")
        )?;
        writeln!(
            f,
            "jwks_ca_file = {}",
            self.jwks_ca_file
                .as_ref()
                .map_or_else(|| "(Mozilla roots)".to_owned(), |p| p.display().to_string())
        )?;
        writeln!(f, "jwks_refresh_ms = {}", self.jwks_refresh.as_millis())?;
        writeln!(
            f,
            "jwks_refetch_min_interval_ms = {}",
            self.jwks_refetch_min_interval.as_millis()
        )?;
        writeln!(
            f,
            "jwks_fetch_timeout_ms = {}",
            self.jwks_fetch_timeout.as_millis()
        )?;
        writeln!(
            f,
            "jwt_issuer = {}",
            self.jwt_issuer.as_deref().unwrap_or("(unset)")
        )?;
        writeln!(f, "jwt_audience = {}", self.jwt_audience)?;
        writeln!(f, "jwt_leeway_s = {}", self.jwt_leeway_s)?;
        writeln!(f, "token_cache_len_max = {}", self.token_cache_len_max)?;
        writeln!(f, "body_bytes_max = {}", self.body_bytes_max)?;
        writeln!(f, "concurrency_max = {}", self.concurrency_max)?;
        writeln!(f, "{}", self.rate)?;
        writeln!(
            f,
            "header_read_timeout_ms = {}",
            self.header_read_timeout.as_millis()
        )?;
        writeln!(f, "headers_max = {}", self.headers_max)?;
        writeln!(f, "header_bytes_max = {}", self.header_bytes_max)?;
        writeln!(
            f,
            "request_timeout_ms = {}",
            self.request_timeout.as_millis()
        )?;
        writeln!(f, "shutdown_grace_ms = {}", self.shutdown_grace.as_millis())?;
        writeln!(f, "http_threads = {}", self.http_threads())?;
        writeln!(
            f,
            "store = {}",
            match self.store {
                StoreChoice::Sqlite => "sqlite",
                StoreChoice::Dynamodb(_) => "dynamodb",
            }
        )?;
        writeln!(f, "dynamodb_table = {}", self.dynamodb.table)?;
        writeln!(
            f,
            "dynamodb_region = {}",
            self.dynamodb
                .region
                .as_deref()
                .unwrap_or("(from the AWS provider chain)")
        )?;
        writeln!(
            f,
            "dynamodb_endpoint = {}",
            self.dynamodb.endpoint.as_deref().unwrap_or("(AWS)")
        )?;
        writeln!(f, "commit_queue_len_max = {}", self.commit.queue_len_max)?;
        writeln!(f, "commit_batch_len_max = {}", self.commit.batch_len_max)?;
        writeln!(f, "commit_wait_us = {}", self.commit.wait.as_micros())?;
        writeln!(f, "commit_retries_max = {}", self.commit.retries_max)?;
        writeln!(
            f,
            "hold_sweep_ms = {}",
            self.hold_sweep_interval.as_millis()
        )?;
        writeln!(f, "{}", self.vault)?;
        writeln!(f, "{}", self.audit)?;
        writeln!(
            f,
            "rate_reveal = {}",
            self.rate.reveal.map_or_else(
                || crate::ratelimit::settings::DEFAULT_RATE_REVEAL.to_owned(),
                |r| r.to_string()
            )
        )?;
        write!(f, "log = {}", self.log)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load(&MapSource(map))
    }

    #[test]
    fn zero_configuration_is_a_dev_instance() {
        let c = load(&[]).expect("defaults");
        assert_eq!(c.mode, Mode::Dev);
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(c.body_bytes_max, DEFAULT_BODY_BYTES_MAX);
        assert_eq!(c.concurrency_max, DEFAULT_CONCURRENCY_MAX);
        assert_eq!(
            c.header_read_timeout,
            Duration::from_millis(DEFAULT_HEADER_READ_TIMEOUT_MS)
        );
        assert_eq!(c.headers_max, DEFAULT_HEADERS_MAX);
        assert_eq!(c.header_bytes_max, DEFAULT_HEADER_BYTES_MAX);
        assert_eq!(c.commit, CommitConfig::default());
        assert_eq!(c.store, StoreChoice::Sqlite);
        assert_eq!(c.dynamodb.table, DYNAMODB_TABLE_DEFAULT);
        assert_eq!(c.metrics_listen, None);
        assert!(c.to_string().contains("metrics_listen = (off)"));
    }

    #[test]
    fn metrics_listen_is_an_address() {
        let c = load(&[("metrics_listen", "127.0.0.1:9464")]).expect("config");
        assert_eq!(c.metrics_listen, Some("127.0.0.1:9464".parse().unwrap()));
        assert!(c.to_string().contains("metrics_listen = 127.0.0.1:9464"));
    }

    #[test]
    fn http_threads_leave_the_committer_a_core_unless_set() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let auto = load(&[]).expect("defaults");
        assert_eq!(auto.http_threads, 0);
        assert_eq!(auto.http_threads(), cores.saturating_sub(1).max(1));
        assert!(
            auto.to_string()
                .contains(&format!("http_threads = {}", auto.http_threads()))
        );
        let set = load(&[("http_threads", "3")]).expect("config");
        assert_eq!(set.http_threads(), 3);
    }

    #[test]
    fn hardening_limits_hold_at_their_edges() {
        // The smallest request head hyper reads into.
        let min = HEADER_BYTES_MIN.to_string();
        let below = (HEADER_BYTES_MIN - 1).to_string();
        assert_eq!(
            load(&[("header_bytes_max", &min)])
                .expect("at the edge")
                .header_bytes_max,
            HEADER_BYTES_MIN
        );
        assert!(load(&[("header_bytes_max", &below)]).is_err());
        // Zero turns polling off; otherwise at least 100 ms.
        assert!(
            load(&[("tls_reload_ms", "0")])
                .expect("off")
                .tls_reload
                .is_zero()
        );
        assert!(load(&[("tls_reload_ms", "100")]).is_ok());
        assert!(load(&[("tls_reload_ms", "99")]).is_err());
        // At most CORS_ORIGINS_MAX origins.
        let origins = |n: usize| {
            (0..n)
                .map(|i| format!("https://app{i}.example"))
                .collect::<Vec<_>>()
                .join(",")
        };
        let most = origins(CORS_ORIGINS_MAX);
        assert_eq!(
            load(&[("cors_origins", &most)])
                .expect("at the edge")
                .cors_origins
                .len(),
            CORS_ORIGINS_MAX
        );
        let err = load(&[("cors_origins", &origins(CORS_ORIGINS_MAX + 1))])
            .expect_err("one too many")
            .0;
        assert!(err.contains("cors_origins"), "{err}");
        // At most MTLS_TENANTS_MAX tenants.
        let tenants = |n: usize| {
            (0..n)
                .map(|i| format!("t{i}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        let ca = ("tls_client_ca_file", "ca.pem");
        let most = tenants(MTLS_TENANTS_MAX);
        assert_eq!(
            load(&[ca, ("mtls_tenants", &most)])
                .expect("at the edge")
                .mtls_tenants
                .len(),
            MTLS_TENANTS_MAX
        );
        let err = load(&[ca, ("mtls_tenants", &tenants(MTLS_TENANTS_MAX + 1))])
            .expect_err("one too many")
            .0;
        assert!(err.contains("mtls_tenants"), "{err}");
    }

    #[test]
    fn upstream_settings_are_checked() {
        let c = load(&[("upstream", "https://ledger.internal:8081")]).expect("dev gateway");
        assert_eq!(c.role, Role::Gateway);
        assert_eq!(
            c.internal_key_path(),
            Some(PathBuf::from(DEFAULT_DATA_DIR).join("internal.key"))
        );
        for bad in [
            "ftp://ledger:21",
            "https://ledger:8081/v1",
            "https://ledger:8081/?x=1",
            "https://",
            "ledger:8081",
        ] {
            let err = load(&[("upstream", bad)]).expect_err(bad).0;
            assert!(err.contains("upstream"), "{bad}: {err}");
        }
        let production = [
            ("mode", "production"),
            ("tls_cert", "c.pem"),
            ("tls_key", "k.pem"),
            ("jwks_file", "j.json"),
            ("jwt_issuer", "https://idp"),
        ];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut pairs = production.to_vec();
            pairs.extend_from_slice(extra);
            load(&pairs)
        };
        let err = |extra: &[(&'static str, &'static str)]| with(extra).expect_err("refused").0;
        assert!(err(&[("upstream", "https://l:1")]).contains("internal_key_file"));
        assert!(
            err(&[("upstream", "https://l:1"), ("internal_key_file", "i.key")])
                .contains("upstream_ca_file")
        );
        assert!(
            err(&[("upstream", "http://l:1"), ("internal_key_file", "i.key")])
                .contains("upstream_plaintext_ok")
        );
        with(&[
            ("upstream", "http://l:1"),
            ("internal_key_file", "i.key"),
            ("upstream_plaintext_ok", "true"),
        ])
        .expect("plain HTTP when said so");
        with(&[
            ("upstream", "https://l:1"),
            ("internal_key_file", "i.key"),
            ("upstream_ca_file", "ca.pem"),
        ])
        .expect("https with a CA");
        // The ledger alone needs the internal key, not token keys.
        let source = |pairs: &[(&str, &str)]| {
            MapSource(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        };
        let ledger = |pairs: &[(&str, &str)]| Config::load_as(&source(pairs), Some(Role::Ledger));
        assert!(
            load(&production[..3])
                .expect_err("serve")
                .0
                .contains("jwks")
        );
        let err = ledger(&production[..3]).expect_err("no key").0;
        assert!(err.contains("internal_key_file"), "{err}");
        let mut with_key = production[..3].to_vec();
        with_key.push(("internal_key_file", "i.key"));
        assert_eq!(ledger(&with_key).expect("ledger").role, Role::Ledger);
        let err =
            ledger(&[("upstream", "http://l:1")]).expect_err("a ledger alone has no upstream");
        assert!(err.0.contains("upstream"), "{}", err.0);
    }

    #[test]
    fn invalid_settings_are_refused() {
        let check = |pairs: &[(&str, &str)], fragment: &str| {
            let err = load(pairs).expect_err("must fail").0;
            assert!(
                err.contains(fragment),
                "{err:?} should mention {fragment:?}"
            );
        };
        check(&[("mode", "prod")], "mode");
        check(&[("listen", "nowhere")], "listen");
        check(&[("metrics_listen", "9464")], "metrics_listen");
        check(
            &[
                ("listen", "127.0.0.1:9000"),
                ("metrics_listen", "127.0.0.1:9000"),
            ],
            "metrics_listen",
        );
        check(&[("body_bytes_max", "10")], "body_bytes_max");
        check(&[("concurrency_max", "0")], "concurrency_max");
        check(&[("header_read_timeout_ms", "5")], "header_read_timeout_ms");
        check(&[("headers_max", "2")], "headers_max");
        check(&[("header_bytes_max", "4096")], "header_bytes_max");
        check(&[("http_threads", "257")], "http_threads");
        check(&[("http_threads", "-1")], "http_threads");
        check(&[("jwt_leeway_s", "301")], "jwt_leeway_s");
        check(&[("commit_batch_len_max", "0")], "commit_batch_len_max");
        check(&[("tls_cert", "c.pem")], "tls_key");
        check(&[("tls_mode", "old")], "tls_mode");
        check(&[("mtls", "sometimes")], "mtls");
        check(&[("mtls", "required")], "tls_client_ca_file");
        check(&[("mtls_tenants", "acme")], "tls_client_ca_file");
        check(
            &[
                ("tls_client_ca_file", "p.pem"),
                ("mtls_tenants", "acme,Not A Tenant"),
            ],
            "mtls_tenants",
        );
        check(&[("cors_origins", "*")], "cors_origins");
        check(
            &[("cors_origins", "https://a.example/path")],
            "cors_origins",
        );
        check(&[("cors_origins", "ftp://a.example")], "cors_origins");
        check(&[("cors_origins", "https://")], "cors_origins");
        check(&[("tls_reload_ms", "10")], "tls_reload_ms");
        check(&[("store", "postgres")], "store");
        check(&[("dynamodb_table", "a b")], "dynamodb_table");
        check(&[("dynamodb_table", "ab")], "dynamodb_table");
        check(
            &[("dynamodb_endpoint", "127.0.0.1:8000")],
            "dynamodb_endpoint",
        );
        check(&[("jwks_file", "k.json")], "jwt_issuer");
        check(&[("jwks_url", "https://idp.example/jwks")], "jwt_issuer");
        check(&[("jwt_issuer", "https://idp.example")], "jwt_issuer");
        check(
            &[
                ("jwks_file", "k.json"),
                ("jwks_url", "https://idp.example/jwks"),
                ("jwt_issuer", "https://idp.example"),
            ],
            "alternatives",
        );
        for url in [
            "http://idp.example/jwks",
            "https://",
            "https://user@idp.example/jwks",
            "idp.example/jwks",
            "https://idp example/jwks",
        ] {
            check(
                &[("jwks_url", url), ("jwt_issuer", "https://idp.example")],
                "jwks_url",
            );
        }
        check(&[("jwks_ca_file", "ca.pem")], "jwks_url");
        check(&[("jwks_refresh_ms", "999")], "jwks_refresh_ms");
        check(
            &[("jwks_refetch_min_interval_ms", "99")],
            "jwks_refetch_min_interval_ms",
        );
        check(
            &[("jwks_fetch_timeout_ms", "60001")],
            "jwks_fetch_timeout_ms",
        );
        check(&[("mode", "production")], "tls_cert");
        check(
            &[("mode", "production"), ("tls_cert", "c"), ("tls_key", "k")],
            "jwks_file or jwks_url",
        );
    }

    #[test]
    fn jwks_url_replaces_jwks_file_in_production() {
        let c = load(&[
            ("mode", "production"),
            ("tls_cert", "c.pem"),
            ("tls_key", "k.pem"),
            ("jwks_url", "https://idp.example:8443/.well-known/jwks.json"),
            ("jwks_ca_file", "ca.pem"),
            ("jwt_issuer", "https://idp.example"),
        ])
        .expect("config");
        assert_eq!(
            c.jwks_url.as_deref(),
            Some("https://idp.example:8443/.well-known/jwks.json")
        );
        assert_eq!(
            c.jwks_refresh,
            Duration::from_millis(DEFAULT_JWKS_REFRESH_MS)
        );
        assert_eq!(
            c.jwks_refetch_min_interval,
            Duration::from_millis(DEFAULT_JWKS_REFETCH_MIN_INTERVAL_MS)
        );
        let printed = c.to_string();
        assert!(printed.contains("jwks_url = https://idp.example:8443/"));
        assert!(printed.contains("jwks_ca_file = ca.pem"));
        assert!(printed.contains("jwks_refresh_ms = 300000"));
        // The edges of the bounds.
        let edge = load(&[
            ("jwks_refresh_ms", "1000"),
            ("jwks_refetch_min_interval_ms", "100"),
            ("jwks_fetch_timeout_ms", "60000"),
        ])
        .expect("at the edges");
        assert_eq!(edge.jwks_refresh, Duration::from_secs(1));
        let long = format!("https://idp.example/{}", "a".repeat(JWKS_URL_BYTES_MAX));
        assert!(load(&[("jwks_url", &long), ("jwt_issuer", "i")]).is_err());
    }

    #[test]
    fn client_certificates_are_optional_unless_required() {
        let off = load(&[]).expect("defaults");
        assert_eq!(off.tls_client_ca_file, None);
        assert!(off.to_string().contains("tls_client_ca_file = (off"));
        let optional = load(&[("tls_client_ca_file", "partners.pem")]).expect("optional");
        assert_eq!(optional.mtls, MtlsMode::Optional);
        assert!(optional.to_string().contains("mtls = optional"));
        let required = load(&[("tls_client_ca_file", "partners.pem"), ("mtls", "required")])
            .expect("required");
        assert_eq!(required.mtls, MtlsMode::Required);
        assert!(required.to_string().contains("mtls = required"));
        let tenants = load(&[
            ("tls_client_ca_file", "partners.pem"),
            ("mtls_tenants", "acme, globex"),
        ])
        .expect("tenants");
        assert_eq!(
            tenants.mtls_tenants,
            [TenantId::new("acme"), TenantId::new("globex")]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
        );
        assert!(tenants.to_string().contains("mtls_tenants = acme,globex"));
    }

    #[test]
    fn dynamodb_is_chosen_with_its_settings() {
        let c = load(&[
            ("store", "dynamodb"),
            ("dynamodb_table", "ledger-prod"),
            ("dynamodb_region", "eu-west-1"),
            ("dynamodb_endpoint", "http://127.0.0.1:8000"),
        ])
        .expect("config");
        let StoreChoice::Dynamodb(d) = &c.store else {
            panic!("store is {:?}", c.store);
        };
        assert_eq!(d.table, "ledger-prod");
        assert_eq!(d.region.as_deref(), Some("eu-west-1"));
        assert_eq!(d.endpoint.as_deref(), Some("http://127.0.0.1:8000"));
        assert!(c.to_string().contains("store = dynamodb"));
    }

    #[test]
    fn rate_settings_are_known_settings() {
        // Every rate setting is known to the file reader.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("rates.toml");
        std::fs::write(
            &path,
            "rate_ip = \"10/1s\"\nrate_tenant = \"5/1s\"\nrate_tenant_tiers = \"gold=9/1s\"\n\
             rate_tenant_tier_of = \"acme=gold\"\ntrusted_proxies = \"10.0.0.0/8\"\n\
             rate_keys_max = 100\nquota_tenant_day = 1000\nquota_flush_ms = 500\n\
             quota_batch_max = 10\n",
        )
        .expect("write");
        let file = file_source(&path).expect("every rate setting is known");
        assert_eq!(file.0.len(), 9);
        let c = load(&[("rate_tenant", "100/1s")]).expect("config");
        assert!(c.to_string().contains("rate_tenant = 100/1s"));
        assert!(c.to_string().contains("rate_ip = off"));
    }

    #[test]
    fn vault_settings_are_known_settings() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("vault.toml");
        let text: String = crate::keys::SETTINGS
            .iter()
            .map(|name| format!("{name} = \"x\"\n"))
            .collect();
        std::fs::write(&path, &text).expect("write");
        let file = file_source(&path).expect("every vault setting is known");
        assert_eq!(file.0.len(), crate::keys::SETTINGS.len());
        std::fs::write(&path, "kms_key = \"x\"\n").expect("write");
        let error = file_source(&path).expect_err("a misspelt setting");
        assert!(
            error.0.contains("unknown setting \"kms_key\""),
            "{}",
            error.0
        );
    }

    #[test]
    fn environment_overrides_file() {
        let file = MapSource(BTreeMap::from([(
            "listen".to_owned(),
            "127.0.0.1:1".to_owned(),
        )]));
        let env = MapSource(BTreeMap::from([(
            "listen".to_owned(),
            "127.0.0.1:2".to_owned(),
        )]));
        let c = Config::load(&Layered(vec![&env, &file])).expect("config");
        assert_eq!(c.listen.port(), 2);
    }
}
