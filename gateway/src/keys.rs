//! The key service and the card vault, as configured: settings, start-up, and the `keys`
//! commands (`init`, `rotate`, `rewrap`, `status`).
//!
//! | setting | default | meaning |
//! |---|---|---|
//! | `key_service` | `local` | `local`: the keyring file; `kms`: AWS KMS |
//! | `keyring_file` | `<data_dir>/keyring.json` | the local keyring (owner-only; created on first run in dev mode) |
//! | `kms_key_id` | | the KMS key (id, ARN or alias) that wraps data keys |
//! | `kms_region`, `kms_endpoint` | the SDK's | where KMS is |
//! | `data_key_age_max_ms` | 300000 | a data key seals for at most this long (1 s to 1 h) |
//! | `data_key_uses_max` | 1048576 | and at most this many values (at most 2^24; AES-GCM random nonces allow 2^32) |
//! | `data_key_cache_max` | 1024 | data keys cached, each for sealing and for opening (at most 65536) |
//! | `key_cryptoperiod_days` | 365 | the current key's intended life (1 to 730): older, and start-up warns and `keys status` says so |
//! | `card_mask` | `bin_and_last_four` | `last_four` shows only the last four digits |
//!
//! The keyring holds master keys in the clear, protected by its file permissions: it is the
//! zero-configuration default for a laptop, not for production, where a production start
//! refuses to create one (it must exist, made by `keys init`) and `kms` is the expected choice.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ledger::card::MaskStyle;
use ledger::vault::{
    KeyService, KeyStatus, KmsConfig, KmsKeyService, LocalKeyring, Vault, VaultConfig,
};

use ledger::limits::{
    CRYPTOPERIOD_DEFAULT, CRYPTOPERIOD_MAX, CRYPTOPERIOD_MIN, DATA_KEY_AGE_DEFAULT,
    DATA_KEY_AGE_MAX, DATA_KEY_AGE_MIN, DATA_KEY_CACHE_LEN_DEFAULT, DATA_KEY_CACHE_LEN_MAX,
    DATA_KEY_USES_DEFAULT, DATA_KEY_USES_MAX,
};

use crate::config::{ConfigError, Mode, Source, bounded, parse};

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn days(d: Duration) -> u64 {
    d.as_secs() / 86_400
}

/// The keyring's file name in the data directory.
pub const KEYRING_FILE_NAME: &str = "keyring.json";

/// The setting names this module reads.
pub const SETTINGS: &[&str] = &[
    "key_service",
    "keyring_file",
    "kms_key_id",
    "kms_region",
    "kms_endpoint",
    "data_key_age_max_ms",
    "data_key_uses_max",
    "data_key_cache_max",
    "key_cryptoperiod_days",
    "card_mask",
];

/// Which key service wraps data keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyServiceChoice {
    /// The local keyring file.
    Local {
        /// Where it is.
        file: PathBuf,
    },
    /// AWS KMS.
    Kms {
        /// The key.
        key_id: String,
        /// Its region; the SDK's default chain when unset.
        region: Option<String>,
        /// Another endpoint (tests: moto).
        endpoint: Option<String>,
    },
}

/// The vault's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VaultSettings {
    /// The key service.
    pub service: KeyServiceChoice,
    /// Data-key cache bounds.
    pub cache: VaultConfig,
    /// The current key's intended life.
    pub cryptoperiod: Duration,
    /// How much of a card number answers show.
    pub mask: MaskStyle,
}

impl VaultSettings {
    /// `local` or `kms`.
    pub fn service_name(&self) -> &'static str {
        match self.service {
            KeyServiceChoice::Local { .. } => "local",
            KeyServiceChoice::Kms { .. } => "kms",
        }
    }

    /// Reads the settings; `data_dir` places the default keyring.
    pub fn load(source: &dyn Source, data_dir: &Path) -> Result<VaultSettings, ConfigError> {
        let service = match source.get("key_service").as_deref().map(str::trim) {
            None | Some("local") => KeyServiceChoice::Local {
                file: source
                    .get("keyring_file")
                    .map_or_else(|| data_dir.join(KEYRING_FILE_NAME), PathBuf::from),
            },
            Some("kms") => KeyServiceChoice::Kms {
                key_id: source
                    .get("kms_key_id")
                    .filter(|k| !k.trim().is_empty())
                    .ok_or_else(|| ConfigError("key_service = kms needs kms_key_id".into()))?,
                region: source.get("kms_region"),
                endpoint: source.get("kms_endpoint"),
            },
            Some(other) => {
                return Err(ConfigError(format!(
                    "key_service must be local or kms, not {other:?}"
                )));
            }
        };
        let cache = VaultConfig {
            data_key_age_max: Duration::from_millis(bounded(
                "data_key_age_max_ms",
                parse(source, "data_key_age_max_ms", millis(DATA_KEY_AGE_DEFAULT))?,
                millis(DATA_KEY_AGE_MIN),
                millis(DATA_KEY_AGE_MAX),
            )?),
            data_key_uses_max: bounded(
                "data_key_uses_max",
                parse(source, "data_key_uses_max", DATA_KEY_USES_DEFAULT)?,
                1,
                DATA_KEY_USES_MAX,
            )?,
            data_key_cache_max: bounded(
                "data_key_cache_max",
                parse(source, "data_key_cache_max", DATA_KEY_CACHE_LEN_DEFAULT)?,
                1,
                DATA_KEY_CACHE_LEN_MAX,
            )?,
        };
        let cryptoperiod_days = bounded(
            "key_cryptoperiod_days",
            parse(source, "key_cryptoperiod_days", days(CRYPTOPERIOD_DEFAULT))?,
            days(CRYPTOPERIOD_MIN),
            days(CRYPTOPERIOD_MAX),
        )?;
        let mask = match source.get("card_mask").as_deref().map(str::trim) {
            None | Some("bin_and_last_four") => MaskStyle::BinAndLastFour,
            Some("last_four") => MaskStyle::LastFour,
            Some(other) => {
                return Err(ConfigError(format!(
                    "card_mask must be bin_and_last_four or last_four, not {other:?}"
                )));
            }
        };
        Ok(VaultSettings {
            service,
            cache,
            cryptoperiod: Duration::from_secs(cryptoperiod_days * 86_400),
            mask,
        })
    }
}

impl std::fmt::Display for VaultSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.service {
            KeyServiceChoice::Local { file } => {
                writeln!(f, "key_service = local")?;
                writeln!(f, "keyring_file = {}", file.display())?;
            }
            KeyServiceChoice::Kms {
                key_id,
                region,
                endpoint,
            } => {
                writeln!(f, "key_service = kms")?;
                writeln!(f, "kms_key_id = {key_id}")?;
                writeln!(f, "kms_region = {}", region.as_deref().unwrap_or("(sdk)"))?;
                writeln!(
                    f,
                    "kms_endpoint = {}",
                    endpoint.as_deref().unwrap_or("(sdk)")
                )?;
            }
        }
        writeln!(
            f,
            "data_key_age_max_ms = {}",
            self.cache.data_key_age_max.as_millis()
        )?;
        writeln!(f, "data_key_uses_max = {}", self.cache.data_key_uses_max)?;
        writeln!(f, "data_key_cache_max = {}", self.cache.data_key_cache_max)?;
        writeln!(
            f,
            "key_cryptoperiod_days = {}",
            self.cryptoperiod.as_secs() / 86_400
        )?;
        write!(
            f,
            "card_mask = {}",
            match self.mask {
                MaskStyle::BinAndLastFour => "bin_and_last_four",
                MaskStyle::LastFour => "last_four",
            }
        )
    }
}

/// Why the key service could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("key service: {0}")]
pub struct KeysError(pub String);

impl From<ledger::vault::VaultError> for KeysError {
    fn from(e: ledger::vault::VaultError) -> KeysError {
        KeysError(e.to_string())
    }
}

/// Opens the configured key service. In dev mode a missing keyring is created (owner-only);
/// in production it must exist.
pub async fn key_service(
    settings: &VaultSettings,
    mode: Mode,
) -> Result<Arc<dyn KeyService>, KeysError> {
    Ok(match &settings.service {
        KeyServiceChoice::Local { file } => {
            let keyring = match mode {
                Mode::Dev => LocalKeyring::open_or_init(file)?,
                Mode::Production => LocalKeyring::open(file)?,
            };
            Arc::new(keyring)
        }
        KeyServiceChoice::Kms {
            key_id,
            region,
            endpoint,
        } => Arc::new(
            KmsKeyService::connect(KmsConfig {
                key_id: key_id.clone(),
                region: region.clone(),
                endpoint: endpoint.clone(),
                ..KmsConfig::default()
            })
            .await?,
        ),
    })
}

/// Opens the key service and the vault, and logs the current key's age (a warning past the
/// cryptoperiod).
pub async fn vault(settings: &VaultSettings, mode: Mode) -> Result<Vault, KeysError> {
    let keys = key_service(settings, mode).await?;
    let status = keys.status().await?;
    log_status(&status, settings.cryptoperiod);
    Ok(Vault::new(keys, settings.cache))
}

fn log_status(status: &KeyStatus, cryptoperiod: Duration) {
    let now = SystemTime::now();
    let age_days = status.age(now).as_secs() / 86_400;
    if status.overdue(now, cryptoperiod) {
        tracing::warn!(
            service = status.service,
            key_id = %status.key_id,
            version = status.version,
            age_days,
            cryptoperiod_days = cryptoperiod.as_secs() / 86_400,
            "the current key is past its cryptoperiod: run `strongroom keys rotate`, then `keys rewrap`"
        );
    } else {
        tracing::info!(
            service = status.service,
            key_id = %status.key_id,
            version = status.version,
            age_days,
            "key service ready"
        );
    }
}

/// The `keys status` report: the current key, its age, every version.
pub fn status_report(status: &KeyStatus, cryptoperiod: Duration) -> String {
    use std::fmt::Write;
    let now = SystemTime::now();
    let days = |d: Duration| d.as_secs() / 86_400;
    let mut out = String::new();
    let _ = writeln!(out, "service: {}", status.service);
    let _ = writeln!(out, "key: {}", status.key_id);
    let _ = writeln!(out, "current version: {}", status.version);
    let _ = writeln!(
        out,
        "current key age: {} days (cryptoperiod {} days){}",
        days(status.age(now)),
        days(cryptoperiod),
        if status.overdue(now, cryptoperiod) {
            ": OVERDUE, rotate it"
        } else {
            ""
        }
    );
    for (version, since) in &status.versions {
        let age = now.duration_since(*since).unwrap_or_default();
        let _ = writeln!(out, "  version {version}: {} days old", days(age));
    }
    out
}

/// `strongroom keys ...`.
#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Creates the local keyring (owner-only; refuses to replace one), or checks that the KMS
    /// key answers.
    Init,
    /// Makes a new master key current: a new keyring version, or new key material for the KMS
    /// key (RotateKeyOnDemand). Old data keys still open; `keys rewrap` moves them over.
    Rotate,
    /// Re-wraps every stored data key under the current master key without decrypting any
    /// card number; resumable (run it again: records already current are skipped). On SQLite,
    /// with the server stopped.
    Rewrap,
    /// Prints the current key, its age against `key_cryptoperiod_days`, and every version.
    Status,
}

/// Runs a `keys` command.
pub async fn command(config: crate::config::Config, action: KeysCommand) -> std::process::ExitCode {
    use std::process::ExitCode;
    let (name, result) = match action {
        KeysCommand::Init => ("key.init", init(&config.vault).await),
        KeysCommand::Rotate => ("key.rotate", rotate(&config).await),
        KeysCommand::Status => ("key.status", status(&config).await),
        KeysCommand::Rewrap => ("key.rewrap", rewrap(&config).await),
    };
    // Every key operation is recorded, done or failed, in a stream of this command's own.
    let actor = crate::auditlog::operator();
    let draft = match &result {
        Ok(()) => audit::Draft::success(name, actor, audit::Origin::default()),
        Err(e) => audit::Draft::failure(name, actor, audit::Origin::default(), e.to_string()),
    };
    let draft = draft.resource("key-service", config.vault.service_name());
    if let Err(e) = crate::auditlog::record_operation(&config, draft).await {
        eprintln!("strongroom: the audit record of {name} was not written: {e}");
        return ExitCode::FAILURE;
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strongroom: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn init(settings: &VaultSettings) -> Result<(), KeysError> {
    match &settings.service {
        KeyServiceChoice::Local { file } => {
            let keyring = LocalKeyring::init(file)?;
            let status = keyring.status().await?;
            println!(
                "created keyring {} (key {}, version {})",
                file.display(),
                status.key_id,
                status.version
            );
        }
        KeyServiceChoice::Kms { .. } => {
            let keys = key_service(settings, Mode::Production).await?;
            let status = keys.status().await?;
            println!(
                "KMS key {} answers (version {})",
                status.key_id, status.version
            );
        }
    }
    Ok(())
}

async fn rotate(config: &crate::config::Config) -> Result<(), KeysError> {
    let keys = key_service(&config.vault, Mode::Production).await?;
    let status = keys.rotate().await?;
    println!(
        "{} key {} is now at version {}; run `strongroom keys rewrap` to move stored data keys to it",
        status.service, status.key_id, status.version
    );
    Ok(())
}

async fn status(config: &crate::config::Config) -> Result<(), KeysError> {
    let keys = key_service(&config.vault, Mode::Production).await?;
    let status = keys.status().await?;
    print!("{}", status_report(&status, config.vault.cryptoperiod));
    Ok(())
}

async fn rewrap(config: &crate::config::Config) -> Result<(), KeysError> {
    let store = crate::server::open_store(config)
        .await
        .map_err(|e| KeysError(e.to_string()))?;
    let vault = vault(&config.vault, Mode::Production).await?;
    let signer = crate::auditlog::signer(&config.audit, config.mode)
        .await
        .map_err(|e| KeysError(e.to_string()))?;
    let ledger = ledger::Ledger::start_with_signer(
        store,
        Arc::new(ledger::SystemClock),
        ledger::LedgerConfig {
            commit: config.commit,
            hold_sweep_interval: None,
            audit: config.audit.config.clone(),
        },
        Some(vault),
        Some(signer),
    );
    let mut last = std::time::Instant::now();
    let result = ledger
        .rewrap_all(|p| {
            if last.elapsed() >= REWRAP_PROGRESS_EVERY {
                last = std::time::Instant::now();
                eprintln!("{}", progress_line(p));
            }
        })
        .await;
    ledger.shutdown().await;
    let done = result.map_err(|e| KeysError(e.to_string()))?;
    println!("done: {}", progress_line(&done));
    Ok(())
}

/// How often `keys rewrap` prints its progress.
pub const REWRAP_PROGRESS_EVERY: Duration = Duration::from_secs(1);

fn progress_line(p: &ledger::card::RewrapProgress) -> String {
    format!(
        "{} tenants done, {} cards read, {} data keys re-wrapped, {} already current, {} changed meanwhile",
        p.tenants_done, p.cards_seen, p.rewrapped, p.current, p.raced
    )
}
