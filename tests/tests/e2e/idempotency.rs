//! Exactly once: a replay returns the original answer byte for byte and says so, and does not
//! run again; concurrent requests with one key post once (with two bodies: one wins, the other
//! is refused); keys are scoped by tenant.

use serde_json::json;
use tokio::task::JoinSet;

use crate::harness::{Instance, column, transfer_body};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_returns_the_original_answer() {
    let instance = Instance::start().await;
    let api = instance.api("acme");
    let account_body = json!({"currency": "USD", "normal_side": "debit"});
    let first = api.post("/v1/accounts", "acct-1", &account_body).await;
    first.expect(201);
    assert!(!first.replayed());
    let replay = api.post("/v1/accounts", "acct-1", &account_body).await;
    assert_eq!(replay.status, 201);
    assert!(replay.replayed());
    assert_eq!(replay.bytes, first.bytes);
    let cash = first.str("id").to_owned();
    let wallet = api.account("USD", "credit", "none").await;

    let body = transfer_body(&cash, &wallet, 250, "USD");
    let first = api.post("/v1/transfers", "pay-1", &body).await;
    first.expect(201);
    assert!(!first.replayed());
    for _ in 0..3 {
        let replay = api.post("/v1/transfers", "pay-1", &body).await;
        assert_eq!(replay.status, 201);
        assert!(replay.replayed());
        assert_eq!(replay.bytes, first.bytes, "a replay answers the same bytes");
    }
    // Same key, same meaning, other spelling: whitespace and field order do not matter.
    let respelled = format!(
        r#"{{ "currency":"USD", "amount": 250, "credit_account_id":"{wallet}", "debit_account_id":"{cash}" }}"#
    );
    let replay = api
        .send(
            crate::harness::Req::post("/v1/transfers")
                .key("pay-1")
                .raw(respelled.into_bytes()),
        )
        .await;
    assert_eq!((replay.status, replay.replayed()), (201, true));
    assert_eq!(replay.bytes, first.bytes);

    // A hold's post, replayed, does not post twice.
    let hold = api
        .post(
            "/v1/transfers",
            "hold-1",
            &json!({"debit_account_id": cash, "credit_account_id": wallet, "amount": 100,
                    "currency": "USD", "pending": {"timeout_seconds": 600}}),
        )
        .await;
    hold.expect(201);
    let post_path = format!("/v1/transfers/{}/post", hold.str("id"));
    let posted = api.post(&post_path, "post-1", &json!({"amount": 60})).await;
    posted.expect(200);
    let replay = api.post(&post_path, "post-1", &json!({"amount": 60})).await;
    assert_eq!((replay.status, replay.replayed()), (200, true));
    assert_eq!(replay.bytes, posted.bytes);
    // A new key for the same post is a new request, and the hold is no longer pending.
    api.post(&post_path, "post-2", &json!({"amount": 60}))
        .await
        .expect_problem(409, "not-pending");

    let wallet_now = api.get_account(&wallet).await;
    assert_eq!(column(&wallet_now["balances"], "posted"), 250 + 60);
    assert_eq!(api.list_all("/v1/transfers").await.len(), 2);
    instance.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_scoped_by_tenant() {
    let instance = Instance::start().await;
    let a = instance.api("tenant-a");
    let b = instance.api("tenant-b");
    let a_acct = a
        .post(
            "/v1/accounts",
            "shared-key",
            &json!({"currency": "USD", "normal_side": "debit"}),
        )
        .await;
    a_acct.expect(201);
    let b_acct = b
        .post(
            "/v1/accounts",
            "shared-key",
            &json!({"currency": "EUR", "normal_side": "credit"}),
        )
        .await;
    b_acct.expect(201);
    assert!(!b_acct.replayed(), "B's key is not A's");
    assert_ne!(a_acct.str("id"), b_acct.str("id"));
    assert_eq!(b_acct.str("currency"), "EUR");
    instance.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_with_one_key_post_once() {
    const REQUESTS: usize = 50;
    let instance = Instance::start().await;
    let api = instance.api("acme");
    let cash = api.account("USD", "debit", "none").await;
    let wallet = api.account("USD", "credit", "none").await;
    let body = transfer_body(&cash, &wallet, 1_234, "USD");

    let mut tasks = JoinSet::new();
    for _ in 0..REQUESTS {
        let api = api.clone();
        let body = body.clone();
        tasks.spawn(async move { api.post("/v1/transfers", "one-key", &body).await });
    }
    let replies = tasks.join_all().await;
    assert_eq!(replies.len(), REQUESTS);
    let first = &replies[0];
    for reply in &replies {
        assert_eq!(reply.status, 201, "{}", reply.json);
        assert_eq!(reply.json["id"], first.json["id"]);
        assert_eq!(reply.json, first.json);
    }
    let originals = replies.iter().filter(|r| !r.replayed()).count();
    assert_eq!(originals, 1, "exactly one answer is the original");

    let transfers = api.list_all("/v1/transfers").await;
    assert_eq!(transfers.len(), 1);
    assert_eq!(transfers[0]["id"], first.json["id"]);
    assert_eq!(
        column(&api.get_account(&wallet).await["balances"], "posted"),
        1_234
    );
    assert_eq!(
        column(&api.get_account(&cash).await["balances"], "posted"),
        1_234
    );
    api.assert_balanced().await;
    instance.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_does_not_run_again_after_the_state_moved_on() {
    let instance = Instance::start().await;
    let api = instance.api("acme");
    let account = api.account("USD", "debit", "none").await;
    let freeze_path = format!("/v1/accounts/{account}/freeze");
    let frozen = api.post(&freeze_path, "freeze-1", &json!({})).await;
    frozen.expect(200);
    assert_eq!(frozen.json["status"], "frozen");
    api.post(
        &format!("/v1/accounts/{account}/unfreeze"),
        "unfreeze-1",
        &json!({}),
    )
    .await
    .expect(200);
    // The replay answers what the freeze answered then, and freezes nothing now.
    let replay = api.post(&freeze_path, "freeze-1", &json!({})).await;
    assert_eq!((replay.status, replay.replayed()), (200, true));
    assert_eq!(replay.bytes, frozen.bytes);
    assert_eq!(api.get_account(&account).await["status"], "open");
    instance.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_with_one_key_and_two_bodies_post_one() {
    const REQUESTS: usize = 40;
    let instance = Instance::start().await;
    let api = instance.api("acme");
    let cash = api.account("USD", "debit", "none").await;
    let wallet = api.account("USD", "credit", "none").await;
    let bodies = [
        transfer_body(&cash, &wallet, 100, "USD"),
        transfer_body(&cash, &wallet, 200, "USD"),
    ];
    let mut tasks = JoinSet::new();
    for i in 0..REQUESTS {
        let api = api.clone();
        let body = bodies[i % 2].clone();
        tasks.spawn(async move {
            (
                body["amount"].clone(),
                api.post("/v1/transfers", "contested", &body).await,
            )
        });
    }
    let replies = tasks.join_all().await;
    let winners: Vec<_> = replies.iter().filter(|(_, r)| r.status == 201).collect();
    assert!(!winners.is_empty());
    let winner = &winners[0].1.json;
    for (amount, reply) in &replies {
        if reply.status == 201 {
            assert_eq!(&reply.json, winner);
            assert_eq!(
                &reply.json["amount"], amount,
                "a body got another body's answer"
            );
        } else {
            reply.expect_problem(422, "idempotency-key-reused");
            assert_ne!(amount, &winner["amount"]);
        }
    }
    let transfers = api.list_all("/v1/transfers").await;
    assert_eq!(transfers.len(), 1);
    assert_eq!(
        column(&api.get_account(&wallet).await["balances"], "posted"),
        i128::from(winner["amount"].as_u64().unwrap())
    );
    instance.stop().await;
}
