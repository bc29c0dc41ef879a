//! Tenants are walled off: tenant B cannot read, list, move or change anything of tenant A's,
//! and cannot even learn that it exists (not found, never forbidden).

use serde_json::{Value, json};

use crate::harness::{Instance, Req, transfer_body, unique_key};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_sees_nothing_of_another() {
    let instance = Instance::start().await;
    let a = instance.api("tenant-a");
    let b = instance.api("tenant-b");

    let a1 = a.account("USD", "debit", "none").await;
    let a2 = a.account("USD", "credit", "none").await;
    let a_transfer = a.transfer(&a1, &a2, 500, "USD").await;
    let a_transfer = a_transfer["id"].as_str().unwrap().to_owned();
    let a_hold = a
        .post(
            "/v1/transfers",
            &unique_key("hold"),
            &json!({"debit_account_id": a1, "credit_account_id": a2, "amount": 100,
                    "currency": "USD", "pending": {"timeout_seconds": 600}}),
        )
        .await;
    a_hold.expect(201);
    let a_hold = a_hold.str("id").to_owned();
    let b1 = b.account("USD", "debit", "none").await;
    let b2 = b.account("USD", "credit", "none").await;
    let b_transfer = b.transfer(&b1, &b2, 7, "USD").await;
    let a_before = (
        a.list_all("/v1/accounts").await,
        a.list_all("/v1/transfers").await,
    );

    // Reads of A's things, by B: not found.
    for path in [
        format!("/v1/accounts/{a1}"),
        format!("/v1/accounts/{a1}/balance"),
        format!("/v1/accounts/{a1}/balance?as_of=2030-01-01T00:00:00Z"),
        format!("/v1/accounts/{a1}/entries"),
        format!("/v1/transfers/{a_transfer}"),
        format!("/v1/transfers/{a_hold}"),
    ] {
        b.send(Req::get(&path))
            .await
            .expect_problem(404, "not-found");
    }

    // A's cursors, used by B: refused, not followed into B's listing or anyone else's.
    let a_page = a.get("/v1/transfers?limit=1").await;
    a_page.expect(200);
    let a_cursor = a_page.str("next_cursor").to_owned();
    a.get(&format!("/v1/transfers?limit=1&cursor={a_cursor}"))
        .await
        .expect(200);
    b.send(Req::get(&format!("/v1/transfers?cursor={a_cursor}")))
        .await
        .expect_problem(400, "invalid-cursor");

    // Changes to A's things, by B: not found, or an unknown account in a transfer.
    for path in [
        format!("/v1/accounts/{a1}/freeze"),
        format!("/v1/accounts/{a1}/close"),
        format!("/v1/transfers/{a_hold}/post"),
        format!("/v1/transfers/{a_hold}/void"),
        format!("/v1/transfers/{a_transfer}/reverse"),
    ] {
        b.send(Req::post(&path).key(&unique_key("b")))
            .await
            .expect_problem(404, "not-found");
    }
    let stolen = b
        .post(
            "/v1/transfers",
            &unique_key("b"),
            &transfer_body(&a1, &b2, 100, "USD"),
        )
        .await;
    stolen.expect_problem(422, "unknown-account");
    assert_eq!(stolen.json["account"], json!(a1));
    let journal = json!({"legs": [
        {"account_id": b1, "direction": "debit", "amount": 5, "currency": "USD"},
        {"account_id": a2, "direction": "credit", "amount": 5, "currency": "USD"},
    ]});
    b.post("/v1/journal-entries", &unique_key("b"), &journal)
        .await
        .expect_problem(422, "unknown-account");

    // B's lists hold B's things only.
    let ids = |items: Vec<Value>| -> Vec<String> {
        items
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        ids(b.list_all("/v1/accounts").await),
        vec![b1.clone(), b2.clone()]
    );
    assert_eq!(
        ids(b.list_all("/v1/transfers").await),
        vec![b_transfer["id"].as_str().unwrap().to_owned()]
    );
    let b_trial = b.assert_balanced().await;
    assert_eq!(b_trial["accounts"], json!(2));
    assert_eq!(b_trial["currencies"][0]["debits_posted"], json!(7));

    // And nothing of A's moved.
    assert_eq!(a.list_all("/v1/accounts").await, a_before.0);
    assert_eq!(a.list_all("/v1/transfers").await, a_before.1);
    let a_hold_now = a.get(&format!("/v1/transfers/{a_hold}")).await;
    assert_eq!(a_hold_now.json["state"], json!("pending"));

    // External references are unique per tenant, not across tenants.
    let body = json!({"currency": "USD", "normal_side": "debit", "external_ref": "shared-ref"});
    a.post("/v1/accounts", &unique_key("a"), &body)
        .await
        .expect(201);
    b.post("/v1/accounts", &unique_key("b"), &body)
        .await
        .expect(201);
    a.post("/v1/accounts", &unique_key("a"), &body)
        .await
        .expect_problem(409, "external-ref-taken");
    instance.stop().await;
}
