//! Bad input, as a table: each case is one request and the exact status and problem type it
//! must get. After the table, proof that none of them changed anything: the accounts (with
//! their balances and entry counts) and the transfers are exactly as before.

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{
    Api, Instance, NO_SUCH_ACCOUNT, NO_SUCH_TRANSFER, Protocol, READ_WRITE, Req, dynamodb_settings,
    transfer_body, unique_key,
};

/// The smallest body limit the gateway accepts; the oversized cases exceed it.
const BODY_BYTES_MAX: usize = 1024;

/// What the cases refer to: accounts in every state, a hold, a reversal, a used key.
struct Books {
    cash: String,
    wallet: String,
    euros: String,
    frozen: String,
    closed: String,
    /// A key already used for the wallet's funding transfer, and its body.
    used_key: (String, Value),
    /// The funding transfer (posted).
    funded: String,
    /// A cursor of the accounts listing (valid there, not for transfers).
    accounts_cursor: String,
    /// A pending hold of 100 on the wallet.
    hold: String,
    /// A transfer that was reversed.
    reversed: String,
}

async fn books(api: &Api) -> Books {
    let cash = api.account("USD", "debit", "none").await;
    let wallet = api
        .account("USD", "credit", "debits_must_not_exceed_credits")
        .await;
    let euros = api.account("EUR", "credit", "none").await;
    let frozen = api.account("USD", "credit", "none").await;
    let closed = api.account("USD", "credit", "none").await;
    let with_ref = json!({"currency": "USD", "normal_side": "debit", "external_ref": "ref-1"});
    api.post("/v1/accounts", &unique_key("a"), &with_ref)
        .await
        .expect(201);
    let body = transfer_body(&cash, &wallet, 1_000, "USD");
    let funded = api.post("/v1/transfers", "fund-wallet", &body).await;
    funded.expect(201);
    api.transfer(&cash, &frozen, 50, "USD").await;
    let status = |id: &str, action: &str| format!("/v1/accounts/{id}/{action}");
    api.post(&status(&frozen, "freeze"), "freeze", &json!({}))
        .await
        .expect(200);
    api.post(&status(&closed, "close"), "close", &json!({}))
        .await
        .expect(200);
    let hold = json!({"debit_account_id": wallet, "credit_account_id": cash, "amount": 100,
                      "currency": "USD", "pending": {"timeout_seconds": 3600}});
    let hold = api.post("/v1/transfers", &unique_key("h"), &hold).await;
    hold.expect(201);
    let reversed = api.transfer(&cash, &wallet, 5, "USD").await;
    let reversed = reversed["id"].as_str().unwrap().to_owned();
    let reverse = format!("/v1/transfers/{reversed}/reverse");
    api.post(&reverse, &unique_key("r"), &json!({}))
        .await
        .expect(201);
    let first_page = api.get("/v1/accounts?limit=1").await;
    first_page.expect(200);
    Books {
        accounts_cursor: first_page.str("next_cursor").to_owned(),
        funded: funded.str("id").to_owned(),
        hold: hold.str("id").to_owned(),
        used_key: ("fund-wallet".into(), body),
        cash,
        wallet,
        euros,
        frozen,
        closed,
        reversed,
    }
}

/// Everything a tenant can see: accounts (with balances and entry counts) and transfers.
async fn snapshot(api: &Api) -> (Vec<Value>, Vec<Value>) {
    (
        api.list_all("/v1/accounts").await,
        api.list_all("/v1/transfers").await,
    )
}

/// One row of the table.
struct Case {
    name: String,
    req: Req,
    status: u16,
    slug: &'static str,
}

fn case(name: impl Into<String>, req: Req, status: u16, slug: &'static str) -> Case {
    Case {
        name: name.into(),
        req,
        status,
        slug,
    }
}

/// Sends one case and checks its answer: status, problem type, and a well-formed problem
/// (media type, `request_id` equal to `x-request-id`, `instance` equal to the path).
async fn check(api: &Api, case: Case) {
    let Case {
        name,
        req,
        status,
        slug,
    } = case;
    let path = req.path().split('?').next().unwrap_or_default().to_owned();
    let reply = api.send(req).await;
    assert_eq!(
        (reply.status, reply.json["type"].as_str()),
        (
            status,
            Some(format!("https://strongroom.dev/problems/{slug}").as_str())
        ),
        "case {name:?}: {}",
        reply.json
    );
    reply.assert_problem_shape();
    assert_eq!(reply.json["instance"], json!(path), "case {name:?}");
    if status == 401 {
        let challenge = reply.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.starts_with(r#"Bearer realm="strongroom""#),
            "case {name:?}: WWW-Authenticate {challenge:?}"
        );
    }
}

/// A POST of a transfer body with a fresh key.
fn transfer(body: Value) -> Req {
    Req::post("/v1/transfers")
        .key(&unique_key("bad"))
        .json(&body)
}

/// A POST of raw bytes as a transfer, with a fresh key.
fn raw(bytes: &str) -> Req {
    Req::post("/v1/transfers")
        .key(&unique_key("bad"))
        .raw(bytes.as_bytes().to_vec())
}

/// A POST to any path with a fresh key and no body.
fn post(path: String) -> Req {
    Req::post(&path).key(&unique_key("bad"))
}

/// A good transfer body with one field replaced.
fn with(good: &Value, field: &str, value: Value) -> Req {
    let mut body = good.clone();
    body[field] = value;
    transfer(body)
}

// The tables are formatted by hand, one case per line: rustfmt would spread each over six
// lines and hide the table.

#[rustfmt::skip]
fn body_cases(b: &Books) -> Vec<Case> {
    let good = transfer_body(&b.cash, &b.wallet, 10, "USD");
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("amount");
    let mut cases = vec![
        case("malformed JSON", raw(r#"{"debit_account_id": "#), 400, "malformed-json"),
        case("not JSON", raw("amount=5"), 400, "malformed-json"),
        case("empty body", raw(""), 400, "malformed-json"),
        case("unknown field", with(&good, "colour", json!("red")), 400, "unknown-field"),
        case("wrong type", with(&good, "currency", json!(840)), 400, "invalid-type"),
        case("amount as a string", with(&good, "amount", json!("10")), 400, "invalid-type"),
        case("body is an array", transfer(json!([good])), 400, "invalid-type"),
        case("missing field", transfer(missing), 400, "missing-field"),
        case("unknown currency", with(&good, "currency", json!("XQZ")), 400, "validation-failed"),
        case("lowercase currency", with(&good, "currency", json!("usd")), 400, "validation-failed"),
        case("malformed account id", with(&good, "debit_account_id", json!("acct_nope")), 400, "validation-failed"),
        case("description too long", with(&good, "description", json!("d".repeat(513))), 400, "validation-failed"),
        case("hold timeout 0", with(&good, "pending", json!({"timeout_seconds": 0})), 400, "validation-failed"),
        case("oversized body", with(&good, "description", json!("x".repeat(BODY_BYTES_MAX))), 413, "payload-too-large"),
        case("wrong content type", raw(&good.to_string()).content_type("text/plain"), 415, "unsupported-media-type"),
        case("no content type", raw(&good.to_string()).content_type(""), 415, "unsupported-media-type"),
    ];
    for amount in ["0", "-5", "1.5", "18446744073709551616", "1e30", "9223372036854775808"] {
        let text = format!(
            r#"{{"debit_account_id":"{}","credit_account_id":"{}","amount":{amount},"currency":"USD"}}"#,
            b.cash, b.wallet
        );
        cases.push(case(format!("amount {amount}"), raw(&text), 400, "invalid-amount"));
    }
    cases
}

#[rustfmt::skip]
fn ledger_cases(b: &Books) -> Vec<Case> {
    let good = transfer_body(&b.cash, &b.wallet, 10, "USD");
    let xfer = |debit: &str, credit: &str, amount: u64| transfer(transfer_body(debit, credit, amount, "USD"));
    let on_transfer = |id: &str, action: &str| post(format!("/v1/transfers/{id}/{action}"));
    let on_account = |id: &str, action: &str| post(format!("/v1/accounts/{id}/{action}"));
    let leg = |account: &str, direction: &str, amount: u64| json!({"account_id": account, "direction": direction, "amount": amount, "currency": "USD"});
    let journal = |legs: Value| post("/v1/journal-entries".into()).json(&json!({"legs": legs}));
    let batch = |transfers: Value| post("/v1/transfers/batch".into()).json(&json!({"transfers": transfers}));
    let with_ref = json!({"currency": "USD", "normal_side": "debit", "external_ref": "ref-1"});
    vec![
        case("currency mismatch", xfer(&b.cash, &b.euros, 10), 422, "currency-mismatch"),
        case("same account", xfer(&b.cash, &b.cash, 10), 422, "same-account"),
        case("unknown account", xfer(&b.cash, NO_SUCH_ACCOUNT, 10), 422, "unknown-account"),
        case("frozen account", xfer(&b.frozen, &b.cash, 10), 422, "account-frozen"),
        case("closed account", xfer(&b.cash, &b.closed, 10), 422, "account-closed"),
        case("overdraft", xfer(&b.wallet, &b.cash, 1_001), 422, "insufficient-funds"),
        case("overdraft past a hold", xfer(&b.wallet, &b.cash, 901), 422, "insufficient-funds"),
        case("close with a balance", on_account(&b.wallet, "close"), 409, "account-not-empty"),
        case("freeze a frozen account", on_account(&b.frozen, "freeze"), 409, "invalid-transition"),
        case("unfreeze an open account", on_account(&b.cash, "unfreeze"), 409, "invalid-transition"),
        case("external reference taken", post("/v1/accounts".into()).json(&with_ref), 409, "external-ref-taken"),
        case("void of a posted transfer", on_transfer(&b.funded, "void"), 409, "not-pending"),
        case("post more than held", on_transfer(&b.hold, "post").json(&json!({"amount": 101})), 422, "post-exceeds-hold"),
        case("post of nothing", on_transfer(&b.hold, "post").json(&json!({"amount": 0})), 400, "invalid-amount"),
        case("reverse a hold", on_transfer(&b.hold, "reverse"), 409, "not-posted"),
        case("reverse twice", on_transfer(&b.reversed, "reverse"), 409, "already-reversed"),
        case("post of an unknown hold", on_transfer(NO_SUCH_TRANSFER, "post"), 404, "not-found"),
        case("atomic batch with an overdraft", batch(json!([good, transfer_body(&b.wallet, &b.cash, 5_000, "USD")])), 422, "batch-rejected"),
        case("empty batch", batch(json!([])), 422, "batch-size"),
        case("unbalanced journal entry", journal(json!([leg(&b.cash, "debit", 10), leg(&b.wallet, "credit", 9)])), 422, "unbalanced"),
        case("journal entry with one leg", journal(json!([leg(&b.cash, "debit", 10)])), 422, "leg-count"),
        case("account twice in a journal entry", journal(json!([leg(&b.cash, "debit", 10), leg(&b.wallet, "credit", 5), leg(&b.wallet, "credit", 5)])), 422, "duplicate-account"),
    ]
}

#[rustfmt::skip]
fn header_cases(b: &Books, read_only: &str) -> Vec<Case> {
    let good = transfer_body(&b.cash, &b.wallet, 10, "USD");
    let (used, used_body) = &b.used_key;
    let mut other_body = used_body.clone();
    other_body["amount"] = json!(999);
    let account = json!({"currency": "USD", "normal_side": "debit"});
    vec![
        case("missing token", transfer(good.clone()).no_token(), 401, "unauthorized"),
        case("invalid token", transfer(good.clone()).token("invalid.token.here"), 401, "unauthorized"),
        case("missing scope", transfer(good.clone()).token(read_only), 403, "insufficient-scope"),
        case("missing Idempotency-Key", Req::post("/v1/transfers").json(&good), 400, "idempotency-key-required"),
        case("Idempotency-Key too long", Req::post("/v1/transfers").key(&"k".repeat(256)).json(&good), 400, "idempotency-key-invalid"),
        case("Idempotency-Key with a space", Req::post("/v1/transfers").key("a b").json(&good), 400, "idempotency-key-invalid"),
        case("same key, other body", Req::post("/v1/transfers").key(used).json(&other_body), 422, "idempotency-key-reused"),
        case("same key, other route", Req::post("/v1/accounts").key(used).json(&account), 422, "idempotency-key-reused"),
    ]
}

/// The cursor with its first character changed.
fn altered(cursor: &str) -> String {
    let first = if cursor.starts_with('A') { "B" } else { "A" };
    format!("{first}{}", &cursor[1..])
}

/// What a cursor of the accounts listing looked like before cursors were authenticated: the
/// last sort key (an account id), base64url.
fn forged(account: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(account)
}

#[rustfmt::skip]
fn route_cases(b: &Books) -> Vec<Case> {
    let cash = &b.cash;
    vec![
        case("unknown route", Req::get("/v1/nope"), 404, "not-found"),
        case("unknown route, no token", Req::get("/v2/accounts").no_token(), 404, "not-found"),
        case("wrong method", Req::new(Method::DELETE, "/v1/transfers"), 405, "method-not-allowed"),
        case("wrong method on an item", Req::new(Method::PUT, &format!("/v1/accounts/{cash}")), 405, "method-not-allowed"),
        case("malformed account id in path", Req::get("/v1/accounts/not-an-id"), 404, "not-found"),
        case("transfer id as account id", Req::get(&format!("/v1/accounts/{NO_SUCH_TRANSFER}")), 404, "not-found"),
        case("malformed transfer id in path", Req::get("/v1/transfers/xfer_%23x"), 404, "not-found"),
        case("unknown transfer", Req::get(&format!("/v1/transfers/{NO_SUCH_TRANSFER}")), 404, "not-found"),
        case("invalid cursor", Req::get("/v1/transfers?cursor=!!!"), 400, "invalid-cursor"),
        case("cursor of another listing", Req::get(&format!("/v1/transfers?cursor={}", b.accounts_cursor)), 400, "invalid-cursor"),
        case("altered cursor", Req::get(&format!("/v1/accounts?cursor={}", altered(&b.accounts_cursor))), 400, "invalid-cursor"),
        case("forged cursor (a plain sort key)", Req::get(&format!("/v1/accounts?cursor={}", forged(&b.cash))), 400, "invalid-cursor"),
        case("limit=0", Req::get("/v1/transfers?limit=0"), 400, "invalid-parameter"),
        case("limit=501", Req::get("/v1/transfers?limit=501"), 400, "invalid-parameter"),
        case("limit=abc", Req::get("/v1/accounts?limit=abc"), 400, "invalid-parameter"),
        case("limit=-1", Req::get(&format!("/v1/accounts/{cash}/entries?limit=-1")), 400, "invalid-parameter"),
        case("unknown parameter", Req::get("/v1/transfers?page=2"), 400, "invalid-parameter"),
        case("bad order", Req::get("/v1/transfers?order=sideways"), 400, "invalid-parameter"),
        case("bad as_of", Req::get(&format!("/v1/accounts/{cash}/balance?as_of=yesterday")), 400, "invalid-parameter"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_request_gets_its_problem_and_changes_nothing() {
    every_bad_request(&[]).await;
}

/// The same table of bad requests, the same answers, on the DynamoDB backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_dynamodb_every_bad_request_gets_the_same_problem_and_changes_nothing() {
    let settings = dynamodb_settings();
    let settings: Vec<(&str, &str)> = settings.iter().map(|(n, v)| (*n, v.as_str())).collect();
    every_bad_request(&settings).await;
}

async fn every_bad_request(store: &[(&str, &str)]) {
    let body_max = BODY_BYTES_MAX.to_string();
    let mut settings = vec![("body_bytes_max", body_max.as_str())];
    settings.extend_from_slice(store);
    let instance = Instance::start_with(&settings).await;
    let api = instance.api("acme");
    let b = books(&api).await;
    let before = snapshot(&api).await;
    let read_only = instance.tokens.mint("acme", &["ledger:read"]);

    let mut cases = body_cases(&b);
    cases.extend(ledger_cases(&b));
    cases.extend(header_cases(&b, &read_only));
    cases.extend(route_cases(&b));
    assert!(cases.len() > 60);
    for case in cases {
        check(&api, case).await;
    }
    // An oversized body over HTTP/1.1 too (barely over, so that it fits the socket buffers;
    // larger ones: see `large_oversized_bodies_over_http1_get_their_413`).
    let h1 = instance
        .anonymous(Protocol::Http1)
        .with_token(&instance.tokens.mint("acme", READ_WRITE));
    let mut big = transfer_body(&b.cash, &b.wallet, 10, "USD");
    big["description"] = json!("x".repeat(BODY_BYTES_MAX));
    let big = case(
        "oversized body over HTTP/1.1",
        transfer(big),
        413,
        "payload-too-large",
    );
    check(&h1, big).await;

    let after = snapshot(&api).await;
    assert_eq!(
        after.0, before.0,
        "accounts (balances, entry counts) changed"
    );
    assert_eq!(after.1, before.1, "transfers changed");
    for account in &before.0 {
        let id = account["id"].as_str().unwrap();
        let entries = api.list_all(&format!("/v1/accounts/{id}/entries")).await;
        assert_eq!(json!(entries.len()), account["entry_count"], "{id}");
    }
    let hold = api.get(&format!("/v1/transfers/{}", b.hold)).await;
    assert_eq!(hold.json["state"], "pending");
    api.assert_balanced().await;
    instance.stop().await;
}

/// Over HTTP/1.1, a body far over `body_bytes_max` still gets its 413 problem: the gateway
/// reads and discards the rest (within bounds) before answering, so the client is not reset
/// while it is still sending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_oversized_bodies_over_http1_get_their_413() {
    const TRIES: usize = 8;
    let instance = Instance::start_with(&[("body_bytes_max", &BODY_BYTES_MAX.to_string())]).await;
    let h1 = instance
        .anonymous(Protocol::Http1)
        .with_token(&instance.tokens.mint("acme", READ_WRITE));
    let mut body = transfer_body(NO_SUCH_ACCOUNT, "acct_01ARZ3NDEKTSV4RRFFQ69G5FAW", 1, "USD");
    body["description"] = json!("x".repeat(16 << 20));
    let mut broken = Vec::new();
    for _ in 0..TRIES {
        match h1.try_send(transfer(body.clone())).await {
            Ok(reply) => {
                reply.expect_problem(413, "payload-too-large");
            }
            Err(e) => broken.push(format!("{e:?}")),
        }
    }
    assert!(
        broken.is_empty(),
        "{} of {TRIES} oversized requests got no answer, e.g. {}",
        broken.len(),
        broken[0]
    );
    instance.stop().await;
}
