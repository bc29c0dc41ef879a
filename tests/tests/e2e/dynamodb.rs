//! Stateless: two `strongroom serve` processes on one DynamoDB table (moto, through the real AWS
//! SDK) post concurrently to the same accounts, and every idempotency key is sent to both.
//! Afterwards each key posted exactly once, both processes answered it alike, no update was
//! lost, and the books balance. The same holds with a proxy between the SDK and DynamoDB that
//! throttles, fails, and drops answers after the write applied.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{
    Api, FaultyProxy, Process, dynamodb_settings, metric, scrape, transfer_body, unique_key,
};

/// Transfers posted, each sent to both processes at once.
const TRANSFERS: usize = 40;
/// Accounts they move money between: few, so that the two processes contend.
const ACCOUNTS: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_share_one_table_without_losing_or_doubling_a_posting() {
    let settings = dynamodb_settings();
    let settings: Vec<(&str, &str)> = settings.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Process::spawn(dir_a.path(), &settings);
    let b = Process::spawn(dir_b.path(), &settings);
    assert_ne!(a.url, b.url);
    let (api_a, api_b) = (a.api("acme"), b.api("acme"));
    let accounts = open_accounts(&api_a).await;
    // Written through one process, read through the other: no state lives in a process.
    api_b.get_account(&accounts[0]).await;
    post_everywhere_and_check(&[api_a.clone(), api_b.clone()], &accounts).await;
    // A cursor one process handed out continues on the other: they share the cursor key.
    let first = api_a.get("/v1/transfers?limit=5").await;
    first.expect(200);
    let rest = api_b
        .get(&format!(
            "/v1/transfers?limit=500&cursor={}",
            first.str("next_cursor")
        ))
        .await;
    rest.expect(200);
    assert_eq!(rest.json["data"].as_array().unwrap().len(), TRANSFERS - 5);
    stop(vec![a, b]).await;
}

/// Faults between the SDK and DynamoDB: throttling, 500s, and writes whose answer is lost after
/// they applied. Every request still ends with an answer or a clear error, nothing acknowledged
/// is lost, nothing is applied twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn faults_between_the_sdk_and_dynamodb_lose_nothing_and_double_nothing() {
    let settings = dynamodb_settings();
    let moto = settings
        .iter()
        .find(|(n, _)| *n == "dynamodb_endpoint")
        .map(|(_, v)| v.clone())
        .unwrap();
    let proxy = FaultyProxy::start(&moto).await;
    let mut settings: Vec<(&str, &str)> = settings
        .iter()
        .filter(|(n, _)| *n != "dynamodb_endpoint")
        .map(|(n, v)| (*n, v.as_str()))
        .collect();
    settings.push(("dynamodb_endpoint", proxy.url.as_str()));
    settings.push(("metrics_listen", "127.0.0.1:0"));
    let dir = tempfile::tempdir().unwrap();
    let process = Process::spawn(dir.path(), &settings);
    let api = process.api("acme");
    let accounts = open_accounts_until_answered(&api).await;
    post_everywhere_and_check(&[api.clone(), api], &accounts).await;

    let counts = &proxy.counts;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        load(&counts.throttled) > 0 && load(&counts.server_errors) > 0 && load(&counts.dropped) > 0,
        "{counts:?}"
    );
    // Every retry is counted in the metrics, by reason, and no more than the proxy caused:
    // scraped first, so that the proxy's counts (read after) include every fault counted.
    let metrics_url = process
        .stderr
        .lock()
        .unwrap()
        .iter()
        .find_map(|line| line.strip_prefix("metrics on ").map(str::to_owned))
        .expect("the metrics banner line");
    let page = scrape(&metrics_url).await;
    let retries = |reason: &str| {
        metric(
            &page,
            &format!("strongroom_dynamodb_retries_total{{reason=\"{reason}\"}}"),
        )
    };
    let faults = [
        ("throttled", load(&counts.throttled)),
        ("server", load(&counts.server_errors)),
        ("network", load(&counts.dropped)),
    ];
    for (reason, caused) in faults {
        let counted = retries(reason);
        // An attempt that times out on a slow server also counts as `network`.
        let bounded = reason == "network" || counted <= caused as f64;
        assert!(
            counted >= 1.0 && bounded,
            "{reason}: {counted} retries counted, {caused} faults caused"
        );
    }
    assert!(metric(&page, "strongroom_dynamodb_requests_total") > 0.0);
    assert!(metric(&page, "strongroom_dynamodb_transactions_total") > 0.0);
    assert!(metric(&page, "strongroom_dynamodb_write_units_sized_total") > 0.0);
    let logs = process.stdout.lock().unwrap().join("\n");
    for reason in ["Throttled", "Server", "Network"] {
        assert!(
            logs.lines()
                .any(|line| line.contains("DynamoDB call failed; retrying")
                    && line.contains(&format!("\"reason\":\"{reason}\""))),
            "no logged retry for {reason}"
        );
    }
    stop(vec![process]).await;
}

/// One DynamoDB transaction holds 100 writes: a request fits by the accounts it names (a head
/// and an entry page each), not by its legs, and one that cannot fit is refused whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_fits_one_transaction_by_the_accounts_it_names() {
    let settings = dynamodb_settings();
    let settings: Vec<(&str, &str)> = settings.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let dir = tempfile::tempdir().unwrap();
    let process = Process::spawn(dir.path(), &settings);
    let api = process.api("acme");
    let mut accounts = Vec::new();
    for _ in 0..50 {
        accounts.push(api.account("USD", "debit", "none").await);
    }
    let batch = |pairs: Vec<(usize, usize)>| {
        let transfers: Vec<Value> = pairs
            .into_iter()
            .map(|(d, c)| transfer_body(&accounts[d], &accounts[c], 7, "USD"))
            .collect();
        json!({ "transfers": transfers })
    };
    // 24 transfers between 48 accounts: 1 key + 1 pack of 24 transfers + 48 heads + 48 pages
    // = 98.
    let spread = batch((0..24).map(|i| (i, i + 24)).collect());
    api.post("/v1/transfers/batch", &unique_key("fits"), &spread)
        .await
        .expect(201);
    // 25 between 50: 102, with the audit block and the room kept for a stream's registry row
    // 104, refused whole. (24 above: 98 + 2.)
    let over = batch((0..25).map(|i| (i, i + 25)).collect());
    let refused = api
        .post("/v1/transfers/batch", &unique_key("over"), &over)
        .await;
    refused.expect_problem(422, "too-large");
    assert_eq!(
        (refused.json["items"].clone(), refused.json["max"].clone()),
        (json!(104), json!(100))
    );
    assert_eq!(
        api.list_all("/v1/transfers").await.len(),
        24,
        "nothing posts"
    );
    // 40 among 10 accounts: 1 + 1 + 10 + 10 = 22, where an item per transfer and a head and an
    // entry per leg would be 201.
    let hot = batch((0..40).map(|i| (i % 10, (i + 1) % 10)).collect());
    api.post("/v1/transfers/batch", &unique_key("hot"), &hot)
        .await
        .expect(201);
    assert_eq!(api.list_all("/v1/transfers").await.len(), 64);
    let first = api.get_account(&accounts[0]).await;
    assert_eq!(first["entry_count"], json!(1 + 8));
    api.assert_balanced().await;
    stop(vec![process]).await;
}

async fn open_accounts(api: &Api) -> Vec<String> {
    let mut accounts = Vec::new();
    for _ in 0..ACCOUNTS {
        accounts.push(api.account("USD", "debit", "none").await);
    }
    accounts
}

/// Opens the accounts, retrying a refused request with its key.
async fn open_accounts_until_answered(api: &Api) -> Vec<String> {
    let mut accounts = Vec::new();
    for _ in 0..ACCOUNTS {
        let key = unique_key("acct");
        let body = json!({"currency": "USD", "normal_side": "debit", "balance_constraint": "none"});
        let answer = until_answered(api, "/v1/accounts", &key, &body).await;
        accounts.push(answer["id"].as_str().unwrap().to_owned());
    }
    accounts
}

/// Posts until the ledger answers for good: a 503 (contention, or the store unavailable after
/// its retries) is a clear refusal that the client may retry with the same key.
async fn until_answered(api: &Api, path: &str, key: &str, body: &Value) -> Value {
    for _ in 0..50 {
        let reply = api.post(path, key, body).await;
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

/// Sends every transfer to each of `apis` at once (the same key to all), then checks that each
/// key posted once, that all answers for a key agree, and that every balance is exact.
async fn post_everywhere_and_check(apis: &[Api], accounts: &[String]) {
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
        for api in apis {
            let (api, key, body) = (api.clone(), key.clone(), body.clone());
            tasks.push(tokio::spawn(async move {
                let answer = until_answered(&api, "/v1/transfers", &key, &body).await;
                (key, answer)
            }));
        }
    }
    let mut answers: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for task in tasks {
        let (key, answer) = task.await.unwrap();
        answers.entry(key).or_default().push(answer);
    }
    assert_eq!(answers.len(), TRANSFERS);
    for (key, all) in &answers {
        assert_eq!(all.len(), apis.len());
        assert!(
            all.iter().all(|a| *a == all[0]),
            "{key}: answers differ: {all:?}"
        );
    }
    let mut total_entries = 0;
    for api in apis.iter().take(2) {
        let transfers = api.list_all("/v1/transfers").await;
        assert_eq!(
            transfers.len(),
            TRANSFERS,
            "a key posted twice or not at all"
        );
        total_entries = 0;
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
            total_entries += entries.len();
        }
        api.assert_balanced().await;
    }
    assert_eq!(total_entries, 2 * TRANSFERS);
}

async fn stop(processes: Vec<Process>) {
    for process in &processes {
        process.terminate();
    }
    for mut process in processes {
        let status = process.wait_exit(Duration::from_secs(30)).await;
        assert!(status.is_some_and(|s| s.success()), "{status:?}");
    }
}
