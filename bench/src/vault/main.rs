//! `vault-load`: card tokenizations and reveals per second through Strongroom's real HTTPS API,
//! and the key-service requests that 10,000 tokenizations of one tenant cost.
//!
//! 1. Starts `strongroom serve` on a fresh data directory with its metrics listener on
//!    `127.0.0.1:0` and the reveal limit lifted (`STRONGROOM_RATE_REVEAL`, unless the caller
//!    sets it). Other `STRONGROOM_*` variables reach the server: `bench/vault-load.sh` sets the
//!    KMS ones for `KEY_SERVICE=kms`. Gets tokens with every card scope from `dev-token`.
//! 2. Warm-up: one card for another tenant, which loads the deployment's fingerprint key (one
//!    key-service call per process, not per tenant).
//! 3. Count: reads `/metrics`, tokenizes exactly [`COUNTED_TOKENIZATIONS`] distinct cards for
//!    the tenant `bench` over `CLIENTS` connections, reads `/metrics` again: the difference of
//!    `strongroom_key_service_requests_total` (every operation) is the figure, and of
//!    `strongroom_key_service_remote_requests_total` (requests on the wire to KMS, retries
//!    included) the check of it.
//! 4. Tokenize load: `CLIENTS` clients tokenize new random cards for `DURATION_S` seconds.
//! 5. Reveal load: `CLIENTS` clients reveal random cards of those tokenized for `DURATION_S`
//!    seconds; every answer's number must be the one that went in.
//! 6. Stops the server with SIGTERM and prints a report whose last three lines are
//!    `tokenizations/s: N`, `reveals/s: N` and `key-service requests per 10000 tokenizations: N`.
//!
//! Exit status: 0; 64 for an invalid setting; 1 for a failed setup, any non-2xx answer, a lost
//! connection, or a revealed number that is not the one tokenized.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bench::http::{Conn, Target};
use bench::server::{self, Server};
use bytes::Bytes;
use hdrhistogram::Histogram;
use hyper::{StatusCode, Uri};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Tokenizations of one tenant whose key-service requests are counted.
const COUNTED_TOKENIZATIONS: usize = 10_000;
/// The tenant of the measured load.
const TENANT: &str = "bench";
/// The tenant of the warm-up card.
const WARMUP_TENANT: &str = "warmup";
/// Scopes of the load's tokens.
const SCOPES: &[&str] = &["cards:read", "cards:write", "cards:reveal"];
/// The reveal limit the server runs with unless the caller sets one.
const RATE_REVEAL_LIFTED: &str = "1000000000/1s";
/// Most clients.
const CLIENTS_MAX: usize = 1024;
/// Longest load phase.
const DURATION_S_MAX: u64 = 3600;
/// Latency histogram bounds: 1 µs to 60 s, 3 significant figures.
const LATENCY_US_MAX: u64 = 60_000_000;
/// Error answers kept for the report.
const ERROR_SAMPLES_MAX: usize = 5;
/// Exit status for an invalid setting (`EX_USAGE`).
const EXIT_USAGE: u8 = 64;

#[derive(Debug)]
struct Settings {
    clients: usize,
    duration: Duration,
    bin: std::path::PathBuf,
}

fn settings() -> Result<Settings, String> {
    let number = |name: &str, default: u64, max: u64| -> Result<u64, String> {
        match std::env::var(name) {
            Err(_) => Ok(default),
            Ok(raw) => raw
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| format!("{name}={raw:?}: a whole number from 1 to {max}")),
        }
    };
    let clients = number("CLIENTS", 16, CLIENTS_MAX as u64)?;
    let duration_s = number("DURATION_S", 10, DURATION_S_MAX)?;
    let bin = match std::env::var_os("STRONGROOM_BIN") {
        Some(bin) => bin.into(),
        None => std::env::current_exe()
            .map_err(|e| format!("where this program is: {e}"))?
            .with_file_name("strongroom"),
    };
    Ok(Settings {
        clients: usize::try_from(clients).unwrap_or(CLIENTS_MAX),
        duration: Duration::from_secs(duration_s),
        bin,
    })
}

fn main() -> ExitCode {
    let settings = match settings() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("vault-load: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    // One thread for every client, as ledger-load: the server needs the cores more.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("vault-load: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vault-load: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(settings: &Settings) -> Result<()> {
    // The server inherits this process's environment (bench/vault-load.sh sets these).
    if std::env::var_os("STRONGROOM_RATE_REVEAL").is_none() {
        bail!(
            "set STRONGROOM_RATE_REVEAL (bench/vault-load.sh sets {RATE_REVEAL_LIFTED}): the default \
             limit allows 10 reveals a minute"
        );
    }
    if std::env::var_os("STRONGROOM_METRICS_LISTEN").is_none() {
        bail!("set STRONGROOM_METRICS_LISTEN=127.0.0.1:0 (bench/vault-load.sh does)");
    }
    let service = std::env::var("STRONGROOM_KEY_SERVICE").unwrap_or_else(|_| "local".into());
    eprintln!(
        "vault-load: starting {} serve (key service: {service})",
        settings.bin.display()
    );
    let server = Server::start(&settings.bin)?;
    let pid = server.pid().to_string();
    let metrics = server
        .banner
        .metrics
        .context("the server announced no metrics listener")?;
    let target = |tenant: &str| -> Result<Target> {
        Target::new(
            server.banner.addr,
            &server.banner.cert,
            &server.dev_token_for(tenant, SCOPES)?,
        )
    };
    let bench = target(TENANT)?;

    // 2. Warm-up: the fingerprint key, once per process.
    let mut warm = target(WARMUP_TENANT)?.connect().await?;
    let pan = new_card(&mut SmallRng::from_rng(&mut rand::rng()));
    if let Err(answer) = tokenize(&mut warm, &pan).await? {
        bail!("the warm-up tokenization: {answer}");
    }

    // 3. Key-service requests of exactly COUNTED_TOKENIZATIONS.
    let before = scrape(metrics).await?;
    let counted = tokenize_load(&bench, settings.clients, Stop::After(COUNTED_TOKENIZATIONS))
        .await
        .with_context(|| server.stderr_context())?;
    let after = scrape(metrics).await?;
    if counted.cards.len() != COUNTED_TOKENIZATIONS || counted.error_count() > 0 {
        print!("{}", counted.report("counted tokenizations"));
        bail!("the counted tokenizations did not all succeed");
    }
    let key_requests = after.requests - before.requests;
    let remote_requests = after.remote - before.remote;

    // 4. Tokenizations per second.
    eprintln!(
        "vault-load: {} clients tokenize for {} s",
        settings.clients,
        settings.duration.as_secs()
    );
    let cpu_before = server::cpu_time(&pid);
    let tokenized = tokenize_load(&bench, settings.clients, Stop::At(settings.duration)).await?;
    let tokenize_cpu = server::cpu_time(&pid).zip(cpu_before).map(|(a, b)| a - b);

    // 5. Reveals per second, of every card tokenized so far.
    let mut cards = counted.cards.clone();
    cards.extend(tokenized.cards.iter().cloned());
    let cards = Arc::new(cards);
    eprintln!(
        "vault-load: {} clients reveal {} cards for {} s",
        settings.clients,
        cards.len(),
        settings.duration.as_secs()
    );
    let cpu_before = server::cpu_time(&pid);
    let revealed = reveal_load(&bench, settings.clients, settings.duration, &cards).await?;
    let reveal_cpu = server::cpu_time(&pid).zip(cpu_before).map(|(a, b)| a - b);
    let peak_rss_kib = server.peak_rss_kib();
    server.stop()?;

    let mut out = String::new();
    out.push_str(&format!("{:<24}{service}\n", "key service:"));
    out.push_str(&format!("{:<24}{}\n", "clients:", settings.clients));
    out.push_str(&counted.report("counted tokenizations"));
    out.push_str(&format!(
        "{:<24}{key_requests} by operation, {remote_requests} on the wire to a remote service\n",
        "key-service calls:"
    ));
    out.push_str(&tokenized.report("tokenize load"));
    out.push_str(&format!(
        "{:<24}{}\n",
        "  server CPU:",
        cores(tokenize_cpu, tokenized.elapsed)
    ));
    out.push_str(&revealed.report("reveal load"));
    out.push_str(&format!(
        "{:<24}{}\n",
        "  server CPU:",
        cores(reveal_cpu, revealed.elapsed)
    ));
    out.push_str(&format!(
        "{:<24}{}\n",
        "server peak RSS:",
        peak_rss_kib.map_or("unknown".to_owned(), |kib| format!(
            "{:.1} MiB",
            kib as f64 / 1024.0
        ))
    ));
    print!("{out}");
    for outcome in [&tokenized, &revealed] {
        for sample in &outcome.error_samples {
            eprintln!("vault-load: {sample}");
        }
    }
    if tokenized.error_count() + revealed.error_count() > 0 {
        bail!(
            "{} tokenizations and {} reveals failed",
            tokenized.error_count(),
            revealed.error_count()
        );
    }
    if tokenized.ok == 0 || revealed.ok == 0 {
        bail!("nothing was tokenized or revealed under load");
    }
    println!("tokenizations/s: {}", tokenized.rate().round());
    println!("reveals/s: {}", revealed.rate().round());
    println!("key-service requests per {COUNTED_TOKENIZATIONS} tokenizations: {key_requests}");
    Ok(())
}

/// A random Visa-like card number (16 digits, Luhn-valid).
fn new_card(rng: &mut impl RngExt) -> String {
    let mut digits: Vec<u8> = vec![4];
    digits.extend((0..14).map(|_| rng.random_range(0..10u8)));
    digits.push(check_digit(&digits));
    digits.iter().map(|d| char::from(b'0' + d)).collect()
}

/// The Luhn check digit for `payload`.
fn check_digit(payload: &[u8]) -> u8 {
    let sum: u32 = payload
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    u8::try_from((10 - sum % 10) % 10).unwrap_or(0)
}

fn key() -> String {
    format!("vl-{:032x}", rand::rng().random::<u128>())
}

/// Tokenizes `pan`: its token id, or the error answer.
async fn tokenize(conn: &mut Conn, pan: &str) -> Result<Result<String, String>> {
    let body = format!(
        r#"{{"pan":"{pan}","exp_month":12,"exp_year":2031,"cardholder_name":"Vault Load"}}"#
    );
    let answer = conn
        .post(Uri::from_static("/v1/cards"), Bytes::from(body), &key())
        .await?;
    if answer.status != StatusCode::CREATED {
        return Ok(Err(format!(
            "tokenize: {} {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        )));
    }
    let card: serde_json::Value = serde_json::from_slice(&answer.body).context("parse a card")?;
    Ok(card["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("tokenize: no id in {card}")))
}

/// What the clients of one phase saw.
#[derive(Debug)]
struct Outcome {
    elapsed: Duration,
    ok: u64,
    errors_by_status: BTreeMap<String, u64>,
    error_samples: Vec<String>,
    latency_us: Histogram<u64>,
    /// Cards tokenized: (token id, number).
    cards: Vec<(String, String)>,
}

impl Outcome {
    fn empty() -> Result<Outcome> {
        Ok(Outcome {
            elapsed: Duration::ZERO,
            ok: 0,
            errors_by_status: BTreeMap::new(),
            error_samples: Vec::new(),
            latency_us: Histogram::new_with_bounds(1, LATENCY_US_MAX, 3)
                .context("latency histogram")?,
            cards: Vec::new(),
        })
    }

    fn error(&mut self, kind: String, sample: String) {
        *self.errors_by_status.entry(kind).or_default() += 1;
        if self.error_samples.len() < ERROR_SAMPLES_MAX {
            self.error_samples.push(sample);
        }
    }

    fn record(&mut self, started: Instant) {
        let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let _ = self.latency_us.record(us.clamp(1, LATENCY_US_MAX));
    }

    fn merge(&mut self, other: Outcome) -> Result<()> {
        self.ok += other.ok;
        for (kind, n) in other.errors_by_status {
            *self.errors_by_status.entry(kind).or_default() += n;
        }
        for sample in other.error_samples {
            if self.error_samples.len() < ERROR_SAMPLES_MAX {
                self.error_samples.push(sample);
            }
        }
        self.cards.extend(other.cards);
        self.latency_us
            .add(&other.latency_us)
            .context("merge latency histograms")
    }

    fn error_count(&self) -> u64 {
        self.errors_by_status.values().sum()
    }

    fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    fn report(&self, name: &str) -> String {
        let ms = |q: f64| self.latency_us.value_at_quantile(q) as f64 / 1000.0;
        let errors = if self.errors_by_status.is_empty() {
            "0 errors".to_owned()
        } else {
            let parts: Vec<String> = self
                .errors_by_status
                .iter()
                .map(|(kind, n)| format!("{n} x {kind}"))
                .collect();
            format!("{} errors ({})", self.error_count(), parts.join(", "))
        };
        format!(
            "{:<24}{} ok in {:.2} s ({:.0}/s), {errors}; p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms\n",
            format!("{name}:"),
            self.ok,
            self.elapsed.as_secs_f64(),
            self.rate(),
            ms(0.5),
            ms(0.99),
            self.latency_us.max() as f64 / 1000.0
        )
    }
}

/// When a phase ends: after a number of successes in all, or at a time.
#[derive(Clone, Copy, Debug)]
enum Stop {
    After(usize),
    At(Duration),
}

async fn connect_all(target: &Target, clients: usize) -> Result<Vec<Conn>> {
    let mut conns = Vec::with_capacity(clients);
    for client in 0..clients {
        conns.push(
            target
                .connect()
                .await
                .with_context(|| format!("client {client}"))?,
        );
    }
    Ok(conns)
}

/// Every client's outcome added up, timed from `started`.
async fn join(
    mut tasks: tokio::task::JoinSet<Result<Outcome>>,
    started: Instant,
) -> Result<Outcome> {
    let mut total = Outcome::empty()?;
    while let Some(done) = tasks.join_next().await {
        total.merge(done.context("client task")??)?;
    }
    total.elapsed = started.elapsed();
    Ok(total)
}

async fn tokenize_load(target: &Target, clients: usize, stop: Stop) -> Result<Outcome> {
    let conns = connect_all(target, clients).await?;
    let started = Instant::now();
    let taken = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for mut conn in conns {
        let taken = taken.clone();
        tasks.spawn(async move {
            let mut outcome = Outcome::empty()?;
            let mut rng = SmallRng::from_rng(&mut rand::rng());
            loop {
                match stop {
                    Stop::After(n) if taken.fetch_add(1, Ordering::Relaxed) >= n => break,
                    Stop::At(duration) if started.elapsed() >= duration => break,
                    _ => {}
                }
                let pan = new_card(&mut rng);
                let sent = Instant::now();
                match tokenize(&mut conn, &pan).await {
                    Ok(Ok(id)) => {
                        outcome.record(sent);
                        outcome.ok += 1;
                        outcome.cards.push((id, pan));
                    }
                    Ok(Err(answer)) => {
                        outcome.record(sent);
                        let kind = answer.split(' ').take(2).collect::<Vec<_>>().join(" ");
                        outcome.error(kind, answer);
                    }
                    Err(lost) => {
                        outcome.error("lost connection".into(), format!("{lost:#}"));
                        break;
                    }
                }
            }
            anyhow::Ok(outcome)
        });
    }
    join(tasks, started).await
}

async fn reveal_load(
    target: &Target,
    clients: usize,
    duration: Duration,
    cards: &Arc<Vec<(String, String)>>,
) -> Result<Outcome> {
    if cards.is_empty() {
        bail!("no cards to reveal");
    }
    let uris: Arc<Vec<Uri>> = Arc::new(
        cards
            .iter()
            .map(|(id, _)| format!("/v1/cards/{id}/reveal").parse())
            .collect::<Result<_, _>>()
            .context("a reveal path")?,
    );
    let body = Bytes::from_static(br#"{"reason":"vault-load benchmark reveal"}"#);
    let conns = connect_all(target, clients).await?;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for mut conn in conns {
        let (cards, uris, body) = (cards.clone(), uris.clone(), body.clone());
        tasks.spawn(async move {
            let mut outcome = Outcome::empty()?;
            let mut rng = SmallRng::from_rng(&mut rand::rng());
            while started.elapsed() < duration {
                let i = rng.random_range(0..cards.len());
                let sent = Instant::now();
                let answer = match conn.post(uris[i].clone(), body.clone(), &key()).await {
                    Ok(answer) => answer,
                    Err(lost) => {
                        outcome.error("lost connection".into(), format!("{lost:#}"));
                        break;
                    }
                };
                outcome.record(sent);
                if answer.status != StatusCode::OK {
                    outcome.error(
                        format!("reveal {}", answer.status),
                        String::from_utf8_lossy(&answer.body).into_owned(),
                    );
                    continue;
                }
                let shown: serde_json::Value =
                    serde_json::from_slice(&answer.body).context("parse a reveal")?;
                if shown["pan"].as_str() == Some(cards[i].1.as_str()) {
                    outcome.ok += 1;
                } else {
                    outcome.error(
                        "wrong number".into(),
                        format!("card {} revealed another number", cards[i].0),
                    );
                }
            }
            anyhow::Ok(outcome)
        });
    }
    join(tasks, started).await
}

/// The key-service counters of `/metrics`.
#[derive(Debug, Clone, Copy)]
struct KeyCounters {
    /// `strongroom_key_service_requests_total`, every operation.
    requests: u64,
    /// `strongroom_key_service_remote_requests_total`.
    remote: u64,
}

async fn scrape(addr: SocketAddr) -> Result<KeyCounters> {
    let mut tcp = tokio::net::TcpStream::connect(addr)
        .await
        .context("connect to the metrics listener")?;
    tcp.write_all(b"GET /metrics HTTP/1.0\r\nHost: metrics\r\n\r\n")
        .await
        .context("ask for the metrics")?;
    let mut page = String::new();
    tcp.read_to_string(&mut page)
        .await
        .context("read the metrics")?;
    let sum = |name: &str| -> u64 {
        page.lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .map(|v| v as u64)
            .sum()
    };
    if !page.contains("strongroom_key_service_requests_total") {
        bail!("the metrics page has no strongroom_key_service_requests_total");
    }
    Ok(KeyCounters {
        requests: sum("strongroom_key_service_requests_total"),
        remote: sum("strongroom_key_service_remote_requests_total"),
    })
}

fn cores(cpu: Option<Duration>, elapsed: Duration) -> String {
    match cpu {
        Some(cpu) => format!(
            "{:.2} cores ({:.1} s CPU)",
            cpu.as_secs_f64() / elapsed.as_secs_f64().max(f64::MIN_POSITIVE),
            cpu.as_secs_f64()
        ),
        None => "unknown".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_cards_pass_luhn() {
        // Known numbers: the check digit of 4111 1111 1111 111 is 1; of 7992739871, 3.
        assert_eq!(
            check_digit(&[4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]),
            1
        );
        assert_eq!(check_digit(&[7, 9, 9, 2, 7, 3, 9, 8, 7, 1]), 3);
        let mut rng = rand::rng();
        for _ in 0..100 {
            let pan = new_card(&mut rng);
            assert_eq!(pan.len(), 16);
            let digits: Vec<u8> = pan.bytes().map(|b| b - b'0').collect();
            assert_eq!(check_digit(&digits[..15]), digits[15], "{pan}");
        }
    }
}
