//! The quickstart, step by step, over HTTP/1.1 and over HTTP/2: accounts, a transfer with an
//! `Idempotency-Key`, balances, history with running balances, a hold posted in part, a hold
//! voided, a reversal, and a balanced trial balance.

use reqwest::Version;
use serde_json::{Value, json};

use crate::harness::{Api, Instance, Protocol, READ_WRITE, Reply, column};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_over_http1() {
    let instance = Instance::start().await;
    let api = instance
        .anonymous(Protocol::Http1)
        .with_token(&instance.tokens.mint("acme", READ_WRITE));
    walk(&api, Version::HTTP_11).await;
    instance.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_over_http2() {
    let instance = Instance::start().await;
    let api = instance
        .anonymous(Protocol::Negotiated)
        .with_token(&instance.tokens.mint("acme", READ_WRITE));
    walk(&api, Version::HTTP_2).await;
    instance.stop().await;
}

/// Every answer of the walk, checked for its status and HTTP version.
struct Walk<'a> {
    api: &'a Api,
    version: Version,
}

impl Walk<'_> {
    async fn post(&self, path: &str, key: &str, body: &Value, status: u16) -> Reply {
        let reply = self.api.post(path, key, body).await;
        self.check(&reply, status);
        reply
    }

    async fn get(&self, path: &str) -> Reply {
        let reply = self.api.get(path).await;
        self.check(&reply, 200);
        reply
    }

    #[track_caller]
    fn check(&self, reply: &Reply, status: u16) {
        reply.expect(status);
        assert_eq!(reply.version, self.version);
        assert_eq!(reply.header("content-type"), Some("application/json"));
        assert_eq!(reply.header("cache-control"), Some("no-store"));
        assert!(
            reply
                .header("x-request-id")
                .is_some_and(|id| !id.is_empty())
        );
    }

    /// (posted, pending, available) of an account's balance.
    async fn balance(&self, account: &str) -> (i128, i128, i128) {
        let b = self
            .get(&format!("/v1/accounts/{account}/balance"))
            .await
            .json;
        assert_eq!(b["account_id"], json!(account));
        let b = &b["balances"];
        (
            column(b, "posted"),
            column(b, "pending"),
            column(b, "available"),
        )
    }
}

async fn walk(api: &Api, version: Version) {
    let w = Walk { api, version };
    let (cash, wallet) = open_accounts(&w).await;
    fund(&w, &cash, &wallet).await;
    let hold = hold_then_post_in_part(&w, &cash, &wallet).await;
    let hold2 = hold_then_void(&w, &cash, &wallet).await;
    let pay = pay_then_reverse(&w, &cash, &wallet).await;
    check_history(&w, &wallet, &[hold.as_str(), hold2.as_str(), pay.as_str()]).await;
    check_trial_balance(&w).await;
}

/// Two accounts: the platform's cash (an asset, debit-normal) and a customer's wallet (a
/// liability, credit-normal) that must never go below zero.
async fn open_accounts(w: &Walk<'_>) -> (String, String) {
    let cash = w
        .post(
            "/v1/accounts",
            "qs-acct-cash",
            &json!({"currency": "USD", "normal_side": "debit", "name": "cash"}),
            201,
        )
        .await;
    assert_eq!(cash.json["status"], json!("open"));
    assert_eq!(cash.json["currency_exponent"], json!(2));
    let cash = cash.str("id").to_owned();
    assert!(cash.starts_with("acct_"), "{cash}");
    let wallet = w
        .post(
            "/v1/accounts",
            "qs-acct-wallet",
            &json!({
                "currency": "USD",
                "normal_side": "credit",
                "balance_constraint": "debits_must_not_exceed_credits",
                "name": "alice",
                "metadata": {"customer": "c-1"},
            }),
            201,
        )
        .await;
    assert_eq!(wallet.json["metadata"], json!({"customer": "c-1"}));
    let wallet = wallet.str("id").to_owned();
    assert_ne!(cash, wallet);
    (cash, wallet)
}

/// Fund the wallet with $100.00, and retry the request: it posts once.
async fn fund(w: &Walk<'_>, cash: &str, wallet: &str) {
    let fund_body = json!({"debit_account_id": cash, "credit_account_id": wallet,
                           "amount": 10_000, "currency": "USD"});
    let fund = w.post("/v1/transfers", "qs-fund", &fund_body, 201).await;
    assert!(!fund.replayed());
    assert_eq!(fund.json["state"], json!("posted"));
    assert_eq!(fund.json["amount"], json!(10_000));
    assert_eq!(fund.json["legs"].as_array().unwrap().len(), 2);
    let again = w.post("/v1/transfers", "qs-fund", &fund_body, 201).await;
    assert!(again.replayed());
    assert_eq!(again.json, fund.json);
    assert_eq!(w.balance(wallet).await, (10_000, 0, 10_000));
    assert_eq!(w.balance(cash).await, (10_000, 0, 10_000));
}

/// A hold of $30.00 on the wallet, posted in part ($20.00); the rest is released.
async fn hold_then_post_in_part(w: &Walk<'_>, cash: &str, wallet: &str) -> String {
    let hold = w
        .post(
            "/v1/transfers",
            "qs-hold-1",
            &json!({"debit_account_id": wallet, "credit_account_id": cash, "amount": 3_000,
                    "currency": "USD", "pending": {"timeout_seconds": 600}}),
            201,
        )
        .await;
    assert_eq!(hold.json["state"], json!("pending"));
    assert_eq!(hold.json["pending"]["posted_amount"], Value::Null);
    let hold = hold.str("id").to_owned();
    assert_eq!(w.balance(wallet).await, (10_000, -3_000, 7_000));
    let posted = w
        .post(
            &format!("/v1/transfers/{hold}/post"),
            "qs-post-1",
            &json!({"amount": 2_000}),
            200,
        )
        .await;
    assert_eq!(posted.json["state"], json!("posted"));
    assert_eq!(posted.json["pending"]["posted_amount"], json!(2_000));
    assert!(posted.json["pending"]["resolved_at"].is_string());
    assert_eq!(w.balance(wallet).await, (8_000, 0, 8_000));
    hold
}

/// A hold of $5.00, voided: nothing moves.
async fn hold_then_void(w: &Walk<'_>, cash: &str, wallet: &str) -> String {
    let hold = w
        .post(
            "/v1/transfers",
            "qs-hold-2",
            &json!({"debit_account_id": wallet, "credit_account_id": cash, "amount": 500,
                    "currency": "USD", "pending": {"timeout_seconds": 600}}),
            201,
        )
        .await
        .str("id")
        .to_owned();
    assert_eq!(w.balance(wallet).await, (8_000, -500, 7_500));
    let voided = w
        .post(
            &format!("/v1/transfers/{hold}/void"),
            "qs-void-2",
            &json!({}),
            200,
        )
        .await;
    assert_eq!(voided.json["state"], json!("voided"));
    assert_eq!(voided.json["pending"]["void_reason"], json!("requested"));
    assert_eq!(w.balance(wallet).await, (8_000, 0, 8_000));
    hold
}

/// A payment of $15.00, then its reversal: a new transfer, linked both ways.
async fn pay_then_reverse(w: &Walk<'_>, cash: &str, wallet: &str) -> String {
    let pay = w
        .post(
            "/v1/transfers",
            "qs-pay",
            &json!({"debit_account_id": wallet, "credit_account_id": cash, "amount": 1_500,
                    "currency": "USD", "description": "coffee"}),
            201,
        )
        .await
        .str("id")
        .to_owned();
    assert_eq!(w.balance(wallet).await, (6_500, 0, 6_500));
    let reversal = w
        .post(
            &format!("/v1/transfers/{pay}/reverse"),
            "qs-reverse",
            &json!({"description": "refund"}),
            201,
        )
        .await;
    assert_eq!(reversal.json["reverses"], json!(pay));
    assert_eq!(reversal.json["state"], json!("posted"));
    assert_eq!(reversal.json["description"], json!("refund"));
    let mut legs: Vec<Value> = reversal.json["legs"].as_array().unwrap().clone();
    legs.sort_by_key(|l| l["direction"].as_str().unwrap().to_owned());
    assert_eq!(
        legs,
        [
            json!({"account_id": wallet, "direction": "credit", "amount": 1_500, "currency": "USD"}),
            json!({"account_id": cash, "direction": "debit", "amount": 1_500, "currency": "USD"}),
        ]
    );
    let reversal = reversal.str("id").to_owned();
    let original = w.get(&format!("/v1/transfers/{pay}")).await;
    assert_eq!(original.json["reversed_by"], json!(reversal));
    assert_eq!(w.balance(wallet).await, (8_000, 0, 8_000));
    assert_eq!(w.balance(cash).await, (8_000, 0, 8_000));
    pay
}

/// The books balance: $150.00 of debits and of credits, over five transfers.
async fn check_trial_balance(w: &Walk<'_>) {
    let trial = w.get("/v1/trial-balance").await.json;
    assert_eq!(trial["balanced"], json!(true));
    assert_eq!(trial["accounts"], json!(2));
    assert_eq!(
        trial["currencies"],
        json!([{"currency": "USD", "accounts": 2, "debits_posted": 15_000,
                "credits_posted": 15_000, "debits_pending": 0, "credits_pending": 0,
                "balanced": true}])
    );
    let transfers = w.get("/v1/transfers").await.json;
    assert_eq!(transfers["data"].as_array().unwrap().len(), 5);
}

/// The wallet's history: one entry per change, each with the balances after it.
async fn check_history(w: &Walk<'_>, wallet: &str, holds_and_pay: &[&str]) {
    let entries = w.get(&format!("/v1/accounts/{wallet}/entries")).await.json;
    assert_eq!(entries["next_cursor"], Value::Null);
    let entries = entries["data"].as_array().unwrap();
    // (kind, direction, amount, released, posted after, available after)
    let expected: &[(&str, &str, u64, u64, i128, i128)] = &[
        ("posted", "credit", 10_000, 0, 10_000, 10_000),
        ("held", "debit", 3_000, 0, 10_000, 7_000),
        ("hold_posted", "debit", 2_000, 3_000, 8_000, 8_000),
        ("held", "debit", 500, 0, 8_000, 7_500),
        ("hold_voided", "debit", 0, 500, 8_000, 8_000),
        ("posted", "debit", 1_500, 0, 6_500, 6_500),
        ("posted", "credit", 1_500, 0, 8_000, 8_000),
    ];
    let got: Vec<_> = entries
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap(),
                e["direction"].as_str().unwrap(),
                e["amount"].as_u64().unwrap(),
                e["released"].as_u64().unwrap(),
                column(&e["balances"], "posted"),
                column(&e["balances"], "available"),
            )
        })
        .collect();
    assert_eq!(got, expected, "{entries:#?}");
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e["seq"], json!(i + 1));
    }
    assert_eq!(entries[1]["transfer_id"], json!(holds_and_pay[0]));
    assert_eq!(entries[3]["transfer_id"], json!(holds_and_pay[1]));
    assert_eq!(entries[5]["transfer_id"], json!(holds_and_pay[2]));
    let account = w.get(&format!("/v1/accounts/{wallet}")).await.json;
    assert_eq!(account["entry_count"], json!(7));
    assert_eq!(account["balances"], entries[6]["balances"]);

    // The balance as of the first entry's instant is the running balance then.
    let at = entries[0]["at"].as_str().unwrap();
    let then = w
        .get(&format!("/v1/accounts/{wallet}/balance?as_of={at}"))
        .await
        .json;
    assert_eq!(then["entry_seq"], json!(1));
    assert_eq!(then["balances"], entries[0]["balances"]);
}

/// The reversal of a plain transfer is itself a plain two-leg transfer (with the sides swapped),
/// and its answer carries the plain fields like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reversal_of_a_plain_transfer_reads_as_plain() {
    let instance = Instance::start().await;
    let api = instance.api("acme");
    let cash = api.account("USD", "debit", "none").await;
    let wallet = api.account("USD", "credit", "none").await;
    let pay = api.transfer(&cash, &wallet, 700, "USD").await;
    let pay = pay["id"].as_str().unwrap();
    let reversal = api
        .post(
            &format!("/v1/transfers/{pay}/reverse"),
            "rev-plain",
            &json!({}),
        )
        .await;
    reversal.expect(201);
    let plain = |r: &Value| {
        (
            r["debit_account_id"].clone(),
            r["credit_account_id"].clone(),
            r["amount"].clone(),
            r["currency"].clone(),
        )
    };
    assert_eq!(
        plain(&reversal.json),
        (json!(wallet), json!(cash), json!(700), json!("USD")),
        "{}",
        reversal.json
    );
    instance.stop().await;
}

/// The client's trust is real: a client that trusts another instance's certificate cannot
/// connect, and plain HTTP on the TLS port gets no answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_verified_and_plain_http_is_not_served() {
    let instance = Instance::start().await;
    let other = Instance::start().await;
    assert_ne!(instance.cert_pem, other.cert_pem);
    let mistrusting = Api::new(&instance.url, &other.cert_pem, Protocol::Negotiated);
    let refused = mistrusting
        .try_send(crate::harness::Req::get("/health/live"))
        .await;
    assert!(
        refused.is_err(),
        "connected with the wrong trust: {refused:?}"
    );
    let trusting = Api::new(&instance.url, &instance.cert_pem, Protocol::Negotiated);
    trusting.get("/health/live").await.expect(200);

    let plain = Api::new(
        &instance.url.replace("https://", "http://"),
        &instance.cert_pem,
        Protocol::Http1,
    );
    let answer = plain
        .try_send(crate::harness::Req::get("/health/live"))
        .await;
    assert!(
        answer.is_err(),
        "plain HTTP was answered: {:?}",
        answer.map(|r| r.status)
    );
    other.stop().await;
    instance.stop().await;
}
