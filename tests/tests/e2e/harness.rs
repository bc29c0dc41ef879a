//! The harness: Strongroom instances on their own data directories, clients that really verify
//! TLS, dev tokens (good and bad), and small helpers for requests and answers.
//!
//! Two ways to start an instance:
//! - [`Instance`]: in this process (`gateway::server::start`), fast; most tests use it.
//! - [`Process`]: the real `strongroom` program (`strongroom-e2e`), for what only a process
//!   shows: crashes, signals, exit status, what it prints.
//!
//! Both listen on `127.0.0.1:0` over HTTPS with the certificate they generate; [`Api`] trusts
//! that certificate only (`tls_certs_only`), so every test also proves the TLS setup.
//!
//! Submodules: [`process`] (the spawned program), [`tokens`] (good and bad tokens), [`http`]
//! (clients, requests, answers, and domain helpers), [`idp`] (an identity provider serving
//! its JWKS over HTTPS), [`pki`] (a CA with server and client certificates).

mod faulty;
mod http;
pub mod idp;
pub mod pki;
mod process;
pub mod raw_tls;
mod tokens;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gateway::config::{Config, MapSource, Role};
use gateway::server::Running;

pub use self::faulty::FaultyProxy;
pub use self::http::{Api, Protocol, Reply, Req, column, transfer_body, unique_key};
pub use self::process::{Process, program, run_program, run_program_with};
pub use self::tokens::{BadToken, Tokens};

/// The program under test, built by cargo before this test binary.
pub const PROGRAM: &str = env!("CARGO_BIN_EXE_strongroom-e2e");
/// Base of every problem `type`.
pub const PROBLEM_BASE: &str = "https://strongroom.dev/problems/";
/// Both ledger scopes.
pub const READ_WRITE: &[&str] = &["ledger:read", "ledger:write"];
/// Longest wait for a spawned process to say it listens.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// An account id that is well-formed and belongs to nobody.
pub const NO_SUCH_ACCOUNT: &str = "acct_01ARZ3NDEKTSV4RRFFQ69G5FAV";
/// A transfer id that is well-formed and belongs to nobody.
pub const NO_SUCH_TRANSFER: &str = "xfer_01ARZ3NDEKTSV4RRFFQ69G5FAV";

/// Settings that put an instance on a new DynamoDB table of its own, on the server
/// `tests/run.sh` starts (moto), created with `strongroom dynamodb create-tables`.
pub fn dynamodb_settings() -> Vec<(&'static str, String)> {
    let table = format!("e2e-{}", ulid::Ulid::generate().to_string().to_lowercase());
    let settings = dynamodb_table(&table);
    let borrowed: Vec<(&str, &str)> = settings.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let out = run_program_with(&["dynamodb", "create-tables"], &borrowed);
    assert_eq!(out.trim(), format!("created table {table}"));
    settings
}

/// When `E2E_STORE=dynamodb` (`tests/run.sh` runs the ledger's behaviour suites a second time
/// so), every [`Instance`] keeps its ledger in a DynamoDB table named after its data directory,
/// created if needed: an instance restarted on the same directory finds its table again.
fn store_settings(data_dir: &Path) -> Vec<(&'static str, String)> {
    if std::env::var("E2E_STORE").as_deref() != Ok("dynamodb") {
        return Vec::new();
    }
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    data_dir.hash(&mut hasher);
    let table = format!("e2e-dir-{:016x}", hasher.finish());
    let settings = dynamodb_table(&table);
    let borrowed: Vec<(&str, &str)> = settings.iter().map(|(n, v)| (*n, v.as_str())).collect();
    run_program_with(&["dynamodb", "create-tables"], &borrowed);
    settings
}

/// Settings for the table `table` on the test server (which must be running).
fn dynamodb_table(table: &str) -> Vec<(&'static str, String)> {
    let endpoint = std::env::var("STRONGROOM_TEST_DYNAMODB_ENDPOINT").unwrap_or_else(|_| {
        panic!(
            "STRONGROOM_TEST_DYNAMODB_ENDPOINT is not set: run the tests with tests/run.sh, \
             which starts a DynamoDB server (moto) on 127.0.0.1"
        )
    });
    vec![
        ("store", "dynamodb".to_owned()),
        ("dynamodb_table", table.to_owned()),
        ("dynamodb_endpoint", endpoint),
        ("dynamodb_region", "us-east-1".to_owned()),
    ]
}

/// A client of the test KMS server (moto, started by `tests/run.sh`), and its endpoint.
pub async fn test_kms() -> (aws_sdk_kms::Client, String) {
    let endpoint = std::env::var("STRONGROOM_TEST_KMS_ENDPOINT").unwrap_or_else(|_| {
        panic!(
            "STRONGROOM_TEST_KMS_ENDPOINT is not set: run the tests with tests/run.sh, which \
             starts moto on 127.0.0.1"
        )
    });
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(&endpoint)
        .load()
        .await;
    (aws_sdk_kms::Client::new(&config), endpoint)
}

/// Fetches a metrics page (plain HTTP) and checks its content type.
pub async fn scrape(url: &str) -> String {
    let answer = reqwest::get(url).await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    answer.text().await.unwrap()
}

/// The value of one series (`name` or `name{label="value"}`) in a metrics page.
pub fn metric(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in:\n{page}"))
}

/// A server running inside the test process, on its own temporary data directory.
#[derive(Debug)]
pub struct Instance {
    /// `https://127.0.0.1:PORT`
    pub url: String,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The generated certificate, PEM.
    pub cert_pem: Vec<u8>,
    /// Mints tokens the instance trusts.
    pub tokens: Tokens,
    /// `http://127.0.0.1:PORT/metrics`, when `metrics_listen` is set.
    pub metrics_url: Option<String>,
    running: Option<Running>,
    // Dropped last: removes the data directory, when the instance made it.
    _dir: Option<tempfile::TempDir>,
}

impl Instance {
    /// Starts an instance with default settings.
    pub async fn start() -> Instance {
        Instance::start_with(&[]).await
    }

    /// Starts an instance with some settings (`("body_bytes_max", "4096")`, ...).
    pub async fn start_with(settings: &[(&str, &str)]) -> Instance {
        let dir = tempfile::tempdir().unwrap();
        let mut instance = Instance::start_in(dir.path(), settings).await;
        instance._dir = Some(dir);
        instance
    }

    /// Starts a ledger alone (`strongroom ledger`), for a gateway in front of it.
    pub async fn start_ledger(settings: &[(&str, &str)]) -> Instance {
        let dir = tempfile::tempdir().unwrap();
        let mut instance = Instance::start_as(dir.path(), settings, Role::Ledger).await;
        instance._dir = Some(dir);
        instance
    }

    /// Starts an instance on a data directory the caller owns (to restart on it).
    pub async fn start_in(data_dir: &Path, settings: &[(&str, &str)]) -> Instance {
        Instance::start_as(data_dir, settings, Role::Combined).await
    }

    /// Starts an instance in a role (`Combined` also covers the gateway alone: its `upstream`
    /// setting says so).
    async fn start_as(data_dir: &Path, settings: &[(&str, &str)], role: Role) -> Instance {
        let data_dir = data_dir.to_owned();
        let mut map: BTreeMap<String, String> = BTreeMap::from([
            ("data_dir".into(), data_dir.display().to_string()),
            ("listen".into(), "127.0.0.1:0".into()),
        ]);
        for (name, value) in store_settings(&data_dir) {
            map.insert(name.into(), value);
        }
        for (name, value) in settings {
            map.insert((*name).into(), (*value).into());
        }
        let config =
            Config::load_as(&MapSource(map), (role != Role::Combined).then_some(role)).unwrap();
        let running = gateway::server::start(&config).await.unwrap();
        let cert_pem = std::fs::read(&running.info.cert).unwrap();
        Instance {
            url: format!("https://{}", running.info.addr),
            metrics_url: running
                .info
                .metrics_addr
                .map(|addr| format!("http://{addr}/metrics")),
            tokens: Tokens::new(&data_dir),
            data_dir,
            cert_pem,
            running: Some(running),
            _dir: None,
        }
    }

    /// A client (HTTP/2 when ALPN agrees, which it does) with a read-write token of `tenant`.
    pub fn api(&self, tenant: &str) -> Api {
        Api::new(&self.url, &self.cert_pem, Protocol::Negotiated)
            .with_token(&self.tokens.mint(tenant, READ_WRITE))
    }

    /// A client of the given protocol, with no token.
    pub fn anonymous(&self, protocol: Protocol) -> Api {
        Api::new(&self.url, &self.cert_pem, protocol)
    }

    /// Stops the server as SIGTERM would and waits for it.
    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await;
        }
    }
}
