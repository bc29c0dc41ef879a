//! Stateless: two `strongroom serve` processes on one DynamoDB table (moto, through the real AWS
//! SDK) post concurrently to the same accounts, and every idempotency key is sent to both.
//! Afterwards each key posted exactly once, both processes answered it alike, no update was
//! lost, and the books balance.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Api, Process, dynamodb_settings, transfer_body, unique_key};

/// Transfers posted, each sent to both processes at once.
const TRANSFERS: usize = 40;
/// Accounts they move money between: few, so that the two processes contend.
const ACCOUNTS: usize = 4;

/// Posts until the ledger answers for good: a 503 (contention between the processes, or
/// overload) is a clear refusal that the client may retry with the same key.
async fn post_until_answered(api: &Api, key: &str, body: &Value) -> Value {
    for _ in 0..50 {
        let reply = api.post("/v1/transfers", key, body).await;
        match reply.status {
            201 => return reply.json,
            503 => {
                reply.assert_problem_shape();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => panic!("{key}: {other} {}", reply.json),
        }
    }
    panic!("{key}: still refused after 50 tries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_share_one_table_without_losing_or_doubling_a_posting() {
    let settings = dynamodb_settings();
    let settings: Vec<(&str, &str)> = settings.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Process::spawn(dir_a.path(), &settings);
    let b = Process::spawn(dir_b.path(), &settings);
    assert_ne!(a.url, b.url);
    let (api_a, api_b) = (a.api("acme"), b.api("acme"));

    let mut accounts = Vec::new();
    for _ in 0..ACCOUNTS {
        accounts.push(api_a.account("USD", "debit", "none").await);
    }
    // Written through one process, read through the other: no state lives in a process.
    api_b.get_account(&accounts[0]).await;

    let mut expected: BTreeMap<String, i128> = accounts.iter().map(|id| (id.clone(), 0)).collect();
    let mut tasks = Vec::new();
    for i in 0..TRANSFERS {
        let debit = &accounts[i % ACCOUNTS];
        let credit = &accounts[(i + 1 + i / ACCOUNTS) % ACCOUNTS];
        let credit = if credit == debit {
            &accounts[(i + 2) % ACCOUNTS]
        } else {
            credit
        };
        let amount = 100 + i as u64;
        *expected.get_mut(debit).unwrap() += i128::from(amount);
        *expected.get_mut(credit).unwrap() -= i128::from(amount);
        let body = transfer_body(debit, credit, amount, "USD");
        let key = unique_key("both");
        for api in [api_a.clone(), api_b.clone()] {
            let (key, body) = (key.clone(), body.clone());
            tasks.push(tokio::spawn(async move {
                (key.clone(), post_until_answered(&api, &key, &body).await)
            }));
        }
    }
    let mut answers: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for task in tasks {
        let (key, answer) = task.await.unwrap();
        answers.entry(key).or_default().push(answer);
    }
    assert_eq!(answers.len(), TRANSFERS);
    for (key, pair) in &answers {
        assert_eq!(pair.len(), 2);
        assert_eq!(
            pair[0], pair[1],
            "{key}: the two processes answered differently"
        );
    }

    // Exactly one transfer per key, and every balance is the sum of its postings.
    for api in [&api_a, &api_b] {
        let transfers = api.list_all("/v1/transfers").await;
        assert_eq!(
            transfers.len(),
            TRANSFERS,
            "a key posted twice or not at all"
        );
        for (id, net) in &expected {
            let account = api.get_account(id).await;
            let balances = &account["balances"];
            let posted = i128::from(balances["debits_posted"].as_u64().unwrap())
                - i128::from(balances["credits_posted"].as_u64().unwrap());
            assert_eq!(
                posted, *net,
                "{id}: a posting was lost or doubled: {account}"
            );
            let entries = api.list_all(&format!("/v1/accounts/{id}/entries")).await;
            assert_eq!(json!(entries.len()), account["entry_count"], "{id}");
        }
        api.assert_balanced().await;
    }
    let total_entries: u64 = {
        let mut n = 0;
        for id in expected.keys() {
            n += api_a.get_account(id).await["entry_count"].as_u64().unwrap();
        }
        n
    };
    assert_eq!(total_entries, 2 * TRANSFERS as u64);

    for process in [&a, &b] {
        process.terminate();
    }
    let (mut a, mut b) = (a, b);
    for process in [&mut a, &mut b] {
        let status = process.wait_exit(Duration::from_secs(30)).await;
        assert!(status.is_some_and(|s| s.success()), "{status:?}");
    }
}
