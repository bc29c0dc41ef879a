//! The ledger's rules as a client meets them over HTTP: holds expire by themselves, a balance
//! constraint holds under concurrent debits, batches are atomic or independent, listings page
//! with cursors, and a write that timed out can be retried safely with its key.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::harness::{Instance, column, transfer_body, unique_key};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_hold_is_voided_by_the_ledger() {
    let instance = Instance::start_with(&[("hold_sweep_ms", "20")]).await;
    let api = instance.api("acme");
    let cash = api.account("USD", "debit", "none").await;
    let wallet = api
        .account("USD", "credit", "debits_must_not_exceed_credits")
        .await;
    api.transfer(&cash, &wallet, 100, "USD").await;
    let hold = api
        .post(
            "/v1/transfers",
            "short-hold",
            &json!({"debit_account_id": wallet, "credit_account_id": cash, "amount": 80,
                    "currency": "USD", "pending": {"timeout_seconds": 1}}),
        )
        .await;
    hold.expect(201);
    let id = hold.str("id").to_owned();
    // The hold reserves: 30 more cannot be spent.
    api.post(
        "/v1/transfers",
        &unique_key("x"),
        &transfer_body(&wallet, &cash, 30, "USD"),
    )
    .await
    .expect_problem(422, "insufficient-funds");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let voided = loop {
        let t = api.get(&format!("/v1/transfers/{id}")).await;
        t.expect(200);
        if t.json["state"] != "pending" {
            break t.json;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the hold never expired"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(voided["state"], "voided");
    assert_eq!(voided["pending"]["void_reason"], "expired");
    api.post(&format!("/v1/transfers/{id}/post"), "late-post", &json!({}))
        .await
        .expect_problem(409, "not-pending");
    let balances = &api.get_account(&wallet).await["balances"];
    assert_eq!(
        (column(balances, "posted"), column(balances, "available")),
        (100, 100)
    );
    api.assert_balanced().await;
    instance.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_debits_never_overdraw() {
    const DEBITS: usize = 40;
    const FUNDED: u64 = 10;
    let instance = Instance::start().await;
    let api = instance.api("acme");
    let cash = api.account("USD", "debit", "none").await;
    let wallet = api
        .account("USD", "credit", "debits_must_not_exceed_credits")
        .await;
    api.transfer(&cash, &wallet, FUNDED * 100, "USD").await;
    let mut tasks = JoinSet::new();
    for _ in 0..DEBITS {
        let api = api.clone();
        let body = transfer_body(&wallet, &cash, 100, "USD");
        tasks.spawn(async move { api.post("/v1/transfers", &unique_key("spend"), &body).await });
    }
    let replies = tasks.join_all().await;
    let posted = replies.iter().filter(|r| r.status == 201).count();
    for r in replies.iter().filter(|r| r.status != 201) {
        r.expect_problem(422, "insufficient-funds");
    }
    assert_eq!(posted as u64, FUNDED);
    let balances = &api.get_account(&wallet).await["balances"];
    assert_eq!(column(balances, "posted"), 0);
    api.assert_balanced().await;
    instance.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_atomic_or_independent() {
    let instance = Instance::start().await;
    let api = instance.api("acme");
    let cash = api.account("USD", "debit", "none").await;
    let wallet = api
        .account("USD", "credit", "debits_must_not_exceed_credits")
        .await;
    let good = transfer_body(&cash, &wallet, 50, "USD");
    let overdraft = transfer_body(&wallet, &cash, 1_000, "USD");

    let atomic = api
        .post(
            "/v1/transfers/batch",
            "atomic-1",
            &json!({"transfers": [good, overdraft, good]}),
        )
        .await;
    atomic.expect_problem(422, "batch-rejected");
    let errors = atomic.json["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{}", atomic.json);
    assert_eq!(errors[0]["index"], 1);
    assert_eq!(
        errors[0]["type"],
        "https://strongroom.dev/problems/insufficient-funds"
    );
    assert!(
        api.list_all("/v1/transfers").await.is_empty(),
        "nothing posts"
    );

    let independent = api
        .post(
            "/v1/transfers/batch",
            "independent-1",
            &json!({"mode": "independent", "transfers": [good, overdraft, good]}),
        )
        .await;
    independent.expect(200);
    assert_eq!(
        (
            independent.json["posted"].clone(),
            independent.json["failed"].clone()
        ),
        (json!(2), json!(1))
    );
    let results = independent.json["results"].as_array().unwrap();
    assert_eq!(results[1]["transfer"], Value::Null);
    assert_eq!(results[1]["error"]["status"], 422);
    assert_eq!(
        results[1]["error"]["type"],
        "https://strongroom.dev/problems/insufficient-funds"
    );
    assert_eq!(results[0]["transfer"]["state"], "posted");
    assert_eq!(results[2]["transfer"]["state"], "posted");
    // The replay carries the stored per-item refusal too, byte for byte.
    let replay = api
        .post(
            "/v1/transfers/batch",
            "independent-1",
            &json!({"mode": "independent", "transfers": [good, overdraft, good]}),
        )
        .await;
    assert!(replay.replayed());
    assert_eq!(replay.bytes, independent.bytes);
    assert_eq!(api.list_all("/v1/transfers").await.len(), 2);

    let atomic = api
        .post(
            "/v1/transfers/batch",
            "atomic-2",
            &json!({"transfers": [good, good]}),
        )
        .await;
    atomic.expect(201);
    assert_eq!(atomic.json["posted"], 2);
    assert_eq!(
        column(&api.get_account(&wallet).await["balances"], "posted"),
        200
    );
    api.assert_balanced().await;
    instance.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_page_with_cursors_both_ways() {
    let instance = Instance::start().await;
    let api = instance.api("acme");
    let mut created = Vec::new();
    for _ in 0..5 {
        created.push(api.account("USD", "debit", "none").await);
    }
    for (order, expected) in [
        ("asc", created.clone()),
        ("desc", created.iter().rev().cloned().collect()),
    ] {
        let mut seen = Vec::new();
        let mut pages = 0;
        let mut path = format!("/v1/accounts?limit=2&order={order}");
        loop {
            let page = api.get(&path).await;
            page.expect(200);
            pages += 1;
            let data = page.json["data"].as_array().unwrap();
            assert!(data.len() <= 2);
            seen.extend(data.iter().map(|a| a["id"].as_str().unwrap().to_owned()));
            match page.json["next_cursor"].as_str() {
                Some(c) => path = format!("/v1/accounts?limit=2&order={order}&cursor={c}"),
                None => break,
            }
            assert!(pages < 10, "the cursor does not advance");
        }
        assert_eq!(seen, expected, "order {order}");
    }
    instance.stop().await;
}

/// A write that timed out while it still waited in the commit queue is dropped, not committed:
/// a 503 `timeout` there means nothing happened, and the retry with the same key posts it once.
/// The first instance makes every write wait (the committer waits 100 ms for company; requests
/// time out after 50 ms); the restarted one is quick.
///
/// (A write that times out while its commit is already running does commit: the client then
/// learns of it from the replay. Both ways, only the retry with the same key settles it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_write_retried_with_its_key_posts_once() {
    let dir = tempfile::tempdir().unwrap();
    let instance = Instance::start_in(dir.path(), &[]).await;
    let api = instance.api("acme");
    let cash = api.account("USD", "debit", "none").await;
    let wallet = api.account("USD", "credit", "none").await;
    instance.stop().await;

    let slow = [("commit_wait_us", "100000"), ("request_timeout_ms", "50")];
    let instance = Instance::start_in(dir.path(), &slow).await;
    let api = instance.api("acme");
    let body = transfer_body(&cash, &wallet, 42, "USD");
    let first = api.post("/v1/transfers", "slow", &body).await;
    first.expect_problem(503, "timeout");
    assert_eq!(first.header("retry-after"), Some("1"));
    // Stopping drains the commit queue, where the timed-out write waited: it must not commit.
    instance.stop().await;

    let instance = Instance::start_in(dir.path(), &[]).await;
    let api = instance.api("acme");
    let retry = api.post("/v1/transfers", "slow", &body).await;
    retry.expect(201);
    assert!(!retry.replayed(), "the timed-out write was committed");
    let again = api.post("/v1/transfers", "slow", &body).await;
    assert_eq!(again.bytes, retry.bytes);
    let balances = &api.get_account(&wallet).await["balances"];
    assert_eq!(column(balances, "posted"), 42, "posted once");
    assert_eq!(api.list_all("/v1/transfers").await.len(), 1);
    api.assert_balanced().await;
    instance.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_account_refuses_postings_but_its_holds_can_be_voided() {
    let instance = Instance::start().await;
    let api = instance.api("acme");
    let cash = api.account("USD", "debit", "none").await;
    let wallet = api.account("USD", "credit", "none").await;
    api.transfer(&cash, &wallet, 500, "USD").await;
    let hold = json!({"debit_account_id": wallet, "credit_account_id": cash, "amount": 100,
                      "currency": "USD", "pending": {"timeout_seconds": 600}});
    let h1 = api.post("/v1/transfers", "h1", &hold).await;
    h1.expect(201);
    let h2 = api.post("/v1/transfers", "h2", &hold).await;
    h2.expect(201);
    let frozen = api
        .post(
            &format!("/v1/accounts/{wallet}/freeze"),
            "freeze",
            &json!({}),
        )
        .await;
    frozen.expect(200);
    assert_eq!(frozen.json["status"], "frozen");

    api.post(
        "/v1/transfers",
        "x1",
        &transfer_body(&cash, &wallet, 1, "USD"),
    )
    .await
    .expect_problem(422, "account-frozen");
    api.post(
        &format!("/v1/transfers/{}/post", h1.str("id")),
        "p1",
        &json!({}),
    )
    .await
    .expect_problem(422, "account-frozen");
    api.post(
        &format!("/v1/transfers/{}/void", h2.str("id")),
        "v2",
        &json!({}),
    )
    .await
    .expect(200);
    api.post(&format!("/v1/accounts/{wallet}/close"), "close", &json!({}))
        .await
        .expect_problem(409, "account-not-empty");
    api.post(
        &format!("/v1/accounts/{wallet}/freeze"),
        "freeze-again",
        &json!({}),
    )
    .await
    .expect_problem(409, "invalid-transition");

    let open = api
        .post(
            &format!("/v1/accounts/{wallet}/unfreeze"),
            "unfreeze",
            &json!({}),
        )
        .await;
    open.expect(200);
    assert_eq!(open.json["status"], "open");
    api.post(
        &format!("/v1/transfers/{}/post", h1.str("id")),
        "p1b",
        &json!({}),
    )
    .await
    .expect(200);
    let balances = &api.get_account(&wallet).await["balances"];
    assert_eq!(
        (column(balances, "posted"), column(balances, "pending")),
        (400, 0)
    );
    api.assert_balanced().await;
    instance.stop().await;
}
