//! `GET /metrics` on its own plain-HTTP listener: the committer's counters move with the work
//! done, the partner-facing HTTPS listener does not serve them, and a store without counters of
//! its own adds no series. (The DynamoDB store's retry counters are checked under faults in
//! [`crate::dynamodb`].)

use crate::harness::{Instance, metric, scrape, unique_key};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_counters_follow_the_writes() {
    let instance = Instance::start_with(&[("metrics_listen", "127.0.0.1:0")]).await;
    let url = instance.metrics_url.clone().expect("metrics_listen is set");
    let page = scrape(&url).await;
    assert_eq!(metric(&page, "strongroom_commit_requests_total"), 0.0);
    assert!(page.contains("# TYPE strongroom_commit_requests_total counter"));

    let api = instance.api("acme");
    let debit = api.account("USD", "debit", "none").await;
    let credit = api.account("USD", "credit", "none").await;
    api.transfer(&debit, &credit, 500, "USD").await;
    // A replay is answered from its idempotency record, through the committer once more.
    let body = crate::harness::transfer_body(&debit, &credit, 7, "USD");
    let key = unique_key("metrics");
    api.post("/v1/transfers", &key, &body).await.expect(201);
    api.post("/v1/transfers", &key, &body).await.expect(201);

    let page = scrape(&url).await;
    assert_eq!(metric(&page, "strongroom_commit_requests_total"), 5.0);
    let transactions = metric(&page, "strongroom_commit_transactions_total");
    // Audit records of what the committer does not execute (the service starting, reads,
    // refusals) take transactions of their own when no command shares them.
    assert!((1.0..=12.0).contains(&transactions), "{transactions}");
    assert_eq!(metric(&page, "strongroom_commit_retries_total"), 0.0);
    if std::env::var("E2E_STORE").as_deref() == Ok("dynamodb") {
        assert!(metric(&page, "strongroom_dynamodb_requests_total") > 0.0);
    } else {
        assert!(!page.contains("strongroom_dynamodb_"), "{page}");
    }

    // Not on the API's listener.
    api.get("/metrics").await.expect_problem(404, "not-found");
    instance.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_metrics_listener_unless_configured() {
    let instance = Instance::start().await;
    assert_eq!(instance.metrics_url, None);
    instance.stop().await;
}
