//! The HTTPS server: TLS accept loop, HTTP/1.1 and HTTP/2, graceful shutdown.
//!
//! Each connection gets a bounded TLS handshake, then hyper serves HTTP/1.1 or HTTP/2 as ALPN
//! chose; a client certificate the handshake verified goes into each request's extensions as a
//! [`ClientCert`]. On shutdown, readiness turns false at once, the listener closes, connections
//! are asked to finish (HTTP/2 GOAWAY, HTTP/1.1 close after the current response) and in-flight
//! requests get `shutdown_grace` to complete; then the ledger drains its commit queue and stops.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use ledger::store::dynamodb::DynamoStore;
use ledger::store::sqlite::SqliteStore;
use ledger::store::{Store, StoreError};
use ledger::{Ledger, LedgerConfig, SystemClock};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::api::{AppState, Edge, router, stack};
use crate::auth::{DevIssuer, Verifier, VerifierSettings};
use crate::config::{Config, Mode, Role, StoreChoice};
use crate::internal::InternalKey;
use crate::jwks::{HttpsFetcher, RemoteJwks, RemoteSettings};
use crate::mtls::ClientCert;
use crate::ratelimit::RateLimits;
use crate::tls::{self, CertFiles};

/// How far above `headers_max` and `header_bytes_max` hyper's own limits sit. Between the two,
/// `edge` answers 431 with a problem body; beyond, hyper answers a bare 431 (HTTP/1.1) or
/// refuses the stream (HTTP/2) before anything is parsed further.
pub const HARD_LIMIT_FACTOR: usize = 2;
/// Longest TLS handshake allowed.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Concurrent streams per HTTP/2 connection.
pub const H2_STREAMS_MAX: u32 = 256;
/// Streams an HTTP/2 client may reset before the server has accepted them (reset floods, as in
/// CVE-2023-44487): beyond it the connection is closed.
pub const H2_PENDING_RESETS_MAX: usize = 20;
/// Streams the server may reset for a client's protocol errors before it closes the connection.
pub const H2_ERROR_RESETS_MAX: usize = 256;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Bad configuration (exit status 64).
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// Certificate or key.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// Token keys.
    #[error(transparent)]
    Keys(#[from] crate::auth::KeyError),
    /// The first fetch of `jwks_url` failed (exit status 1, as for a JWKS file that does not
    /// load): without keys no token verifies.
    #[error("jwks_url {url}: {source}")]
    Jwks {
        /// The URL.
        url: String,
        /// What went wrong.
        source: crate::jwks::JwksError,
    },
    /// The route policy does not load or does not match the routes (exit status 64).
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
    /// The upstream client (split deployment).
    #[error(transparent)]
    Upstream(#[from] crate::proxy::UpstreamError),
    /// The key service would not open (a keyring with loose permissions, KMS unreachable).
    #[error(transparent)]
    KeyService(#[from] crate::keys::KeysError),
    /// The audit checkpoint signer would not open.
    #[error(transparent)]
    AuditSigner(#[from] crate::auditlog::SignerError),
    /// The store would not open.
    #[error("store: {0}")]
    Store(#[from] ledger::store::StoreError),
    /// Files or sockets.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The failure.
        source: std::io::Error,
    },
}

/// What start-up found, for the banner.
#[derive(Debug, Clone)]
pub struct StartInfo {
    /// The address listened on.
    pub addr: SocketAddr,
    /// The certificate file.
    pub cert: PathBuf,
    /// Its SHA-256 fingerprint.
    pub fingerprint: String,
    /// The dev issuer's key id, in dev mode.
    pub dev_kid: Option<String>,
    /// Where `GET /metrics` is served, when it is.
    pub metrics_addr: Option<SocketAddr>,
}

/// A running server.
#[derive(Debug)]
pub struct Running {
    /// Start-up facts.
    pub info: StartInfo,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Running {
    /// Asks the server to stop (as SIGTERM does) and waits until it has.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }

    /// Waits until the server stopped on its own (after a signal).
    pub async fn wait(self) {
        let _ = self.task.await;
    }

    /// A handle that stops the server.
    pub fn stopper(&self) -> watch::Sender<bool> {
        self.stop.clone()
    }
}

/// Builds the token verifier: JWKS keys (from the file, or fetched from the URL once, which
/// must succeed), plus the dev issuer in dev mode. The caller refreshes the remote keys
/// ([`crate::jwks::RemoteJwks::run`]). A ledger run alone trusts no token issuer at all (its
/// callers prove themselves with the gateway's assertion).
pub async fn verifier(config: &Config) -> Result<(Verifier, Option<DevIssuer>), StartError> {
    let settings = VerifierSettings {
        audience: config.jwt_audience.clone(),
        leeway_s: config.jwt_leeway_s,
        cache_len_max: config.token_cache_len_max,
    };
    let mut verifier = Verifier::new(&settings);
    if config.role == Role::Ledger {
        return Ok((verifier, None));
    }
    if let (Some(path), Some(issuer)) = (&config.jwks_file, &config.jwt_issuer) {
        verifier.add_jwks_file(&settings, path, issuer)?;
    }
    if let (Some(url), Some(issuer)) = (&config.jwks_url, &config.jwt_issuer) {
        let failed = |source| StartError::Jwks {
            url: url.clone(),
            source,
        };
        let fetcher = HttpsFetcher::new(url, config.jwks_ca_file.as_deref()).map_err(failed)?;
        let remote = RemoteJwks::start(
            Box::new(fetcher),
            RemoteSettings {
                verifier: settings.clone(),
                issuer: issuer.clone(),
                refetch_min_interval: config.jwks_refetch_min_interval,
                fetch_timeout: config.jwks_fetch_timeout,
            },
        )
        .await
        .map_err(failed)?;
        tracing::info!(%url, kids = ?remote.kids(), "JWKS fetched");
        verifier.set_remote(remote);
    }
    let dev = match config.mode {
        Mode::Dev => {
            let issuer = DevIssuer::ensure(&config.data_dir)?;
            verifier.add_dev_issuer(&settings, &issuer);
            Some(issuer)
        }
        Mode::Production => None,
    };
    Ok((verifier, dev))
}

/// Opens the configured store: the SQLite files in the data directory, or the DynamoDB table
/// (which must exist and answer).
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, StartError> {
    Ok(match &config.store {
        StoreChoice::Sqlite => Arc::new(SqliteStore::open(&config.database_path())?),
        StoreChoice::Dynamodb(settings) => {
            let store = DynamoStore::connect(settings).await?;
            store.ping().await.map_err(|e| {
                let why = match e {
                    StoreError::Unavailable(why) => why,
                    other => other.to_string(),
                };
                StartError::Store(StoreError::Unavailable(format!(
                    "DynamoDB table {}: {why} (`strongroom dynamodb create-tables` creates it)",
                    settings.table
                )))
            })?;
            Arc::new(store)
        }
    })
}

/// Off by default (the right numbers depend on the deployment), rate limits are worth a word
/// in production: none at all, or a per-address limit that would key every client by the load
/// balancer's address.
fn warn_about_rate_limits(config: &Config) {
    if config.mode != Mode::Production {
        return;
    }
    let rate = &config.rate;
    if rate.ip.is_none() && rate.tenant.is_none() && rate.tiers.is_empty() {
        tracing::warn!("no rate limits: set rate_ip, rate_tenant or rate_tenant_tiers");
    }
    if rate.ip.is_some() && rate.trusted_proxies.is_empty() {
        tracing::warn!(
            "rate_ip counts per TCP peer and trusted_proxies is empty: behind a load balancer, \
             every client shares the balancer's budget"
        );
    }
}

/// Where the daily quotas are counted: in the DynamoDB table every task shares, or in memory
/// when this process is the only one (SQLite).
async fn quota_counters(config: &Config) -> Result<crate::ratelimit::quota::Counters, StartError> {
    use crate::ratelimit::quota::Counters;
    Ok(match &config.store {
        StoreChoice::Sqlite => Counters::memory(),
        StoreChoice::Dynamodb(settings) => Counters::Dynamo(DynamoStore::connect(settings).await?),
    })
}

/// Starts the server; returns once it listens.
pub async fn start(config: &Config) -> Result<Running, StartError> {
    let io = |context: String| move |source| StartError::Io { context, source };
    std::fs::create_dir_all(&config.data_dir)
        .map_err(io(format!("create {}", config.data_dir.display())))?;
    let files = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => CertFiles {
            cert: cert.clone(),
            key: key.clone(),
        },
        _ => tls::ensure_dev_cert(&config.data_dir)?,
    };
    let certs = Arc::new(tls::CertStore::open(
        &files,
        Arc::new(config.tls_mode.provider()),
    )?);
    let clients = match &config.tls_client_ca_file {
        Some(ca_file) => Some(crate::mtls::client_verifier(
            ca_file,
            config.mtls,
            certs.provider(),
        )?),
        None => None,
    };
    let tls_config = tls::server_config(certs.clone(), config.tls_mode, clients)?;
    let fingerprint = certs.fingerprint();
    let (verifier, dev) = verifier(config).await?;
    let policy = match &config.policy_file {
        Some(path) => crate::policy::Policy::load(path)?,
        None => crate::policy::Policy::built_in()?,
    };
    policy.check(&crate::api::served_routes())?;
    // Both addresses first: a taken port stops the start before anything else runs.
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(io(format!("listen on {}", config.listen)))?;
    let addr = listener.local_addr().map_err(io("local address".into()))?;
    if config.role == Role::Gateway && config.metrics_listen.is_some() {
        return Err(StartError::Config(crate::config::ConfigError(
            "metrics_listen: a gateway alone has no ledger metrics to serve; set it on the ledger"
                .into(),
        )));
    }
    let metrics_listener = match config.metrics_listen {
        Some(at) => Some(
            TcpListener::bind(at)
                .await
                .map_err(io(format!("metrics_listen on {at}")))?,
        ),
        None => None,
    };
    warn_about_rate_limits(config);
    let rate_limits = Arc::new(RateLimits::new(&config.rate));
    let draining = Arc::new(AtomicBool::new(false));
    let edge = Arc::new(Edge {
        request_timeout: config.request_timeout,
        in_flight: Arc::new(tokio::sync::Semaphore::new(config.concurrency_max)),
        body_bytes_max: config.body_bytes_max,
        cors_origins: config.cors_origins.clone(),
        rate_limits: rate_limits.clone(),
        headers_max: config.headers_max,
        header_bytes_max: config.header_bytes_max,
        audit: std::sync::OnceLock::new(),
    });
    let cert_tenants = crate::mtls::CertTenants::new(config.mtls_tenants.iter().cloned());
    let key = match config.internal_key_path() {
        Some(path) => Some(InternalKey::load_or_generate(
            &path,
            config.mode == Mode::Dev,
        )?),
        None => None,
    };
    let remote_keys = verifier.remote().cloned();
    // Set once serving has ended: the gateway's audit forwarder then sends what it holds.
    let (flush, flush_rx) = watch::channel(false);
    let mut forward_task = None;
    let (app, ledger) = match (&config.upstream, key) {
        (Some(upstream), Some(key)) => {
            let settings = crate::proxy::UpstreamSettings {
                url: upstream.clone(),
                // In dev mode an https:// ledger on the same data directory serves the
                // development certificate.
                ca_file: config.upstream_ca_file.clone().or_else(|| {
                    (config.mode == Mode::Dev).then(|| tls::dev_cert_files(&config.data_dir).cert)
                }),
                retries_max: config.upstream_retries_max,
                connect_timeout: config.upstream_connect_timeout,
                idle_max: config.upstream_idle_max,
                breaker_failures: config.breaker_failures,
                breaker_open: config.breaker_open,
            };
            // What the gateway answers itself is recorded in the ledger's stream.
            if config.audit.config.enabled {
                let (forwarder, task) = crate::audit_forward::start(
                    crate::audit_forward::ForwardSettings {
                        upstream: upstream.clone(),
                        key: key.clone(),
                        grace: config.shutdown_grace,
                    },
                    crate::proxy::client(&settings)?,
                    flush_rx,
                );
                let _ = edge
                    .audit
                    .set(crate::auditlog::Recorder::Forward(forwarder));
                forward_task = Some(task);
            }
            let state = Arc::new(crate::proxy::ProxyState::new(
                &settings,
                crate::proxy::Checks {
                    verifier,
                    policy,
                    cert_tenants,
                    rate_limits: rate_limits.clone(),
                },
                key,
                draining.clone(),
                config.body_bytes_max,
            )?);
            // One router, with its own upstream pool, per HTTP thread (`serve_per_thread`).
            let served = crate::api::served_routes();
            let mut apps = Vec::new();
            for _ in 1..config.http_threads() {
                let sibling = Arc::new(state.sibling()?);
                apps.push(stack(crate::proxy::routes(sibling, &served), edge.clone()));
            }
            apps.push(stack(crate::proxy::routes(state, &served), edge));
            (Serve::PerThread(apps), None)
        }
        (_, key) => {
            let store = open_store(config).await?;
            let vault = crate::keys::vault(&config.vault, config.mode).await?;
            let signer = crate::auditlog::signer(&config.audit, config.mode).await?;
            let ledger = Ledger::start_with_signer(
                store,
                Arc::new(SystemClock),
                LedgerConfig {
                    commit: config.commit,
                    hold_sweep_interval: Some(config.hold_sweep_interval),
                    audit: config.audit.config.clone(),
                },
                Some(vault),
                Some(signer),
            );
            if !config.audit.config.enabled {
                tracing::warn!("audit_log = off: no action is recorded (for measurements only)");
            }
            // Every request of this process is recorded in its stream (`auditlog::record`).
            let _ = edge
                .audit
                .set(crate::auditlog::Recorder::Ledger(ledger.clone()));
            let state = Arc::new(AppState {
                ledger: ledger.clone(),
                verifier,
                internal: key.filter(|_| config.role == Role::Ledger),
                cert_tenants,
                rate_limits: rate_limits.clone(),
                draining: draining.clone(),
                body_bytes_max: config.body_bytes_max,
                policy,
                card_mask: config.vault.mask,
            });
            (Serve::Shared(router(state, edge)), Some(ledger))
        }
    };
    let limits = ConnLimits {
        header_read_timeout: config.header_read_timeout,
        headers_max: config.headers_max,
        header_bytes_max: config.header_bytes_max,
    };
    let (stop, stopped) = watch::channel(false);
    let (metrics_addr, metrics_task) = match (metrics_listener, &ledger) {
        (Some(listener), Some(ledger)) => {
            let bound = listener
                .local_addr()
                .map_err(io("metrics local address".into()))?;
            let task = crate::metrics::serve(listener, ledger.clone(), stopped.clone());
            (Some(bound), Some(task))
        }
        _ => (None, None),
    };
    let reloader = tokio::spawn(reload_certs(certs, config.tls_reload, stopped.clone()));
    let jwks_refresher =
        remote_keys.map(|remote| tokio::spawn(remote.run(config.jwks_refresh, stopped.clone())));
    let quota_flusher = match rate_limits.daily() {
        Some(daily) => {
            let counters = quota_counters(config).await?;
            Some(tokio::spawn(crate::ratelimit::quota::flush_loop(
                daily,
                counters,
                config.rate.quota_flush,
                stopped.clone(),
            )))
        }
        None => None,
    };
    let sweeper = tokio::spawn(crate::ratelimit::sweep(rate_limits, stopped.clone()));
    let grace = config.shutdown_grace;
    let task = tokio::spawn(async move {
        let acceptor = TlsAcceptor::from(tls_config);
        match app {
            Serve::Shared(app) => {
                accept_loop(listener, acceptor, app, stopped, grace, limits, &draining).await
            }
            Serve::PerThread(apps) => {
                serve_per_thread(listener, acceptor, apps, stopped, grace, limits, draining).await
            }
        }
        let _ = flush.send(true);
        if let Some(task) = forward_task {
            let _ = task.await;
        }
        if let Some(ledger) = ledger {
            ledger.shutdown().await;
        }
        let _ = reloader.await;
        if let Some(refresher) = jwks_refresher {
            let _ = refresher.await;
        }
        let _ = sweeper.await;
        if let Some(flusher) = quota_flusher {
            let _ = flusher.await;
        }
        if let Some(metrics) = metrics_task {
            let _ = metrics.await;
        }
        tracing::info!("stopped");
    });
    let info = StartInfo {
        addr,
        cert: files.cert,
        fingerprint,
        dev_kid: dev.map(|d| d.kid),
        metrics_addr,
    };
    Ok(Running { info, stop, task })
}

/// How the HTTP side runs.
enum Serve {
    /// One router on the process's multi-threaded runtime (the combined server and the ledger
    /// alone: the ledger's work is shared by every request anyway).
    Shared(Router),
    /// The gateway alone: one router per thread, each thread with a runtime of its own
    /// accepting from the same listening socket. A request, its upstream exchange (on the
    /// thread's own pool) and its answer never change threads: no cross-thread wake-ups on the
    /// request path, as in HAProxy's or nginx's model.
    PerThread(Vec<Router>),
}

/// Serves `apps`, one per OS thread with a single-threaded runtime each, all accepting from
/// `listener`; returns when every thread has drained and stopped.
async fn serve_per_thread(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    apps: Vec<Router>,
    stop: watch::Receiver<bool>,
    grace: Duration,
    limits: ConnLimits,
    draining: Arc<AtomicBool>,
) {
    let listener = match listener.into_std() {
        Ok(listener) => listener,
        Err(error) => return tracing::error!(%error, "cannot share the listening socket"),
    };
    let mut threads = Vec::new();
    for (n, app) in apps.into_iter().enumerate() {
        let listener = match listener.try_clone() {
            Ok(listener) => listener,
            Err(error) => {
                tracing::error!(%error, "cannot share the listening socket");
                continue;
            }
        };
        let (acceptor, stop, draining) = (acceptor.clone(), stop.clone(), draining.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("strongroom-http-{n}"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => return tracing::error!(%error, "cannot start an HTTP thread"),
                };
                runtime.block_on(async move {
                    match TcpListener::from_std(listener) {
                        Ok(listener) => {
                            accept_loop(listener, acceptor, app, stop, grace, limits, &draining)
                                .await
                        }
                        Err(error) => tracing::error!(%error, "cannot listen on an HTTP thread"),
                    }
                });
            });
        match spawned {
            Ok(thread) => threads.push(thread),
            Err(error) => tracing::error!(%error, "cannot start an HTTP thread"),
        }
    }
    drop(listener);
    let _ = tokio::task::spawn_blocking(move || {
        for thread in threads {
            let _ = thread.join();
        }
    })
    .await;
}

/// What one connection may send before a request is read: bounds against slow and flooding
/// clients. A head over the limits is answered 431 (HTTP/1.1) or its stream refused (HTTP/2).
#[derive(Debug, Clone, Copy)]
struct ConnLimits {
    header_read_timeout: Duration,
    headers_max: usize,
    header_bytes_max: usize,
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    app: Router,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
    limits: ConnLimits,
    draining: &AtomicBool,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // Twice the configured limits: a head between the two reaches `edge`, which refuses it
        // with a 431 problem body; hyper refuses a larger one itself (a bare 431).
        .max_headers(limits.headers_max.saturating_mul(HARD_LIMIT_FACTOR))
        .max_buf_size(limits.header_bytes_max.saturating_mul(HARD_LIMIT_FACTOR))
        .keep_alive(true)
        // One buffer per response: over TLS, vectored writes become one record (and one
        // syscall) per slice.
        .writev(false);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_STREAMS_MAX)
        .max_header_list_size(
            u32::try_from(limits.header_bytes_max.saturating_mul(HARD_LIMIT_FACTOR))
                .unwrap_or(u32::MAX),
        )
        .max_pending_accept_reset_streams(H2_PENDING_RESETS_MAX)
        .max_local_error_reset_streams(H2_ERROR_RESETS_MAX);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Out of file descriptors, say: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
            {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => return tracing::debug!(%peer, %error, "TLS handshake failed"),
                Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
            };
            // The verified client certificate, if any: the connection's identity beside the
            // token, for every request on it (`crate::mtls::check`).
            let client_cert = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(<[_]>::first)
                .map(|der| ClientCert::from_der(der));
            let service = app.map_request(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                if let Some(cert) = &client_cert {
                    req.extensions_mut().insert(cert.clone());
                }
                req
            });
            let conn = builder.serve_connection_with_upgrades(
                TokioIo::new(tls),
                TowerToHyperService::new(service),
            );
            if let Err(error) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
    draining.store(true, Ordering::SeqCst);
    drop(listener);
    tracing::info!(
        connections = graceful.count(),
        "shutting down: draining connections"
    );
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_ms = grace.as_millis() as u64,
            "grace period over; closing remaining connections"
        );
    }
}

/// Replaces the served certificate when its files change (checked every `interval`, unless
/// zero) or on SIGHUP, until `stop`. A pair that does not load is logged and the current one
/// kept.
async fn reload_certs(
    certs: Arc<tls::CertStore>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGHUP; certificates reload only when their files change");
            None
        }
    };
    let mut tick = (!interval.is_zero()).then(|| {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick
    });
    loop {
        let forced = tokio::select! {
            _ = stop.changed() => return,
            Some(()) = async { hangup.as_mut()?.recv().await } => true,
            _ = async { match tick.as_mut() { Some(t) => t.tick().await, None => std::future::pending().await } } => false,
        };
        let outcome = if forced {
            certs.reload().map(|()| true)
        } else {
            certs.reload_if_changed()
        };
        match outcome {
            Ok(true) => {
                tracing::info!(fingerprint = %certs.fingerprint(), "TLS certificate reloaded")
            }
            Ok(false) => {}
            Err(error) => {
                tracing::error!(%error, "TLS certificate reload failed; serving the previous one")
            }
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(error) => {
            tracing::error!(%error, "cannot listen for SIGTERM");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT"),
    }
}
