//! The DynamoDB store against a DynamoDB wire-protocol server (moto in `tests/run.sh`), with the
//! real SDK; and its pure parts on their own.

use std::time::Duration;

use super::*;

/// The endpoint of the server the tests use; `tests/run.sh` starts one and sets it.
pub const ENDPOINT_ENV: &str = "STRONGROOM_TEST_DYNAMODB_ENDPOINT";

fn endpoint() -> String {
    std::env::var(ENDPOINT_ENV).unwrap_or_else(|_| {
        panic!(
            "{ENDPOINT_ENV} is not set: run the tests with tests/run.sh, which starts a DynamoDB \
             server (moto) on 127.0.0.1 and sets it"
        )
    })
}

fn config(table: &str) -> DynamoConfig {
    DynamoConfig {
        table: table.to_owned(),
        region: Some("us-east-1".into()),
        endpoint: Some(endpoint()),
        ..DynamoConfig::default()
    }
}

/// A store on a new table of its own.
async fn fresh_store() -> DynamoStore {
    let table = format!("test-{}", ulid::Ulid::generate().to_string().to_lowercase());
    let store = DynamoStore::connect(&config(&table))
        .await
        .expect("connect");
    assert!(store.create_table().await.expect("create table"));
    assert!(
        !store.create_table().await.expect("create table again"),
        "created twice"
    );
    store
}

#[tokio::test]
async fn conformance() {
    let store = fresh_store().await;
    crate::store::conformance::run_all(&store).await.unwrap();
    // Twice on one table: the suite writes under fresh partitions each run.
    crate::store::conformance::run_all(&store).await.unwrap();
    let stats = store.stats();
    assert!(
        stats.requests > 0 && stats.conditions_failed > 0,
        "{stats:?}"
    );
    assert_eq!(stats.gave_up, 0, "{stats:?}");
    assert!(
        stats.transactions > 0 && stats.items_written >= stats.transactions,
        "{stats:?}"
    );
    assert!(
        stats.write_units_sized >= 2 * stats.items_written,
        "{stats:?}"
    );
}

#[tokio::test]
async fn a_missing_table_is_a_clear_error_not_a_retry_loop() {
    let store = DynamoStore::connect(&config("no-such-table"))
        .await
        .expect("connect");
    let error = store.ping().await.unwrap_err().to_string();
    assert!(error.contains("ResourceNotFoundException"), "{error}");
    let error = store
        .transact_write(vec![WriteOp::Delete {
            key: Key::new("p", "s"),
            condition: Condition::None,
        }])
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("ResourceNotFoundException"), "{error}");
    assert_eq!(store.stats().gave_up, 0);
}

#[tokio::test]
async fn an_unreachable_endpoint_is_retried_within_bounds_then_reported() {
    let mut config = config("t");
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    config.endpoint = Some(format!("http://127.0.0.1:{port}"));
    config.retry = RetryPolicy {
        attempts_max: 4,
        base: Duration::from_millis(1),
        cap: Duration::from_millis(5),
        total_max: Duration::from_secs(5),
    };
    let store = DynamoStore::connect(&config).await.expect("connect");
    let started = Instant::now();
    let error = store.get(Key::new("p", "s")).await.unwrap_err();
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    assert!(error.to_string().contains("after 4 attempts"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let stats = store.stats();
    assert_eq!(
        (stats.requests, stats.retries_network, stats.gave_up),
        (4, 3, 1)
    );
}

#[test]
fn backoff_is_full_jitter_under_the_cap() {
    let policy = RetryPolicy::default();
    for retry in 0..20 {
        let ceiling = policy
            .base
            .saturating_mul(1 << retry.min(16))
            .min(policy.cap);
        for _ in 0..50 {
            assert!(policy.backoff(retry) <= ceiling);
        }
    }
    // Jitter: not always the same value.
    let draws: std::collections::BTreeSet<Duration> = (0..50).map(|_| policy.backoff(5)).collect();
    assert!(draws.len() > 10, "{draws:?}");
}

#[test]
fn the_retry_policy_ends_at_its_attempt_and_time_bounds() {
    let policy = RetryPolicy {
        attempts_max: 3,
        base: Duration::from_millis(1),
        cap: Duration::from_millis(1),
        total_max: Duration::from_secs(60),
    };
    let now = Instant::now();
    // Attempts 1 and 2 may be followed by another; attempt 3 is the last.
    assert!(policy.next_pause(now, 0).is_some());
    assert!(policy.next_pause(now, 1).is_some());
    assert!(policy.next_pause(now, 2).is_none());
    // A call that has already used its time gets no retry, however few attempts it made.
    let spent = RetryPolicy {
        total_max: Duration::ZERO,
        base: Duration::from_millis(100),
        cap: Duration::from_millis(100),
        ..policy
    };
    let long_ago = now - Duration::from_millis(1);
    assert!(spent.next_pause(long_ago, 0).is_none());
}

#[test]
fn write_units_follow_the_sizing_rules() {
    let put = |pk: &str, body: usize| WriteOp::Put {
        item: Item {
            key: Key::new(pk, "HEAD"),
            version: 12,
            body: vec![0; body],
        },
        condition: Condition::None,
    };
    // Names pk, sk, v, b (6 bytes), keys "p" and "HEAD", version 12 (2 bytes), body.
    let overhead = 6 + 1 + 4 + 2;
    assert_eq!(transactional_write_units(&put("p", 1024 - overhead)), 2);
    assert_eq!(transactional_write_units(&put("p", 1025 - overhead)), 4);
    assert_eq!(transactional_write_units(&put("p", 3000)), 6);
    let delete = WriteOp::Delete {
        key: Key::new("p", "s"),
        condition: Condition::None,
    };
    assert_eq!(transactional_write_units(&delete), 2);
}

#[test]
fn request_tokens_name_the_actions() {
    let put = |version, condition| WriteOp::Put {
        item: Item {
            key: Key::new("p", "s"),
            version,
            body: b"x".to_vec(),
        },
        condition,
    };
    let a = request_token(&[put(2, Condition::Version(1))]);
    assert_eq!(a, request_token(&[put(2, Condition::Version(1))]));
    assert!(a.len() <= 36 && a.chars().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(a, request_token(&[put(2, Condition::None)]));
    assert_ne!(a, request_token(&[put(3, Condition::Version(2))]));
    // Field boundaries count: ("ab", "c") is not ("a", "bc").
    let key = |pk: &str, sk: &str| WriteOp::Delete {
        key: Key::new(pk, sk),
        condition: Condition::None,
    };
    assert_ne!(
        request_token(&[key("ab", "c")]),
        request_token(&[key("a", "bc")])
    );
}

#[test]
fn query_ranges_after_a_cursor() {
    let q = |after: Option<&str>, descending| Query {
        pk: "p".into(),
        from: "E#0003".into(),
        to: "E#0006".into(),
        descending,
        limit: 2,
        after: after.map(str::to_owned),
    };
    let between = |r: Option<Range>| match r {
        Some(Range::Between(low, high)) => Some((low, high)),
        _ => None,
    };
    assert_eq!(
        between(range_of(&q(None, false))),
        Some(("E#0003".into(), "E#0006".into()))
    );
    assert_eq!(
        between(range_of(&q(Some("E#0004"), false))),
        Some(("E#0004\0".into(), "E#0006".into()))
    );
    assert!(range_of(&q(Some("E#0006"), false)).is_none());
    assert!(matches!(range_of(&q(Some("E#0005"), true)), Some(Range::Below(a)) if a == "E#0005"));
    assert!(range_of(&q(Some("E#0003"), true)).is_none());
    assert_eq!(
        between(range_of(&q(Some("F"), true))),
        Some(("E#0003".into(), "E#0006".into()))
    );
    let mut from_start = q(None, true);
    from_start.from = String::new();
    assert!(matches!(range_of(&from_start), Some(Range::Between(low, _)) if low.is_empty()));
    from_start.to = String::new();
    assert!(range_of(&from_start).is_none());
    let mut crossed = q(None, false);
    crossed.to = "A".into();
    assert!(range_of(&crossed).is_none());
}

#[tokio::test]
async fn counters_add_atomically_across_clients() {
    let store = fresh_store().await;
    let other = DynamoStore::connect(&config(&store.table))
        .await
        .expect("connect");
    let key = Key::new("QUOTA#acme", "D#2026-11-24");
    assert_eq!(store.add_to_counter(&key, 3, 1).await.expect("add"), 3);
    assert_eq!(other.add_to_counter(&key, 4, 1).await.expect("add"), 7);
    // Concurrent adds from both lose nothing.
    let adds = (0..20).map(|i| {
        let (a, b, key) = (store.clone(), other.clone(), key.clone());
        tokio::spawn(async move {
            let client = if i % 2 == 0 { a } else { b };
            client.add_to_counter(&key, 1, 1).await.expect("add")
        })
    });
    let mut seen = Vec::new();
    for add in adds.collect::<Vec<_>>() {
        seen.push(add.await.expect("join"));
    }
    seen.sort_unstable();
    assert_eq!(seen, (8..=27).collect::<Vec<u64>>());
    // Another key is another counter.
    let day = Key::new("QUOTA#acme", "D#2026-11-25");
    assert_eq!(store.add_to_counter(&day, 1, 1).await.expect("add"), 1);
}
