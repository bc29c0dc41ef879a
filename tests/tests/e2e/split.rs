//! Split deployment: the gateway alone (`serve --upstream`) in front of the ledger alone
//! (`strongroom ledger`), and what the gateway does to what it forwards: hop-by-hop headers,
//! the token, the request id, the trace context, retries and the circuit breaker.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use gateway::internal::{Bound, IDENTITY_HEADER, InternalKey};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;

use crate::harness::{Instance, Protocol, READ_WRITE, Req, unique_key};

/// A key file both sides read.
fn shared_key(dir: &Path) -> PathBuf {
    let path = dir.join("internal.key");
    InternalKey::load_or_generate(&path, true).unwrap();
    path
}

/// A partner's identity, as the gateway would assert it.
fn partner_identity() -> gateway::auth::Identity {
    gateway::auth::Identity {
        subject: "svc".into(),
        tenant: ledger::TenantId::new("acme").unwrap(),
        scopes: vec!["ledger:read".into()],
        roles: Vec::new(),
        expires_at: jsonwebtoken::get_current_timestamp() + 600,
        client_id: None,
        cert_thumbprint: None,
    }
}

async fn pair(dir: &Path) -> (Instance, Instance, PathBuf) {
    let key = shared_key(dir);
    let key_s = key.display().to_string();
    let ledger = Instance::start_ledger(&[("internal_key_file", &key_s)]).await;
    let ca = gateway::tls::dev_cert_files(&ledger.data_dir).cert;
    let gateway = Instance::start_with(&[
        ("upstream", &ledger.url),
        ("upstream_ca_file", &ca.display().to_string()),
        ("internal_key_file", &key_s),
    ])
    .await;
    (gateway, ledger, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_alone_serves_the_api_through_the_ledger_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (gateway, ledger, key) = pair(dir.path()).await;
    let api = gateway.api("acme");
    let cash = api.account("USD", "debit", "none").await;
    let revenue = api.account("USD", "credit", "none").await;
    let transfer = api.transfer(&cash, &revenue, 1_250, "USD").await;
    assert_eq!(transfer["state"], "posted");
    assert_eq!(api.get_account(&cash).await["balances"]["posted"], 1_250);
    api.assert_balanced().await;
    // The same key twice: the ledger's replay comes back through the gateway.
    let key_header = unique_key("split");
    let body = json!({"currency": "EUR", "normal_side": "debit"});
    let first = api.post("/v1/accounts", &key_header, &body).await;
    first.expect(201);
    let again = api.post("/v1/accounts", &key_header, &body).await;
    again.expect(201);
    assert!(again.replayed());
    assert_eq!(again.json["id"], first.json["id"]);
    // Tenancy holds across the split: another tenant sees nothing.
    assert!(
        gateway
            .api("globex")
            .list_all("/v1/accounts")
            .await
            .is_empty()
    );

    // The gateway refuses at its door: bad tokens, missing scopes, unknown routes, methods.
    let anonymous = gateway.anonymous(Protocol::Negotiated);
    anonymous
        .send(Req::get("/v1/accounts").no_token())
        .await
        .expect_problem(401, "unauthorized");
    let read_only = gateway.tokens.mint("acme", &["ledger:read"]);
    api.send(
        Req::post("/v1/accounts")
            .key(&unique_key("ro"))
            .json(&body)
            .token(&read_only),
    )
    .await
    .expect_problem(403, "insufficient-scope");
    api.send(Req::get("/v1/nowhere"))
        .await
        .expect_problem(404, "not-found");
    api.send(Req::new(reqwest::Method::DELETE, "/v1/accounts"))
        .await
        .expect_problem(405, "method-not-allowed");
    anonymous
        .send(Req::get("/health/ready").no_token())
        .await
        .expect(200);
    let doc = anonymous.send(Req::get("/openapi.json").no_token()).await;
    doc.expect(200);
    assert!(doc.json["paths"]["/v1/transfers"].is_object());

    // Straight to the ledger: a perfectly good bearer token is not enough.
    let direct = ledger.anonymous(Protocol::Negotiated);
    let token = gateway
        .tokens
        .mint("acme", &["ledger:read", "ledger:write"]);
    let refused = direct.send(Req::get("/v1/accounts").token(&token)).await;
    refused.expect_problem(401, "unauthorized");
    assert!(
        refused.str("detail").contains("only through its gateway"),
        "{}",
        refused.json
    );
    // An assertion under the shared key works only for the request it names.
    let key = InternalKey::load(&key).unwrap();
    let identity = partner_identity();
    let assertion = |path: &str, rid: &str, key: &InternalKey| {
        key.assert(
            &identity,
            Bound {
                method: "GET",
                path_and_query: path,
                request_id: rid,
            },
            jsonwebtoken::get_current_timestamp(),
        )
    };
    let send = |path: &'static str, rid: &'static str, value: String| {
        direct.send(
            Req::get(path)
                .no_token()
                .header("x-request-id", rid)
                .header(IDENTITY_HEADER, &value),
        )
    };
    let good = send(
        "/v1/accounts",
        "direct-1",
        assertion("/v1/accounts", "direct-1", &key),
    )
    .await;
    good.expect(200);
    assert_eq!(good.json["data"].as_array().unwrap().len(), 3);
    for (path, rid, value) in [
        // Bound to another route.
        (
            "/v1/accounts",
            "direct-2",
            assertion("/v1/trial-balance", "direct-2", &key),
        ),
        // Bound to another request id.
        (
            "/v1/accounts",
            "direct-3",
            assertion("/v1/accounts", "direct-2", &key),
        ),
        // Made with another key.
        (
            "/v1/accounts",
            "direct-4",
            assertion(
                "/v1/accounts",
                "direct-4",
                &InternalKey::load_or_generate(&dir.path().join("other.key"), true).unwrap(),
            ),
        ),
    ] {
        send(path, rid, value)
            .await
            .expect_problem(401, "unauthorized");
    }
    gateway.stop().await;
    ledger.stop().await;
}

/// A stand-in upstream that records what reaches it and either answers or drops the
/// connection without answering.
struct Recorder {
    url: String,
    seen: Arc<Mutex<Vec<(String, HeaderMap)>>>,
    requests: Arc<AtomicU64>,
    drop_answers: Arc<AtomicBool>,
    delay_ms: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dropped on purpose")
    }
}

impl std::error::Error for Dropped {}

impl Recorder {
    async fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let requests = Arc::new(AtomicU64::new(0));
        let drop_answers = Arc::new(AtomicBool::new(false));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let (s, r, d, w) = (
            seen.clone(),
            requests.clone(),
            drop_answers.clone(),
            delay_ms.clone(),
        );
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (s, r, d, w) = (s.clone(), r.clone(), d.clone(), w.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<Incoming>| {
                        // The gateway's own audit records (of the answers it made itself)
                        // are taken and not counted: these tests count forwarded requests.
                        let records = req.uri().path() == gateway::audit_forward::RECORDS_PATH;
                        if !records {
                            r.fetch_add(1, Ordering::SeqCst);
                            let uri = req.uri().to_string();
                            s.lock().unwrap().push((uri, req.headers().clone()));
                        }
                        let drop = d.load(Ordering::SeqCst);
                        let delay = Duration::from_millis(w.load(Ordering::SeqCst));
                        async move {
                            if records {
                                return Ok(hyper::Response::new(Full::new(Bytes::from_static(
                                    br#"{"written":0,"failed":[]}"#,
                                ))));
                            }
                            tokio::time::sleep(delay).await;
                            if drop {
                                return Err(Dropped);
                            }
                            Ok(hyper::Response::builder()
                                .header("content-type", "application/json")
                                .header("connection", "x-up-hop")
                                .header("x-up-hop", "1")
                                .header("keep-alive", "timeout=5")
                                .header("x-up-end", "1")
                                .body(Full::new(Bytes::from_static(br#"{"ok":true}"#)))
                                .unwrap())
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        Recorder {
            url,
            seen,
            requests,
            drop_answers,
            delay_ms,
            task,
        }
    }

    fn count(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_gateway_forwards_and_what_it_strips() {
    let upstream = Recorder::start().await;
    let gateway = Instance::start_with(&[("upstream", &upstream.url)]).await;
    let api = gateway.api("acme");
    // HTTP/1.1: HTTP/2 forbids connection-specific headers.
    let http1 = gateway
        .anonymous(Protocol::Http1)
        .with_token(&gateway.tokens.mint("acme", READ_WRITE));
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let reply = http1
        .send(
            Req::get("/v1/accounts?limit=5")
                .header("x-request-id", "trace-me-1")
                .header("traceparent", &format!("00-{trace}-00f067aa0ba902b7-01"))
                .header("connection", "x-client-hop")
                .header("x-client-hop", "1")
                .header(IDENTITY_HEADER, "v1.forged.by-the-client"),
        )
        .await;
    reply.expect(200);
    assert_eq!(reply.json, json!({"ok": true}));
    assert_eq!(reply.header("x-request-id"), Some("trace-me-1"));
    assert_eq!(reply.header("x-up-end"), Some("1"));
    assert_eq!(
        reply.header("x-up-hop"),
        None,
        "named by the upstream's Connection"
    );
    assert_eq!(reply.header("keep-alive"), None);

    let (uri, headers) = upstream.seen.lock().unwrap()[0].clone();
    assert_eq!(uri, "/v1/accounts?limit=5");
    let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(
        header("authorization"),
        None,
        "the token stays at the gateway"
    );
    assert_eq!(header("x-client-hop"), None);
    assert_eq!(header("x-request-id").as_deref(), Some("trace-me-1"));
    assert_eq!(header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    let traceparent = header("traceparent").unwrap();
    assert!(
        traceparent.starts_with(&format!("00-{trace}-")),
        "{traceparent}"
    );
    assert!(
        !traceparent.contains("00f067aa0ba902b7"),
        "the gateway's own span"
    );
    // The client's forged assertion was replaced by one the ledger would accept.
    let key = InternalKey::load(&gateway.data_dir.join("internal.key")).unwrap();
    let identity = key
        .verify(
            &header(IDENTITY_HEADER).unwrap(),
            Bound {
                method: "GET",
                path_and_query: "/v1/accounts?limit=5",
                request_id: "trace-me-1",
            },
            jsonwebtoken::get_current_timestamp(),
        )
        .unwrap();
    assert_eq!(identity.tenant.as_str(), "acme");
    assert!(identity.scopes.iter().any(|s| s == "ledger:write"));

    // Without a trace context, the gateway starts one.
    api.send(Req::get("/v1/accounts")).await.expect(200);
    let (_, headers) = upstream.seen.lock().unwrap()[1].clone();
    let started = headers["traceparent"].to_str().unwrap().to_owned();
    assert!(
        started.starts_with("00-") && started.len() == 55,
        "{started}"
    );
    assert!(!started.contains(trace));
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_safe_requests_are_retried() {
    let upstream = Recorder::start().await;
    upstream.drop_answers.store(true, Ordering::SeqCst);
    let gateway = Instance::start_with(&[
        ("upstream", &upstream.url),
        ("upstream_retries_max", "2"),
        ("breaker_failures", "1000"),
    ])
    .await;
    let api = gateway.api("acme");
    let body = json!({"currency": "USD", "normal_side": "debit"});
    let cases = [
        (Req::get("/v1/accounts"), 3, "GET: safe"),
        (
            Req::post("/v1/accounts").key(&unique_key("r")).json(&body),
            3,
            "POST with an Idempotency-Key: the ledger answers a repeat with the first outcome",
        ),
        (
            Req::post("/v1/accounts").json(&body),
            1,
            "POST without a key: sent once",
        ),
    ];
    for (req, attempts, why) in cases {
        let before = upstream.count();
        let reply = api.send(req).await;
        reply.expect_problem(502, "upstream-failed");
        assert_eq!(reply.header("retry-after"), Some("1"));
        assert_eq!(upstream.count() - before, attempts, "{why}");
    }
    gateway.stop().await;

    // Nothing listens: the connection is never made, so even a keyless POST is retried, and the
    // problem says nothing was done.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    // The records of its 502s cannot reach a ledger either: at stop the gateway tries for its
    // grace, then logs them.
    let gateway = Instance::start_with(&[("upstream", &url), ("shutdown_grace_ms", "500")]).await;
    let reply = gateway
        .api("acme")
        .send(Req::post("/v1/accounts").json(&body))
        .await;
    reply.expect_problem(502, "upstream-failed");
    assert!(
        reply.str("detail").contains("nothing was done"),
        "{}",
        reply.json
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_circuit_breaker_holds_requests_back_then_lets_a_trial_through() {
    let upstream = Recorder::start().await;
    upstream.drop_answers.store(true, Ordering::SeqCst);
    let open_ms = 1_500;
    let gateway = Instance::start_with(&[
        ("upstream", &upstream.url),
        ("upstream_retries_max", "0"),
        ("breaker_failures", "3"),
        ("breaker_open_ms", &open_ms.to_string()),
    ])
    .await;
    let api = gateway.api("acme");
    for _ in 0..3 {
        api.send(Req::get("/v1/accounts"))
            .await
            .expect_problem(502, "upstream-failed");
    }
    assert_eq!(upstream.count(), 3);
    let held = api.send(Req::get("/v1/accounts")).await;
    held.expect_problem(503, "upstream-unavailable");
    let retry_after: u64 = held.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    assert_eq!(upstream.count(), 3, "an open breaker sends nothing");
    // The upstream recovers; after the open period one trial closes the breaker again.
    upstream.drop_answers.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(open_ms + 300)).await;
    api.send(Req::get("/v1/accounts")).await.expect(200);
    api.send(Req::get("/v1/accounts")).await.expect(200);
    assert_eq!(upstream.count(), 5);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_alone_drains_in_flight_requests_on_shutdown() {
    let upstream = Recorder::start().await;
    upstream.delay_ms.store(800, Ordering::SeqCst);
    let gateway = Instance::start_with(&[("upstream", &upstream.url)]).await;
    let addr = gateway.url.trim_start_matches("https://").to_owned();
    let api = gateway.api("acme");
    let slow = tokio::spawn(async move { api.send(Req::get("/v1/accounts")).await });
    while upstream.count() == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // SIGTERM's effect: the listening socket closes at once on every HTTP thread ...
    let stopping = tokio::spawn(gateway.stop());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpStream::connect(&addr).await.is_ok() {
        assert!(std::time::Instant::now() < deadline, "still accepting");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ... and the request in flight still gets its answer.
    let reply = slow.await.unwrap();
    reply.expect(200);
    assert_eq!(reply.json, json!({"ok": true}));
    stopping.await.unwrap();
}

/// Every record the auditor of `tenant` sees, through `gateway`, of the request `request_id`;
/// waits up to 10 s for them to appear (the gateway hands its records to the ledger in the
/// background).
async fn records_of(
    gateway: &Instance,
    tenant: &str,
    request_id: &str,
    query: &str,
) -> Vec<serde_json::Value> {
    let auditor = gateway
        .anonymous(Protocol::Negotiated)
        .with_token(&gateway.tokens.mint(tenant, &["audit:read"]));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let events = auditor
            .get(&format!("/v1/audit/events?limit=500&{query}"))
            .await;
        events.expect(200);
        assert!(events.json["next_cursor"].is_null(), "more than a page");
        let found: Vec<serde_json::Value> = events.json["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["origin"]["request_id"] == request_id)
            .cloned()
            .collect();
        if !found.is_empty() || std::time::Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_gateway_refuses_and_what_it_forwards_is_recorded_once_with_the_partner_address() {
    let dir = tempfile::tempdir().unwrap();
    let key = shared_key(dir.path());
    let key_s = key.display().to_string();
    let ledger = Instance::start_ledger(&[("internal_key_file", &key_s)]).await;
    let ca = gateway::tls::dev_cert_files(&ledger.data_dir).cert;
    // The gateway sits behind a load balancer on loopback, which names the partner.
    let gateway = Instance::start_with(&[
        ("upstream", &ledger.url),
        ("upstream_ca_file", &ca.display().to_string()),
        ("internal_key_file", &key_s),
        ("trusted_proxies", "127.0.0.1"),
    ])
    .await;
    let partner = gateway
        .anonymous(Protocol::Negotiated)
        .with_token(&gateway.tokens.mint("acme", READ_WRITE));
    // Forwarded: the ledger records it, with the address the gateway vouches for.
    let made = partner
        .send(
            Req::post("/v1/accounts")
                .key(&unique_key("split-audit"))
                .json(&json!({"currency": "USD", "normal_side": "debit"}))
                .header("x-forwarded-for", "203.0.113.7"),
        )
        .await;
    made.expect(201);
    let made_id = made.header("x-request-id").unwrap().to_owned();
    // Refused by the gateway alone: no token; a scope the route policy refuses.
    let anonymous = gateway
        .anonymous(Protocol::Negotiated)
        .send(Req::get("/v1/accounts").header("x-forwarded-for", "203.0.113.8"))
        .await;
    anonymous.expect(401);
    let anonymous_id = anonymous.header("x-request-id").unwrap().to_owned();
    let forbidden = partner.get("/v1/audit/events").await;
    forbidden.expect_problem(403, "insufficient-scope");
    let forbidden_id = forbidden.header("x-request-id").unwrap().to_owned();

    let made = records_of(&gateway, "acme", &made_id, "action=account.create").await;
    assert_eq!(made.len(), 1, "recorded once: {made:#?}");
    assert_eq!(made[0]["actor"]["source_ip"], "203.0.113.7", "{}", made[0]);
    assert_eq!(made[0]["actor"]["tenant"], "acme");
    assert_eq!(made[0]["outcome"], "success");
    let anonymous = records_of(&gateway, "acme", &anonymous_id, "action=account.list").await;
    assert_eq!(anonymous.len(), 1, "recorded once: {anonymous:#?}");
    assert_eq!(anonymous[0]["outcome"], "failure");
    assert_eq!(anonymous[0]["actor"]["source_ip"], "203.0.113.8");
    assert_eq!(anonymous[0]["actor"]["tenant"], serde_json::Value::Null);
    assert!(
        anonymous[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("unauthorized"),
        "{}",
        anonymous[0]
    );
    let forbidden = records_of(&gateway, "acme", &forbidden_id, "action=audit.events").await;
    assert_eq!(forbidden.len(), 1, "recorded once: {forbidden:#?}");
    assert_eq!(forbidden[0]["outcome"], "failure");
    assert_eq!(forbidden[0]["actor"]["tenant"], "acme");
    assert_eq!(forbidden[0]["actor"]["subject"], "e2e");
    // In the ledger's stream, like the ledger's own records.
    assert_eq!(forbidden[0]["stream"], made[0]["stream"]);
    gateway.stop().await;
    ledger.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_gateway_may_hand_the_ledger_records() {
    let dir = tempfile::tempdir().unwrap();
    let key = shared_key(dir.path());
    let key_s = key.display().to_string();
    let ledger = Instance::start_ledger(&[("internal_key_file", &key_s)]).await;
    let direct = ledger.anonymous(Protocol::Negotiated);
    let batch = json!({"records": [{
        "actor": {"tenant": "acme", "subject": "mallory", "client_id": null, "source_ip": null},
        "action": "account.read", "resources": [], "outcome": "success",
        "reason": null, "detail": null,
        "origin": {"request_id": "forged", "trace_id": null}
    }]});
    let records = gateway::audit_forward::RECORDS_PATH;
    // Without an assertion: refused.
    direct
        .send(Req::post(records).no_token().json(&batch))
        .await
        .expect(401);
    let key = InternalKey::load(&key).unwrap();
    let partner = partner_identity();
    let forwarder = gateway::auth::Identity {
        subject: gateway::audit_forward::FORWARDER_SUBJECT.into(),
        tenant: ledger::TenantId::new("strongroom").unwrap(),
        ..partner.clone()
    };
    // A batch under a valid assertion for `identity`.
    let post = |identity: &gateway::auth::Identity, rid: &'static str, body: serde_json::Value| {
        let assertion = key.assert(
            identity,
            Bound {
                method: "POST",
                path_and_query: records,
                request_id: rid,
            },
            jsonwebtoken::get_current_timestamp(),
        );
        direct.send(
            Req::post(records)
                .no_token()
                .header("x-request-id", rid)
                .header(IDENTITY_HEADER, &assertion)
                .json(&body),
        )
    };
    // A partner's identity may not write records.
    post(&partner, "r-forge", batch.clone())
        .await
        .expect_problem(403, "insufficient-scope");
    // The forwarder's may.
    let written = post(&forwarder, "r-ok", batch.clone()).await;
    written.expect(200);
    assert_eq!(written.json, json!({"written": 1, "failed": []}));
    // At most FORWARD_BATCH_MAX records a batch.
    let record = batch["records"][0].clone();
    let most = gateway::audit_forward::FORWARD_BATCH_MAX;
    let full = post(
        &forwarder,
        "r-full",
        json!({"records": vec![record.clone(); most]}),
    )
    .await;
    full.expect(200);
    assert_eq!(full.json["written"], most);
    post(
        &forwarder,
        "r-over",
        json!({"records": vec![record; most + 1]}),
    )
    .await
    .expect_problem(413, "payload-too-large");
    // A batch that is not one changes nothing.
    post(&forwarder, "r-bad", json!({"records": [{"action": 5}]}))
        .await
        .expect_problem(400, "malformed-json");
    ledger.stop().await;
}

/// A stand-in ledger that takes the gateway's records at most `cap` to a request, answering a
/// larger batch 413 as a ledger with a small body limit would; returns the records taken, the
/// largest batch it took, and how many it answered 413. Its first answer takes 300 ms, so
/// that more records queue up meanwhile.
async fn records_taker(cap: usize) -> (String, Arc<Mutex<(Vec<String>, usize, usize)>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let taken = Arc::new(Mutex::new((Vec::new(), 0, 0)));
    let first = Arc::new(AtomicBool::new(true));
    let t = taken.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (t, first) = (t.clone(), first.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req: hyper::Request<Incoming>| {
                    let t = t.clone();
                    let slow = first.swap(false, Ordering::SeqCst);
                    async move {
                        use http_body_util::BodyExt;
                        if slow {
                            tokio::time::sleep(Duration::from_millis(300)).await;
                        }
                        let body = req.into_body().collect().await?.to_bytes();
                        let batch: serde_json::Value =
                            serde_json::from_slice(&body).unwrap_or_default();
                        let records = batch["records"].as_array().cloned().unwrap_or_default();
                        let (status, answer) = if records.len() > cap {
                            t.lock().unwrap().2 += 1;
                            (413, json!({"type": "payload-too-large"}))
                        } else {
                            let mut taken = t.lock().unwrap();
                            taken.1 = taken.1.max(records.len());
                            for r in &records {
                                taken
                                    .0
                                    .push(r["origin"]["request_id"].as_str().unwrap().into());
                            }
                            (200, json!({"written": records.len(), "failed": []}))
                        };
                        Ok::<_, hyper::Error>(
                            hyper::Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::from(answer.to_string())))
                                .unwrap(),
                        )
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    (url, taken)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_sends_its_records_in_batches_the_ledger_takes() {
    let (url, taken) = records_taker(2).await;
    let gateway = Instance::start_with(&[("upstream", &url)]).await;
    let anonymous = gateway.anonymous(Protocol::Negotiated);
    // Refused at the gateway, all at once: their records queue up together.
    let mut refusals = tokio::task::JoinSet::new();
    for _ in 0..12 {
        let anonymous = anonymous.clone();
        refusals.spawn(async move { anonymous.get("/v1/accounts").await });
    }
    let mut ids = Vec::new();
    while let Some(reply) = refusals.join_next().await {
        let reply = reply.unwrap();
        reply.expect(401);
        ids.push(reply.header("x-request-id").unwrap().to_owned());
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (seen, largest, too_large) = taken.lock().unwrap().clone();
        if ids.iter().all(|id| seen.contains(id)) {
            assert!(largest <= 2, "a batch of {largest} was taken");
            assert!(
                too_large > 0,
                "no batch was ever too large: the test tested nothing"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "records not taken: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gateway.stop().await;
}
