//! Graceful shutdown: SIGTERM while large batches are in flight, over HTTP/1.1 and HTTP/2.
//! Requests the server had accepted get an answer (2xx, or 503 `shutting-down`), never a
//! reset; the process exits 0 within the grace period; whatever was acknowledged is in the
//! database after a restart.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::harness::{Api, PROBLEM_BASE, Process, Protocol, READ_WRITE, Req, transfer_body};

const WORKERS: usize = 6;
const ACCOUNTS: usize = 10;
/// Transfers per batch: the most a batch holds, so that each takes a while.
const BATCH_LEN: usize = 1000;
const GRACE: Duration = Duration::from_secs(10);
/// Shorter than a batch takes.
const SHORT_GRACE: Duration = Duration::from_millis(50);
/// What the ledger may take after the grace period to finish its queue and stop.
const DRAIN_SLACK: Duration = Duration::from_secs(5);
/// Load before the signal.
const LOAD: Duration = Duration::from_millis(1000);
/// A request sent this long before SIGTERM has surely reached the server: it was accepted.
/// (A 200 kB body on a local connection is sent in a few milliseconds; the rest is slack for
/// a busy machine.)
const ACCEPTED_MARGIN: Duration = Duration::from_millis(200);
/// The signal waits until this many accepted requests are in flight.
const ACCEPTED_IN_FLIGHT_MIN: usize = 2;

/// One batch request and what became of it.
#[derive(Debug)]
struct Outcome {
    started: Instant,
    finished: Instant,
    result: Result<(u16, Value), String>,
}

/// What the workers share: whether to stop starting requests, and when each one's current
/// request started.
#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    current: Mutex<Vec<Option<Instant>>>,
}

impl Shared {
    /// Requests in flight that started at least `ACCEPTED_MARGIN` ago.
    fn accepted_in_flight(&self) -> usize {
        let current = self.current.lock().unwrap();
        current
            .iter()
            .flatten()
            .filter(|started| started.elapsed() >= ACCEPTED_MARGIN)
            .count()
    }
}

async fn worker(
    api: Api,
    accounts: Arc<Vec<String>>,
    shared: Arc<Shared>,
    index: usize,
) -> Vec<Outcome> {
    let mut rng = StdRng::seed_from_u64(index as u64);
    let mut outcomes = Vec::new();
    let mut n = 0;
    while !shared.stop.load(Ordering::SeqCst) {
        let transfers: Vec<Value> = (0..BATCH_LEN)
            .map(|_| {
                let debit = rng.random_range(0..ACCOUNTS);
                let credit = (debit + rng.random_range(1..ACCOUNTS)) % ACCOUNTS;
                transfer_body(
                    &accounts[debit],
                    &accounts[credit],
                    rng.random_range(1..100u64),
                    "USD",
                )
            })
            .collect();
        let body = json!({"mode": "atomic", "transfers": transfers});
        let key = format!("batch-{index}-{n}");
        n += 1;
        let started = Instant::now();
        shared.current.lock().unwrap()[index] = Some(started);
        let result = api
            .try_send(Req::post("/v1/transfers/batch").key(&key).json(&body))
            .await
            .map(|r| (r.status, r.json))
            .map_err(|e| format!("{e:?}"));
        shared.current.lock().unwrap()[index] = None;
        let failed = result.is_err();
        outcomes.push(Outcome {
            started,
            finished: Instant::now(),
            result,
        });
        if failed {
            break;
        }
    }
    outcomes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_and_exits_zero() {
    // Everything in flight fits the grace period: the exit comes within it.
    run(GRACE, true, GRACE).await;
}

/// With a grace period shorter than the work in flight, connections are cut when it ends: some
/// requests get no answer (their outcome is unknown to the client, which is allowed), but the
/// process still exits 0 promptly and nothing acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_short_grace_still_exits_zero_and_keeps_what_was_acknowledged() {
    run(SHORT_GRACE, false, SHORT_GRACE + DRAIN_SLACK).await;
}

async fn run(grace: Duration, answers_required: bool, exit_limit: Duration) {
    let dir = tempfile::tempdir().unwrap();
    let grace_ms = grace.as_millis().to_string();
    let mut process = Process::spawn(dir.path(), &[("shutdown_grace_ms", &grace_ms)]);
    let api = process.api("acme");
    let mut accounts = Vec::new();
    for _ in 0..ACCOUNTS {
        accounts.push(api.account("USD", "credit", "none").await);
    }
    let accounts = Arc::new(accounts);
    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        current: Mutex::new(vec![None; WORKERS]),
    });
    let mut workers = JoinSet::new();
    for index in 0..WORKERS {
        // Half the workers speak HTTP/1.1, half HTTP/2: both must drain.
        let protocol = if index % 2 == 0 {
            Protocol::Negotiated
        } else {
            Protocol::Http1
        };
        let client = Api::new(&process.url, &process.cert_pem, protocol)
            .with_token(&process.tokens.mint("acme", READ_WRITE));
        workers.spawn(worker(client, accounts.clone(), shared.clone(), index));
    }

    tokio::time::sleep(LOAD).await;
    let waiting = Instant::now();
    while shared.accepted_in_flight() < ACCEPTED_IN_FLIGHT_MIN {
        assert!(
            waiting.elapsed() < Duration::from_secs(20),
            "no load builds up"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    shared.stop.store(true, Ordering::SeqCst);
    let term_at = Instant::now();
    process.terminate();
    let status = process.wait_exit(exit_limit).await;
    let exit_after = term_at.elapsed();
    let outcomes: Vec<Outcome> = workers.join_all().await.into_iter().flatten().collect();
    let status = status.expect("the process did not exit");
    assert_eq!(status.code(), Some(0), "exit status {status}");
    assert!(exit_after <= exit_limit, "exit took {exit_after:?}");

    let acked = check_outcomes(&outcomes, term_at, answers_required);
    let (_, stderr) = process.output();
    assert!(!stderr.iter().any(|l| l.contains("panicked")), "{stderr:?}");
    let unknown = outcomes.iter().filter(|o| o.result.is_err()).count();
    check_after_restart(dir.path(), &acked, unknown).await;
}

/// After a restart: every acknowledged transfer is there; when every request got an answer,
/// nothing else is.
async fn check_after_restart(dir: &std::path::Path, acked: &BTreeSet<String>, unknown: usize) {
    let restarted = Process::spawn(dir, &[]);
    let api = restarted.api("acme");
    let listed = api.list_all("/v1/transfers").await;
    let ids: BTreeSet<String> = listed
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), listed.len());
    let missing: Vec<&String> = acked.iter().filter(|id| !ids.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged transfers lost, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    println!(
        "{} transfers acknowledged, {} in the database",
        acked.len(),
        ids.len()
    );
    if unknown == 0 {
        assert_eq!(
            ids.len(),
            acked.len(),
            "transfers nobody acknowledged were posted"
        );
    }
    api.assert_balanced().await;
}

/// Checks every answer, and that accepted requests were answered; returns the acknowledged
/// transfer ids.
fn check_outcomes(
    outcomes: &[Outcome],
    term_at: Instant,
    answers_required: bool,
) -> BTreeSet<String> {
    let mut acked = BTreeSet::new();
    let (mut posted, mut refused, mut accepted_in_flight) = (0, 0, 0);
    for outcome in outcomes {
        let accepted = outcome.started + ACCEPTED_MARGIN <= term_at;
        match &outcome.result {
            Ok((201, body)) => {
                posted += 1;
                let results = body["results"].as_array().unwrap();
                assert_eq!(results.len(), BATCH_LEN);
                for r in results {
                    acked.insert(r["transfer"]["id"].as_str().unwrap().to_owned());
                }
            }
            Ok((503, body)) => {
                refused += 1;
                assert_eq!(
                    body["type"],
                    format!("{PROBLEM_BASE}shutting-down"),
                    "{body}"
                );
            }
            Ok((status, body)) => panic!("answered {status}: {body}"),
            Err(e) => assert!(
                !(accepted && answers_required),
                "an accepted request got no answer: {e}"
            ),
        }
        if accepted && outcome.finished > term_at {
            accepted_in_flight += 1;
        }
    }
    println!(
        "{} requests: {posted} posted, {refused} refused while shutting down, {} without \
         answer; {accepted_in_flight} accepted and in flight at the signal",
        outcomes.len(),
        outcomes.iter().filter(|o| o.result.is_err()).count()
    );
    assert!(posted > 0, "nothing was posted");
    assert!(
        accepted_in_flight > 0,
        "no accepted request was in flight at the signal"
    );
    acked
}
