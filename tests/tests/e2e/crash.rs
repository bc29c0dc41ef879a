//! Crash safety: the real process is killed with SIGKILL while clients post transfers; after a
//! restart on the same data directory, every acknowledged transfer is there exactly once, a
//! replay of its key returns it instead of posting again, and the books balance to the cent.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::Value;
use tokio::task::JoinSet;

use crate::harness::{Api, Process, column, transfer_body};

const CLIENTS: usize = 8;
const ACCOUNTS: usize = 20;
/// How long the clients post before the kill.
const LOAD: Duration = Duration::from_secs(3);

/// A transfer the server acknowledged (201): its key, its body, the id it got.
#[derive(Clone, Debug)]
struct Ack {
    key: String,
    body: Value,
    id: String,
}

/// What the clients saw.
#[derive(Debug, Default)]
struct Seen {
    acks: Mutex<Vec<Ack>>,
    /// Answers other than 201 (none are expected: no account has a constraint).
    odd: Mutex<Vec<String>>,
    in_flight: AtomicUsize,
    stop: AtomicBool,
}

async fn client(api: Api, accounts: Arc<Vec<String>>, seen: Arc<Seen>, index: usize) {
    let mut rng = StdRng::seed_from_u64(index as u64);
    let mut n = 0;
    while !seen.stop.load(Ordering::SeqCst) {
        let debit = rng.random_range(0..ACCOUNTS);
        let credit = (debit + rng.random_range(1..ACCOUNTS)) % ACCOUNTS;
        let amount = rng.random_range(1..=1_000u64);
        let body = transfer_body(&accounts[debit], &accounts[credit], amount, "USD");
        let key = format!("crash-{index}-{n}");
        n += 1;
        seen.in_flight.fetch_add(1, Ordering::SeqCst);
        let result = api
            .try_send(
                crate::harness::Req::post("/v1/transfers")
                    .key(&key)
                    .json(&body),
            )
            .await;
        seen.in_flight.fetch_sub(1, Ordering::SeqCst);
        match result {
            Ok(reply) if reply.status == 201 => seen.acks.lock().unwrap().push(Ack {
                key,
                body,
                id: reply.str("id").to_owned(),
            }),
            Ok(reply) => seen
                .odd
                .lock()
                .unwrap()
                .push(format!("{}: {}", reply.status, reply.json)),
            // The server is gone (or going): the outcome is unknown, which is allowed.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut process = Process::spawn(dir.path(), &[]);
    let api = process.api("acme");
    let mut accounts = Vec::new();
    for _ in 0..ACCOUNTS {
        accounts.push(api.account("USD", "credit", "none").await);
    }
    let accounts = Arc::new(accounts);

    let seen = Arc::new(Seen::default());
    let mut clients = JoinSet::new();
    for index in 0..CLIENTS {
        // Each client on its own connection.
        let api = process.api("acme");
        clients.spawn(client(api, accounts.clone(), seen.clone(), index));
    }
    // The books balance at every instant, not only at rest.
    let auditor = {
        let api = process.api("acme");
        let seen = seen.clone();
        tokio::spawn(async move {
            let mut checked = 0;
            while !seen.stop.load(Ordering::SeqCst) {
                if let Ok(reply) = api
                    .try_send(crate::harness::Req::get("/v1/trial-balance"))
                    .await
                {
                    reply.expect(200);
                    assert_eq!(reply.json["balanced"], true, "{}", reply.json);
                    checked += 1;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            checked
        })
    };
    tokio::time::sleep(LOAD).await;
    let in_flight = seen.in_flight.load(Ordering::SeqCst);
    process.kill();
    seen.stop.store(true, Ordering::SeqCst);
    clients.join_all().await;
    let checked = auditor.await.unwrap();
    assert!(checked > 0, "no trial balance was taken under load");
    assert!(
        in_flight > 0,
        "the kill should land with requests in flight"
    );
    assert!(seen.odd.lock().unwrap().is_empty(), "{:?}", seen.odd);
    let acks = seen.acks.lock().unwrap().clone();
    assert!(
        acks.len() >= 50,
        "only {} transfers acknowledged",
        acks.len()
    );
    println!(
        "{} acknowledged, {in_flight} in flight at the kill",
        acks.len()
    );

    let restarted = Process::spawn(dir.path(), &[]);
    let api = restarted.api("acme");
    let listed = api.list_all("/v1/transfers").await;
    let ids: BTreeSet<&str> = listed.iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), listed.len(), "a transfer is listed twice");
    assert!(listed.len() >= acks.len());

    check_acks(&api, &acks, &ids).await;
    let after_replays = api.list_all("/v1/transfers").await;
    assert_eq!(after_replays.len(), listed.len(), "a replay posted again");

    api.assert_balanced().await;
    check_balances(&api, &accounts, &listed).await;
}

/// Every acknowledged transfer is there as acknowledged, and its replay returns it.
async fn check_acks(api: &Api, acks: &[Ack], ids: &BTreeSet<&str>) {
    for ack in acks {
        assert!(
            ids.contains(ack.id.as_str()),
            "{} is missing from the list",
            ack.id
        );
    }
    for chunk in acks.chunks(32) {
        let mut tasks = JoinSet::new();
        for ack in chunk.iter().cloned() {
            let api = api.clone();
            tasks.spawn(async move {
                let got = api.get(&format!("/v1/transfers/{}", ack.id)).await;
                got.expect(200);
                for field in [
                    "debit_account_id",
                    "credit_account_id",
                    "amount",
                    "currency",
                ] {
                    assert_eq!(got.json[field], ack.body[field], "{}", ack.id);
                }
                assert_eq!(got.json["state"], "posted");
                let replay = api.post("/v1/transfers", &ack.key, &ack.body).await;
                replay.expect(201);
                assert!(replay.replayed(), "{}: not a replay", ack.key);
                assert_eq!(replay.str("id"), ack.id, "{}: another transfer", ack.key);
            });
        }
        tasks.join_all().await;
    }
}

/// Each account's balance is the sum of the listed transfers that touch it.
async fn check_balances(api: &Api, accounts: &[String], listed: &[Value]) {
    let mut sums: BTreeMap<&str, (i128, i128)> = BTreeMap::new();
    for t in listed {
        let amount = i128::from(t["amount"].as_u64().unwrap());
        sums.entry(t["debit_account_id"].as_str().unwrap())
            .or_default()
            .0 += amount;
        sums.entry(t["credit_account_id"].as_str().unwrap())
            .or_default()
            .1 += amount;
    }
    for account in accounts {
        let (debits, credits) = sums.get(account.as_str()).copied().unwrap_or_default();
        let got = api.get_account(account).await;
        let b = &got["balances"];
        assert_eq!(
            (column(b, "debits_posted"), column(b, "credits_posted")),
            (debits, credits),
            "{account}"
        );
        assert_eq!(column(b, "posted"), credits - debits, "{account}");
        let entries = got["entry_count"].as_u64().unwrap();
        let touching = listed
            .iter()
            .filter(|t| {
                t["debit_account_id"] == account.as_str()
                    || t["credit_account_id"] == account.as_str()
            })
            .count();
        assert_eq!(
            entries, touching as u64,
            "{account}: one entry per transfer"
        );
    }
}
