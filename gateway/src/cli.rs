//! The `strongroom` command.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use ledger::store::dynamodb::DynamoStore;
use ledger::{Ledger, LedgerConfig, SystemClock, TenantId};

use crate::auth::DevIssuer;
use crate::config::{
    Config, ConfigError, EnvSource, Layered, MapSource, Mode, Role, StoreChoice, file_source,
};

/// Exit status for an invalid configuration or refused usage (`EX_USAGE`).
pub const EXIT_CONFIG: u8 = 64;
/// Longest dev token lifetime, in seconds.
pub const DEV_TOKEN_TTL_S_MAX: u64 = 24 * 3600;

#[derive(Debug, Parser)]
#[command(
    name = "strongroom",
    version,
    about = "Compliance-hardened API gateway and double-entry ledger"
)]
struct Cli {
    /// Settings file (TOML, `name = value`); environment variables `STRONGROOM_*` override it.
    #[arg(long, global = true, env = "STRONGROOM_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serves the HTTPS API (gateway and ledger in one process, or the gateway alone with
    /// `--upstream`).
    Serve {
        /// Run the gateway alone, forwarding to the ledger at this URL (`strongroom ledger`);
        /// the same as the `upstream` setting.
        #[arg(long)]
        upstream: Option<String>,
    },
    /// Serves the ledger alone, for a gateway in front of it (`serve --upstream`): it accepts
    /// only requests carrying the gateway's internal assertion (`internal_key_file`).
    Ledger,
    /// Prints a signed development token (dev mode only).
    DevToken {
        /// Tenant the token acts for.
        #[arg(long)]
        tenant: String,
        /// Scope to grant; repeat for several (ledger:read, ledger:write).
        #[arg(long = "scope", required_unless_present = "roles")]
        scopes: Vec<String>,
        /// Role to grant (partner, auditor, operator: the route policy says their scopes);
        /// repeat for several.
        #[arg(long = "role")]
        roles: Vec<String>,
        /// The token's subject.
        #[arg(long, default_value = "dev-user")]
        subject: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
    },
    /// Prints the OpenAPI 3.1 document.
    Openapi,
    /// Checks that every tenant's books balance; exit status 1 if any does not.
    TrialBalance {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// DynamoDB administration (the `dynamodb_*` settings say where).
    Dynamodb {
        #[command(subcommand)]
        action: DynamodbCommand,
    },
    /// The key service that wraps the vault's data keys (`key_service`, `keyring_file`,
    /// `kms_key_id`).
    Keys {
        #[command(subcommand)]
        action: crate::keys::KeysCommand,
    },
    /// The audit log: verify it, prove a record, export it for an auditor.
    Audit {
        #[command(subcommand)]
        action: crate::auditlog::AuditCommand,
    },
}

#[derive(Debug, Subcommand)]
enum DynamodbCommand {
    /// Creates the ledger table (on-demand capacity) unless it exists; for development, since
    /// production tables come from CloudFormation with the same definition.
    CreateTables,
}

/// Runs the command line; the process exits with the returned status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut overrides = std::collections::BTreeMap::new();
    if let Command::Serve {
        upstream: Some(url),
    } = &cli.command
    {
        overrides.insert("upstream".to_owned(), url.clone());
    }
    let role = match cli.command {
        Command::Ledger => Some(Role::Ledger),
        _ => None,
    };
    let loaded = load_config(cli.config.as_deref(), MapSource(overrides), role);
    let config = match loaded {
        Ok(config) => config,
        Err(e) => {
            eprintln!("strongroom: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match cli.command {
        Command::Serve { .. } | Command::Ledger => {
            // The gateway alone serves on threads of its own (`server::Serve::PerThread`); its
            // main runtime only runs housekeeping.
            let threads = match config.role {
                Role::Gateway => 1,
                _ => config.http_threads(),
            };
            run_async_on(Some(threads), serve(config))
        }
        Command::DevToken {
            tenant,
            scopes,
            roles,
            subject,
            ttl,
        } => dev_token(&config, &tenant, &scopes, &roles, &subject, ttl),
        Command::Openapi => {
            println!(
                "{}",
                crate::api::openapi().to_pretty_json().unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Command::TrialBalance { json } => run_async(trial_balance(config, json)),
        Command::Dynamodb {
            action: DynamodbCommand::CreateTables,
        } => run_async(create_tables(config)),
        Command::Keys { action } => run_async(crate::keys::command(config, action)),
        Command::Audit { action } => run_async(crate::auditlog::command(config, action)),
    }
}

/// The configuration: command-line options over the environment over the file.
fn load_config(
    file: Option<&std::path::Path>,
    options: MapSource,
    role: Option<Role>,
) -> Result<Config, ConfigError> {
    let file = file.map(file_source).transpose()?;
    let mut sources: Vec<&dyn crate::config::Source> = vec![&options, &EnvSource];
    if let Some(file) = &file {
        sources.push(file);
    }
    Config::load_as(&Layered(sources), role)
}

fn run_async(work: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    run_async_on(None, work)
}

/// Runs `work` on a multi-threaded runtime of `threads` workers (tokio's default, one per core,
/// when `None`).
fn run_async_on(
    threads: Option<usize>,
    work: impl std::future::Future<Output = ExitCode>,
) -> ExitCode {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = threads {
        builder.worker_threads(threads.max(1));
    }
    match builder.enable_all().build() {
        Ok(runtime) => runtime.block_on(work),
        Err(e) => {
            eprintln!("strongroom: cannot start the runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> ExitCode {
    let _log = crate::logging::init(&config.log);
    eprintln!(
        "strongroom {} ({:?} mode)",
        env!("CARGO_PKG_VERSION"),
        config.mode
    );
    eprintln!("configuration:");
    for line in config.to_string().lines() {
        eprintln!("  {line}");
    }
    let running = match crate::server::start(&config).await {
        Ok(running) => running,
        Err(e) => {
            eprintln!("strongroom: {e}");
            let code = if matches!(
                e,
                crate::server::StartError::Config(_) | crate::server::StartError::Policy(_)
            ) {
                EXIT_CONFIG
            } else {
                1
            };
            return ExitCode::from(code);
        }
    };
    let info = &running.info;
    eprintln!("tls certificate: {}", info.cert.display());
    eprintln!("  sha256 fingerprint: {}", info.fingerprint);
    if let Some(kid) = &info.dev_kid {
        eprintln!(
            "dev token issuer: {} (kid {kid})",
            DevIssuer::key_path(&config.data_dir).display()
        );
        eprintln!(
            "  get a token: strongroom dev-token --tenant acme --scope ledger:read --scope ledger:write"
        );
    }
    if let Some(metrics) = info.metrics_addr {
        eprintln!("metrics on http://{metrics}/metrics");
    }
    match (config.role, &config.upstream) {
        (Role::Gateway, Some(upstream)) => eprintln!("gateway alone, forwarding to {upstream}"),
        (Role::Ledger, _) => eprintln!(
            "ledger alone: only requests with the gateway's internal assertion are accepted"
        ),
        _ => {}
    }
    eprintln!("listening on https://{}", info.addr);
    tracing::info!(addr = %info.addr, fingerprint = %info.fingerprint, "listening");
    let stopper = running.stopper();
    tokio::spawn(async move {
        crate::server::signal().await;
        let _ = stopper.send(true);
    });
    running.wait().await;
    ExitCode::SUCCESS
}

fn dev_token(
    config: &Config,
    tenant: &str,
    scopes: &[String],
    roles: &[String],
    subject: &str,
    ttl: u64,
) -> ExitCode {
    if config.mode == Mode::Production {
        eprintln!("strongroom: dev-token is refused in production mode");
        return ExitCode::from(EXIT_CONFIG);
    }
    let Some(tenant) = TenantId::new(tenant) else {
        eprintln!("strongroom: invalid tenant {tenant:?} (lowercase letters, digits, - and _)");
        return ExitCode::from(EXIT_CONFIG);
    };
    if ttl == 0 || ttl > DEV_TOKEN_TTL_S_MAX {
        eprintln!("strongroom: --ttl must be between 1 and {DEV_TOKEN_TTL_S_MAX} seconds");
        return ExitCode::from(EXIT_CONFIG);
    }
    let issuer = match DevIssuer::ensure(&config.data_dir) {
        Ok(issuer) => issuer,
        Err(e) => {
            eprintln!("strongroom: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut claims = DevIssuer::claims(&config.jwt_audience, subject, &tenant, scopes, ttl);
    if !roles.is_empty() {
        claims.roles = Some(roles.to_vec());
    }
    match issuer.sign(&claims) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("strongroom: cannot sign: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn create_tables(config: Config) -> ExitCode {
    let created = match DynamoStore::connect(&config.dynamodb).await {
        Ok(store) => store.create_table().await,
        Err(e) => Err(e),
    };
    match created {
        Ok(true) => {
            println!("created table {}", config.dynamodb.table);
            ExitCode::SUCCESS
        }
        Ok(false) => {
            println!("table {} exists", config.dynamodb.table);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("strongroom: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn trial_balance(config: Config, json: bool) -> ExitCode {
    if config.store == StoreChoice::Sqlite && !config.database_path().exists() {
        eprintln!(
            "strongroom: no database at {}",
            config.database_path().display()
        );
        return ExitCode::FAILURE;
    }
    let store = match crate::server::open_store(&config).await {
        Ok(store) => store,
        Err(e) => {
            eprintln!("strongroom: {e}");
            return ExitCode::FAILURE;
        }
    };
    let ledger = Ledger::start(
        store,
        Arc::new(SystemClock),
        LedgerConfig {
            commit: config.commit,
            hold_sweep_interval: None,
            audit: config.audit.config.clone(),
        },
    );
    let result = ledger.trial_balance_all().await;
    ledger.shutdown().await;
    let balances = match result {
        Ok(b) => b,
        Err(e) => {
            eprintln!("strongroom: {e}");
            return ExitCode::FAILURE;
        }
    };
    let all_balanced = balances.iter().all(|(_, b)| b.balanced());
    if json {
        let body: Vec<_> = balances
            .iter()
            .map(|(tenant, b)| {
                serde_json::json!({ "tenant": tenant.as_str(), "trial_balance": crate::api::dto::TrialBalanceResponse::from(b) })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({ "balanced": all_balanced, "tenants": body })
        );
    } else {
        println!(
            "{:<20} {:<5} {:>8} {:>24} {:>24} {:>12}",
            "tenant", "ccy", "accounts", "debits posted", "credits posted", "balanced"
        );
        for (tenant, b) in &balances {
            for c in &b.currencies {
                println!(
                    "{:<20} {:<5} {:>8} {:>24} {:>24} {:>12}",
                    tenant.as_str(),
                    c.currency.code(),
                    c.accounts,
                    c.debits_posted,
                    c.credits_posted,
                    if c.balanced() { "yes" } else { "NO" }
                );
            }
        }
        println!(
            "{}",
            if all_balanced {
                "every currency of every tenant sums to zero"
            } else {
                "UNBALANCED"
            }
        );
    }
    if all_balanced {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
