//! The load: `clients` connections, each posting transfers back to back until the deadline.
//!
//! Request bodies are formatted before the clock starts, into a pool that every client picks
//! from at random; a body may be sent many times, each time under a new `Idempotency-Key`, which
//! makes it a new transfer. The pool records each body's transfer count and amount total, so the
//! books can be checked against exactly what was acknowledged.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use hdrhistogram::Histogram;
use hyper::Uri;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

use crate::http::Target;

/// Bodies in the pool for single transfers.
pub const SINGLE_POOL_LEN: usize = 4096;
/// Bodies in the pool for batches (each up to 1000 transfers, about 150 KiB).
pub const BATCH_POOL_LEN: usize = 16;
/// Smallest and largest transfer amount, in minor units.
pub const AMOUNT_MINOR_RANGE: std::ops::RangeInclusive<u64> = 1..=100_000;
/// Highest latency the histogram tracks, in microseconds (beyond the client's own timeout).
const LATENCY_US_MAX: u64 = 60_000_000;
/// Significant digits the histogram keeps.
const LATENCY_SIGFIG: u8 = 3;
/// Error bodies kept for the report.
const ERROR_SAMPLES_MAX: usize = 3;

/// One request body, ready to send.
#[derive(Debug, Clone)]
struct Body {
    json: Bytes,
    /// Sum of the amounts of its transfers.
    amount_minor: u64,
}

/// The bodies the clients send, and where.
#[derive(Debug)]
pub struct Pool {
    bodies: Vec<Body>,
    uri: Uri,
    /// Transfers per request.
    pub transfers_per_request: u64,
}

impl Pool {
    /// Formats the pool: single transfers (`batch_len` 0) or atomic batches of `batch_len`,
    /// each transfer between two distinct random accounts.
    pub fn new(account_ids: &[String], batch_len: usize) -> Pool {
        let mut rng = rand::rng();
        let (len, per_body, uri) = match batch_len {
            0 => (SINGLE_POOL_LEN, 1, "/v1/transfers"),
            n => (BATCH_POOL_LEN, n, "/v1/transfers/batch"),
        };
        let bodies = (0..len)
            .map(|_| {
                let mut amount_minor = 0;
                let mut transfers = Vec::with_capacity(per_body);
                for _ in 0..per_body {
                    let (d, c) = distinct_pair(&mut rng, account_ids.len());
                    let amount = rng.random_range(AMOUNT_MINOR_RANGE);
                    amount_minor += amount;
                    transfers.push(transfer_json(&account_ids[d], &account_ids[c], amount));
                }
                let json = match batch_len {
                    0 => transfers.concat(),
                    _ => format!(
                        r#"{{"mode":"atomic","transfers":[{}]}}"#,
                        transfers.join(",")
                    ),
                };
                Body {
                    json: Bytes::from(json),
                    amount_minor,
                }
            })
            .collect();
        Pool {
            bodies,
            uri: Uri::from_static(uri),
            transfers_per_request: per_body as u64,
        }
    }
}

fn distinct_pair(rng: &mut impl RngExt, len: usize) -> (usize, usize) {
    let d = rng.random_range(0..len);
    let c = rng.random_range(0..len - 1);
    (d, if c >= d { c + 1 } else { c })
}

fn transfer_json(debit: &str, credit: &str, amount_minor: u64) -> String {
    format!(
        r#"{{"debit_account_id":"{debit}","credit_account_id":"{credit}","amount":{amount_minor},"currency":"USD"}}"#
    )
}

/// What the clients saw, added up.
#[derive(Debug)]
pub struct Outcome {
    /// Wall time from the first request to the last answer.
    pub elapsed: Duration,
    /// Requests answered (any status).
    pub requests: u64,
    /// Transfers in 2xx answers.
    pub acknowledged: u64,
    /// Sum of their amounts.
    pub acknowledged_amount_minor: u128,
    /// Non-2xx answers by status.
    pub errors_by_status: BTreeMap<u16, u64>,
    /// Clients that lost their connection, with why.
    pub transport_errors: Vec<String>,
    /// A few error bodies.
    pub error_samples: Vec<String>,
    /// Latency of answered requests, in microseconds.
    pub latency_us: Histogram<u64>,
}

impl Outcome {
    fn empty() -> Result<Outcome> {
        Ok(Outcome {
            elapsed: Duration::ZERO,
            requests: 0,
            acknowledged: 0,
            acknowledged_amount_minor: 0,
            errors_by_status: BTreeMap::new(),
            transport_errors: Vec::new(),
            error_samples: Vec::new(),
            latency_us: Histogram::new_with_bounds(1, LATENCY_US_MAX, LATENCY_SIGFIG)
                .context("latency histogram")?,
        })
    }

    fn merge(&mut self, other: Outcome) -> Result<()> {
        self.requests += other.requests;
        self.acknowledged += other.acknowledged;
        self.acknowledged_amount_minor += other.acknowledged_amount_minor;
        for (status, n) in other.errors_by_status {
            *self.errors_by_status.entry(status).or_default() += n;
        }
        self.transport_errors.extend(other.transport_errors);
        for sample in other.error_samples {
            if self.error_samples.len() < ERROR_SAMPLES_MAX {
                self.error_samples.push(sample);
            }
        }
        self.latency_us
            .add(&other.latency_us)
            .context("merge latency histograms")
    }

    /// Failed requests and lost connections.
    pub fn error_count(&self) -> u64 {
        self.errors_by_status.values().sum::<u64>() + self.transport_errors.len() as u64
    }
}

/// Connects every client, then runs them all for `duration`.
pub async fn run(
    target: &Target,
    pool: Arc<Pool>,
    clients: usize,
    duration: Duration,
) -> Result<Outcome> {
    // Connect first, so that TLS handshakes do not count against the measured time.
    let mut conns = Vec::with_capacity(clients);
    for client in 0..clients {
        conns.push(
            target
                .connect()
                .await
                .with_context(|| format!("client {client}"))?,
        );
    }
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for (client, conn) in conns.into_iter().enumerate() {
        tasks.spawn(client_loop(client, conn, pool.clone(), deadline));
    }
    let mut total = Outcome::empty()?;
    while let Some(done) = tasks.join_next().await {
        total.merge(done.context("client task")??)?;
    }
    total.elapsed = started.elapsed();
    Ok(total)
}

async fn client_loop(
    client: usize,
    mut conn: crate::http::Conn,
    pool: Arc<Pool>,
    deadline: Instant,
) -> Result<Outcome> {
    let mut outcome = Outcome::empty()?;
    let mut rng = SmallRng::from_rng(&mut rand::rng());
    let mut key = String::with_capacity(32);
    let mut seq = 0u64;
    while Instant::now() < deadline {
        let body = &pool.bodies[rng.random_range(0..pool.bodies.len())];
        key.clear();
        let _ = write!(key, "load-{client}-{seq}");
        seq += 1;
        let sent = Instant::now();
        let answer = match conn.post(pool.uri.clone(), body.json.clone(), &key).await {
            Ok(answer) => answer,
            Err(e) => {
                outcome
                    .transport_errors
                    .push(format!("client {client}: {e:#}"));
                break;
            }
        };
        let latency_us = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
        outcome.latency_us.saturating_record(latency_us.max(1));
        outcome.requests += 1;
        if answer.status.is_success() {
            outcome.acknowledged += pool.transfers_per_request;
            outcome.acknowledged_amount_minor += u128::from(body.amount_minor);
        } else {
            *outcome
                .errors_by_status
                .entry(answer.status.as_u16())
                .or_default() += 1;
            if outcome.error_samples.len() < ERROR_SAMPLES_MAX {
                outcome.error_samples.push(format!(
                    "{}: {}",
                    answer.status,
                    String::from_utf8_lossy(&answer.body)
                ));
            }
        }
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("acct_{i}")).collect()
    }

    #[test]
    fn pairs_are_distinct_and_cover_every_account() {
        let mut rng = SmallRng::seed_from_u64(7);
        let mut seen = [false; 3];
        for _ in 0..1000 {
            let (d, c) = distinct_pair(&mut rng, 3);
            assert_ne!(d, c);
            seen[d] = true;
            seen[c] = true;
        }
        assert_eq!(seen, [true; 3]);
    }

    #[test]
    fn single_bodies_are_transfers() {
        let pool = Pool::new(&ids(2), 0);
        assert_eq!(pool.bodies.len(), SINGLE_POOL_LEN);
        assert_eq!(pool.transfers_per_request, 1);
        assert_eq!(pool.uri.path(), "/v1/transfers");
        for body in &pool.bodies {
            let v: serde_json::Value = serde_json::from_slice(&body.json).expect("JSON");
            assert_ne!(v["debit_account_id"], v["credit_account_id"]);
            assert_eq!(v["amount"].as_u64(), Some(body.amount_minor));
            assert_eq!(v["currency"], "USD");
        }
    }

    #[test]
    fn batch_bodies_are_atomic_batches_whose_amounts_add_up() {
        let pool = Pool::new(&ids(10), 5);
        assert_eq!(pool.bodies.len(), BATCH_POOL_LEN);
        assert_eq!(pool.transfers_per_request, 5);
        assert_eq!(pool.uri.path(), "/v1/transfers/batch");
        for body in &pool.bodies {
            let v: serde_json::Value = serde_json::from_slice(&body.json).expect("JSON");
            assert_eq!(v["mode"], "atomic");
            let transfers = v["transfers"].as_array().expect("transfers");
            assert_eq!(transfers.len(), 5);
            let sum: u64 = transfers.iter().filter_map(|t| t["amount"].as_u64()).sum();
            assert_eq!(sum, body.amount_minor);
        }
    }
}
