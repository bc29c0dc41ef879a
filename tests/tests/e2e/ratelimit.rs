//! Rate limits through real TLS with real tokens: per tenant after authentication (with tiers
//! from configuration), per client address before it (a flood of bad tokens is refused without
//! looking at them; `X-Forwarded-For` counts only from a trusted proxy), the IETF `RateLimit`
//! fields on answers, and refused requests that change nothing.
//!
//! Daily quotas per tenant (one count for every task: in DynamoDB, with batched updates) are
//! counted and refused, and two instances sharing a table stay within the documented bound.
//!
//! Quotas are small and windows long (an hour, a day): a budget spent in a test stays spent,
//! however slowly the machine runs.

use serde_json::json;

use std::time::Duration;

use crate::harness::{BadToken, Instance, Reply, Req, dynamodb_settings, unique_key};

/// `RateLimit-Policy` and `RateLimit` of an answer.
fn fields(reply: &Reply) -> (Option<&str>, Option<&str>) {
    (reply.header("ratelimit-policy"), reply.header("ratelimit"))
}

#[track_caller]
fn expect_rate_limited(reply: &Reply, policy: &str, retry_after: &str) {
    reply.expect_problem(429, "rate-limited");
    assert_eq!(reply.json["policy"], json!(policy), "{}", reply.json);
    assert_eq!(reply.header("retry-after"), Some(retry_after));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_over_its_limit_gets_429_and_another_is_unaffected() {
    let instance = Instance::start_with(&[("rate_tenant", "3/1h")]).await;
    let acme = instance.api("acme");
    let globex = instance.api("globex");
    // Three requests an hour, refilled one per 20 minutes: each answer says what is left.
    for (left, reset_s) in [(2, 1_200), (1, 2_400), (0, 3_600)] {
        let reply = acme.get("/v1/accounts").await;
        reply.expect(200);
        assert_eq!(
            fields(&reply),
            (
                Some(r#""tenant";q=3;w=3600"#),
                Some(format!(r#""tenant";r={left};t={reset_s}"#).as_str())
            )
        );
    }
    let refused = acme.get("/v1/accounts").await;
    expect_rate_limited(&refused, "tenant", "1200");
    assert_eq!(
        fields(&refused),
        (
            Some(r#""tenant";q=3;w=3600"#),
            Some(r#""tenant";r=0;t=3600"#)
        )
    );
    // Another tenant has its own budget.
    let other = globex.get("/v1/accounts").await;
    other.expect(200);
    assert_eq!(fields(&other).1, Some(r#""tenant";r=2;t=1200"#));
    // Health checks are not counted, and carry no fields.
    let health = acme.get("/health/ready").await;
    health.expect(200);
    assert_eq!(fields(&health), (None, None));
    instance.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tier_from_configuration_applies() {
    let instance = Instance::start_with(&[
        ("rate_tenant", "1/1h"),
        ("rate_tenant_tiers", "gold=5/1h,silver=2/1h"),
        ("rate_tenant_tier_of", "acme=gold,initech=silver"),
    ])
    .await;
    let acme = instance.api("acme");
    for left in (0..5).rev() {
        let reply = acme.get("/v1/accounts").await;
        reply.expect(200);
        assert_eq!(fields(&reply).0, Some(r#""tenant";q=5;w=3600"#));
        assert!(
            fields(&reply)
                .1
                .is_some_and(|f| f.starts_with(&format!(r#""tenant";r={left};"#))),
            "{:?}",
            fields(&reply)
        );
    }
    expect_rate_limited(&acme.get("/v1/accounts").await, "tenant", "720");
    let initech = instance.api("initech");
    initech.get("/v1/accounts").await.expect(200);
    initech.get("/v1/accounts").await.expect(200);
    expect_rate_limited(&initech.get("/v1/accounts").await, "tenant", "1800");
    // A tenant without a tier has the default.
    let globex = instance.api("globex");
    let first = globex.get("/v1/accounts").await;
    first.expect(200);
    assert_eq!(fields(&first).0, Some(r#""tenant";q=1;w=3600"#));
    expect_rate_limited(&globex.get("/v1/accounts").await, "tenant", "3600");
    instance.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_bad_tokens_is_refused_before_the_tokens_are_looked_at() {
    let instance = Instance::start_with(&[("rate_ip", "5/1h"), ("rate_tenant", "100/1h")]).await;
    let api = instance.api("acme");
    let bad = instance.tokens.bad(BadToken::TamperedSignature);
    // The first five are verified, and refused for what they are.
    for _ in 0..5 {
        let reply = api.send(Req::get("/v1/accounts").token(&bad)).await;
        reply.expect_problem(401, "unauthorized");
        assert!(fields(&reply).0.is_some_and(|f| f == r#""ip";q=5;w=3600"#));
    }
    // Then the address is out of budget: 429 without a challenge, since the token was never
    // looked at (a verified one would get 401 with `WWW-Authenticate`).
    for _ in 0..20 {
        let reply = api.send(Req::get("/v1/accounts").token(&bad)).await;
        expect_rate_limited(&reply, "ip", "720");
        assert_eq!(reply.header("www-authenticate"), None);
        assert_eq!(fields(&reply).1, Some(r#""ip";r=0;t=3600"#));
    }
    // A good token from the same address waits like everyone there.
    expect_rate_limited(&api.get("/v1/accounts").await, "ip", "720");
    // Health checks are never limited.
    api.get("/health/live").await.expect(200);
    instance.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_forwarded_for_from_an_untrusted_peer_does_not_change_the_key() {
    let instance = Instance::start_with(&[("rate_ip", "2/1h")]).await;
    let api = instance.api("acme");
    let from = |address: &str| Req::get("/v1/accounts").header("x-forwarded-for", address);
    api.send(from("198.51.100.1")).await.expect(200);
    api.send(from("198.51.100.2")).await.expect(200);
    // A third "client" is still 127.0.0.1, whose two requests are spent.
    expect_rate_limited(&api.send(from("198.51.100.3")).await, "ip", "1800");
    expect_rate_limited(&api.get("/v1/accounts").await, "ip", "1800");
    instance.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxy_names_the_rightmost_untrusted_address() {
    let instance =
        Instance::start_with(&[("rate_ip", "1/1h"), ("trusted_proxies", "127.0.0.1")]).await;
    let api = instance.api("acme");
    let from = |xff: &str| Req::get("/v1/accounts").header("x-forwarded-for", xff);
    // Each forwarded client has its own budget.
    api.send(from("198.51.100.1")).await.expect(200);
    api.send(from("198.51.100.2")).await.expect(200);
    api.send(from("2001:db8::1")).await.expect(200);
    // Spoofed entries left of the one the proxy wrote are ignored.
    let spoofed = api.send(from("203.0.113.9, 198.51.100.1")).await;
    expect_rate_limited(&spoofed, "ip", "3600");
    // A trusted hop on the right is walked over.
    let hop = api.send(from("198.51.100.2, 127.0.0.1")).await;
    expect_rate_limited(&hop, "ip", "3600");
    // Another address of the same IPv6 /64 is the same client.
    expect_rate_limited(&api.send(from("2001:db8::2")).await, "ip", "3600");
    // A malformed list is accounted to the proxy itself, which has a budget of its own.
    api.send(from("not-an-address")).await.expect(200);
    expect_rate_limited(&api.get("/v1/accounts").await, "ip", "3600");
    instance.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_requests_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let limited = [("rate_tenant", "1/1h")];
    let instance = Instance::start_in(dir.path(), &limited).await;
    let api = instance.api("acme");
    let body = json!({"currency": "USD", "normal_side": "debit"});
    api.post("/v1/accounts", &unique_key("first"), &body)
        .await
        .expect(201);
    let refused_key = unique_key("refused");
    let refused = api.post("/v1/accounts", &refused_key, &body).await;
    expect_rate_limited(&refused, "tenant", "3600");
    instance.stop().await;
    // Without limits, on the same data: one account, and the refused key was never used.
    let instance = Instance::start_in(dir.path(), &[]).await;
    let api = instance.api("acme");
    assert_eq!(api.list_all("/v1/accounts").await.len(), 1);
    let again = api.post("/v1/accounts", &refused_key, &body).await;
    again.expect(201);
    assert!(!again.replayed());
    // Without limits, answers carry no fields.
    assert_eq!(fields(&again), (None, None));
    instance.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daily_quota_is_counted_and_refused_until_midnight() {
    let instance =
        Instance::start_with(&[("quota_tenant_day", "3"), ("rate_tenant", "100/1h")]).await;
    let acme = instance.api("acme");
    for left in [2, 1, 0] {
        let reply = acme.get("/v1/accounts").await;
        reply.expect(200);
        let (policy, state) = fields(&reply);
        assert_eq!(
            policy,
            Some(r#""tenant";q=100;w=3600, "tenant-day";q=3;w=86400"#)
        );
        let day = state.and_then(|s| s.split(", ").nth(1)).unwrap_or_default();
        assert!(
            day.starts_with(&format!(r#""tenant-day";r={left};t="#)),
            "{state:?}"
        );
    }
    let refused = acme.get("/v1/accounts").await;
    refused.expect_problem(429, "rate-limited");
    assert_eq!(refused.json["policy"], json!("tenant-day"));
    // Retry after midnight (UTC), at most a day away.
    let retry: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=86_400).contains(&retry), "{retry}");
    // Another tenant's day is its own.
    instance.api("globex").get("/v1/accounts").await.expect(200);
    instance.stop().await;
}

/// Two instances on one DynamoDB table (moto), each counting locally and adding its counts
/// every 20 ms or every 2 requests: together they admit the quota, and less than
/// `quota + 2 · tasks · quota_batch_max`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_share_a_daily_quota_on_dynamodb_within_its_bound() {
    const QUOTA: usize = 20;
    const BATCH: usize = 2;
    let shared = dynamodb_settings();
    let mut settings: Vec<(&str, &str)> = shared.iter().map(|(n, v)| (*n, v.as_str())).collect();
    settings.extend([
        ("quota_tenant_day", "20"),
        ("quota_batch_max", "2"),
        ("quota_flush_ms", "20"),
    ]);
    let a = Instance::start_with(&settings).await;
    let b = Instance::start_with(&settings).await;
    let apis = [a.api("acme"), b.api("acme")];
    // Alternately, until the quota is reached and 20 more requests were refused or not.
    let (mut admitted, mut after) = (0, 0);
    for i in 0..1_000 {
        if admitted >= QUOTA {
            after += 1;
            if after > 20 {
                break;
            }
        }
        let reply = apis[i % 2].get("/v1/accounts").await;
        match reply.status {
            200 => admitted += 1,
            429 => assert_eq!(reply.json["policy"], json!("tenant-day"), "{}", reply.json),
            other => panic!("unexpected {other}: {}", reply.json),
        }
    }
    assert!(
        (QUOTA..QUOTA + 2 * 2 * BATCH).contains(&admitted),
        "admitted {admitted} of a quota of {QUOTA}"
    );
    // Once both flushed, both refuse.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for api in &apis {
        let reply = api.get("/v1/accounts").await;
        reply.expect_problem(429, "rate-limited");
        assert!(reply.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    }
    a.stop().await;
    b.stop().await;
}
