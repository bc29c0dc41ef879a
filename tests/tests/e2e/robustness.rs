//! Garbage in, problems out: every POST route gets about 200 random and mutated bodies (random
//! bytes, truncated and bit-flipped JSON, huge numbers, deep nesting, wrong types, odd strings).
//! Every answer is a well-formed 4xx problem, never a 5xx or a dropped connection, and the
//! server is still ready afterwards.
//!
//! Bodies that stay valid by chance must still be refused, so the valid bases name accounts and
//! transfers that do not exist; only account creation can succeed (201), and is allowed to.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::harness::{Api, Instance, NO_SUCH_ACCOUNT, NO_SUCH_TRANSFER, Req, unique_key};

/// Bodies per route.
const BODIES_PER_ROUTE: usize = 200;
/// Requests in flight at once.
const CONCURRENCY: usize = 16;

/// Every POST route, with a valid body for it.
fn routes() -> Vec<(String, Value)> {
    let xfer = json!({
        "debit_account_id": NO_SUCH_ACCOUNT,
        "credit_account_id": "acct_01ARZ3NDEKTSV4RRFFQ69G5FAW",
        "amount": 100,
        "currency": "USD",
        "description": "rent",
        "metadata": {"k": "v"},
        "pending": {"timeout_seconds": 60},
    });
    let account = format!("/v1/accounts/{NO_SUCH_ACCOUNT}");
    let transfer = format!("/v1/transfers/{NO_SUCH_TRANSFER}");
    vec![
        (
            "/v1/accounts".into(),
            json!({"currency": "USD", "normal_side": "credit", "balance_constraint": "none",
                   "name": "n", "external_ref": "r", "metadata": {"a": "b"}}),
        ),
        ("/v1/transfers".into(), xfer.clone()),
        (
            "/v1/transfers/batch".into(),
            json!({"mode": "atomic", "transfers": [xfer.clone(), xfer]}),
        ),
        (
            "/v1/journal-entries".into(),
            json!({"legs": [
                {"account_id": NO_SUCH_ACCOUNT, "direction": "debit", "amount": 5, "currency": "USD"},
                {"account_id": "acct_01ARZ3NDEKTSV4RRFFQ69G5FAW", "direction": "credit", "amount": 5, "currency": "USD"},
            ], "description": "d", "metadata": {}}),
        ),
        (format!("{account}/freeze"), json!({})),
        (format!("{account}/unfreeze"), json!({})),
        (format!("{account}/close"), json!({})),
        (format!("{transfer}/post"), json!({"amount": 5})),
        (format!("{transfer}/void"), json!({})),
        (
            format!("{transfer}/reverse"),
            json!({"description": "x", "metadata": {"a": "b"}}),
        ),
    ]
}

/// A JSON value of a random kind, sometimes nasty.
fn random_value(rng: &mut StdRng, depth: u32) -> Value {
    match rng.random_range(0..12) {
        0 => Value::Null,
        1 => json!(rng.random::<bool>()),
        2 => json!(rng.random::<i64>()),
        3 => json!(rng.random::<f64>() * 1e300),
        4 => json!(""),
        5 => json!("x".repeat(rng.random_range(0..2000))),
        6 => json!("\u{0000}\u{202e}\u{1F4A5}'\"<>%00"),
        7 => json!("4111 1111 1111 1111"),
        8 if depth < 3 => json!([random_value(rng, depth + 1), random_value(rng, depth + 1)]),
        9 if depth < 3 => json!({"a": random_value(rng, depth + 1)}),
        10 => json!(u64::MAX),
        _ => json!(-1),
    }
}

/// One bad body, derived from a valid one.
fn mutate(rng: &mut StdRng, valid: &Value) -> Vec<u8> {
    let text = valid.to_string();
    match rng.random_range(0..14) {
        // Random bytes.
        0 => {
            let mut bytes = vec![0u8; rng.random_range(0..300)];
            rng.fill(&mut bytes[..]);
            bytes
        }
        // Truncated JSON.
        1 => text.as_bytes()[..rng.random_range(0..text.len())].to_vec(),
        // A flipped byte.
        2 => {
            let mut bytes = text.into_bytes();
            let i = rng.random_range(0..bytes.len());
            bytes[i] ^= 1 << rng.random_range(0..8);
            bytes
        }
        // A field of the wrong type, or an odd value.
        3..=5 => {
            let mut v = valid.clone();
            if let Some(map) = v.as_object_mut() {
                let keys: Vec<String> = map.keys().cloned().collect();
                if !keys.is_empty() {
                    let key = &keys[rng.random_range(0..keys.len())];
                    map.insert(key.clone(), random_value(rng, 0));
                }
            }
            v.to_string().into_bytes()
        }
        // Huge and odd numbers, written out.
        6 => {
            let numbers = [
                "1e999999",
                "-1e999999",
                "123456789012345678901234567890",
                "-0",
                "1e-400",
                "0.0000001",
                "9223372036854775807.5",
                "NaN",
                "Infinity",
                "0x10",
                "01",
            ];
            let n = numbers[rng.random_range(0..numbers.len())];
            text.replacen(":100", &format!(":{n}"), 1)
                .replacen(":5", &format!(":{n}"), 1)
                .replacen("{}", &format!(r#"{{"amount":{n}}}"#), 1)
                .into_bytes()
        }
        // Deep nesting.
        7 => {
            let depth = rng.random_range(100..20_000);
            format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes()
        }
        8 => {
            let depth = rng.random_range(100..5_000);
            let inner = format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth));
            text.replacen('{', &format!(r#"{{"metadata":{inner},"#), 1)
                .into_bytes()
        }
        // Not an object at all.
        9 => random_value(rng, 0).to_string().into_bytes(),
        // Invalid UTF-8 and lone surrogates inside strings.
        10 => {
            let mut bytes = text.replacen("\"", "\"\u{FFFD}", 1).into_bytes();
            let i = rng.random_range(0..bytes.len());
            bytes.insert(i, 0xFF);
            bytes
        }
        11 => text.replacen('"', r#""\ud800"#, 3).into_bytes(),
        // Duplicate keys, trailing garbage, and several documents.
        12 => format!("{text}{text}").into_bytes(),
        _ => {
            let mut v = valid.clone();
            if let Some(map) = v.as_object_mut() {
                map.insert(format!("extra{}", rng.random::<u8>()), json!(1));
            }
            format!("{},", v).into_bytes()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bodies_get_problems_never_5xx() {
    let seed: u64 = std::env::var("E2E_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("robustness seed {seed} (set E2E_SEED to replay)");
    let mut rng = StdRng::seed_from_u64(seed);
    let instance = Instance::start().await;
    let api = instance.api("acme");

    let mut cases = Vec::new();
    for (path, valid) in routes() {
        for _ in 0..BODIES_PER_ROUTE {
            cases.push((path.clone(), mutate(&mut rng, &valid)));
        }
    }
    let mut created = 0;
    for chunk in cases.chunks(CONCURRENCY) {
        let mut tasks = JoinSet::new();
        for (path, body) in chunk.iter().cloned() {
            let api: Api = api.clone();
            tasks.spawn(async move {
                let req = Req::post(&path).key(&unique_key("fuzz")).raw(body.clone());
                (path, body, api.try_send(req).await)
            });
        }
        for (path, body, result) in tasks.join_all().await {
            let shown = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
            let reply = result.unwrap_or_else(|e| panic!("POST {path} {shown:?}: {e:?}"));
            if path == "/v1/accounts" && reply.status == 201 {
                created += 1;
                continue;
            }
            assert!(
                (400..500).contains(&reply.status),
                "seed {seed}: POST {path} {shown:?} answered {}: {}",
                reply.status,
                reply.json
            );
            reply.assert_problem_shape();
        }
    }
    println!("{created} bodies created an account");

    let ready = api.send(Req::get("/health/ready").no_token()).await;
    ready.expect(200);
    assert_eq!(ready.json["status"], "ready");
    assert!(api.list_all("/v1/transfers").await.is_empty());
    assert_eq!(api.list_all("/v1/accounts").await.len(), created);
    instance.stop().await;
}
