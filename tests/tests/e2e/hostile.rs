//! Hostile and careless clients: every answer carries the security headers, and CORS answers
//! only configured origins; header floods get
//! 431; a client that never finishes its request head is cut off; requests beyond
//! `concurrency_max` are shed with a 503 problem and `Retry-After` while health checks still
//! answer; an HTTP/2 reset flood loses its connection. Each through real TLS, and the server
//! serves normally afterwards.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::harness::{Instance, Protocol, READ_WRITE, Req, raw_tls, unique_key};

/// A raw HTTP/1.1-over-TLS connection to `instance`, trusting only its certificate.
async fn raw(instance: &Instance) -> TlsStream<TcpStream> {
    let versions = rustls::DEFAULT_VERSIONS;
    raw_tls::connect(&instance.url, &instance.cert_pem, versions, &[b"http/1.1"])
        .await
        .unwrap()
}

#[tokio::test]
async fn every_answer_carries_the_security_headers_and_no_cors() {
    let instance = Instance::start().await;
    let api = instance.api("acme");
    let anonymous = instance.anonymous(Protocol::Http1);
    let origin = ("origin", "https://evil.example");
    let answers = [
        api.send(Req::get("/health/live").header(origin.0, origin.1))
            .await,
        api.send(
            Req::post("/v1/accounts")
                .key(&unique_key("acct"))
                .json(&json!({"currency": "USD", "normal_side": "debit"}))
                .header(origin.0, origin.1),
        )
        .await,
        anonymous.send(Req::get("/v1/accounts").no_token()).await,
        api.send(Req::get("/no/such/route")).await,
        api.send(Req::new(reqwest::Method::OPTIONS, "/v1/accounts").header(origin.0, origin.1))
            .await,
    ];
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [200, 201, 401, 404, 405]);
    for answer in &answers {
        assert_eq!(
            answer.header("strict-transport-security"),
            Some(gateway::api::HSTS),
            "{}",
            answer.status
        );
        assert_eq!(answer.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(answer.header("cache-control"), Some("no-store"));
        // CORS is off: no browser on another origin may read an answer.
        assert_eq!(answer.header("access-control-allow-origin"), None);
    }
    instance.stop().await;
}

#[tokio::test]
async fn header_floods_get_431_and_the_server_goes_on() {
    let instance =
        Instance::start_with(&[("headers_max", "32"), ("header_bytes_max", "16384")]).await;
    let http1 = instance.anonymous(Protocol::Http1);
    // Too many fields.
    let mut many = Req::get("/health/live");
    for i in 0..40 {
        many = many.header(&format!("x-flood-{i}"), "1");
    }
    http1
        .send(many)
        .await
        .expect_problem(431, "headers-too-large");
    // One field too long for the head.
    let long = Req::get("/health/live").header("x-flood", &"a".repeat(20_000));
    http1
        .send(long)
        .await
        .expect_problem(431, "headers-too-large");
    // Far over the limits (beyond twice them), hyper refuses before parsing: a bare 431.
    let mut flood = Req::get("/health/live");
    for i in 0..70 {
        flood = flood.header(&format!("x-flood-{i}"), "1");
    }
    assert_eq!(http1.send(flood).await.status, 431);
    // Over HTTP/2 too, between the limits, the problem body.
    let h2 = instance.anonymous(Protocol::Negotiated);
    h2.send(Req::get("/health/live").header("x-flood", &"a".repeat(20_000)))
        .await
        .expect_problem(431, "headers-too-large");
    // Within the limits, and on HTTP/2, requests are served; over HTTP/2 a header list over
    // the limit is refused, never served.
    let mut fine = Req::get("/health/live");
    for i in 0..20 {
        fine = fine.header(&format!("x-ok-{i}"), "1");
    }
    assert_eq!(http1.send(fine).await.status, 200);
    let big = Req::get("/health/live").header("x-flood", &"a".repeat(40_000));
    match h2.try_send(big).await {
        Ok(reply) => assert_eq!(reply.status, 431),
        Err(error) => assert!(!error.is_timeout(), "{error:?}"),
    }
    instance
        .api("acme")
        .send(Req::get("/health/ready"))
        .await
        .expect(200);
    instance.stop().await;
}

#[tokio::test]
async fn a_client_that_never_finishes_its_request_head_is_cut_off() {
    let instance = Instance::start_with(&[("header_read_timeout_ms", "500")]).await;
    let mut conn = raw(&instance).await;
    let started = Instant::now();
    conn.write_all(b"GET /health/live HTTP/1.1\r\nhost: x\r\nx-slow: ")
        .await
        .unwrap();
    conn.flush().await.unwrap();
    // The server closes the connection at the timeout; the client never sent the end.
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut answer)).await;
    let elapsed = started.elapsed();
    assert!(read.is_ok(), "still open after 10 s");
    assert!(
        elapsed >= Duration::from_millis(300),
        "cut off after {elapsed:?}"
    );
    // No request was served on it.
    assert!(!String::from_utf8_lossy(&answer).contains("200 OK"));
    // A client that sends its head in time is served.
    let mut conn = raw(&instance).await;
    conn.write_all(b"GET /health/live HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).await.unwrap();
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    instance.stop().await;
}

#[tokio::test]
async fn requests_beyond_concurrency_max_are_shed_with_503_and_health_still_answers() {
    let instance = Instance::start_with(&[("concurrency_max", "1")]).await;
    let api = instance.api("acme");
    // One request in progress: a body announced at 100 bytes that arrives slowly.
    let token = instance.tokens.mint("acme", READ_WRITE);
    let mut slow = raw(&instance).await;
    let head = format!(
        "POST /v1/accounts HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n\
         idempotency-key: {}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n\
         {{\"currency\"",
        unique_key("slow")
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    slow.flush().await.unwrap();
    // The server holds its one permit for that request: the next is shed, at once.
    let mut shed = None;
    for _ in 0..50 {
        let reply = api.send(Req::get("/v1/accounts")).await;
        if reply.status == 503 {
            shed = Some(reply);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let shed = shed.expect("a request beyond the limit was served");
    shed.expect_problem(503, "overloaded");
    assert_eq!(shed.header("retry-after"), Some("1"));
    assert!(shed.header("x-request-id").is_some());
    // Health checks are not counted.
    api.send(Req::get("/health/live")).await.expect(200);
    api.send(Req::get("/health/ready")).await.expect(200);
    // The slow client goes away; its permit comes back, and requests are served again.
    drop(slow);
    let mut served = false;
    for _ in 0..100 {
        if api.send(Req::get("/v1/accounts")).await.status == 200 {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(served, "the permit never came back");
    instance.stop().await;
}

#[tokio::test]
async fn cors_answers_only_the_configured_origins() {
    let instance = Instance::start_with(&[(
        "cors_origins",
        "https://app.example, https://admin.example:8443",
    )])
    .await;
    let api = instance.api("acme");
    // A preflight from a configured origin: allowed, with the headers a write needs.
    let preflight = |origin: &str| {
        Req::new(reqwest::Method::OPTIONS, "/v1/transfers")
            .no_token()
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type, idempotency-key",
            )
    };
    let allowed = api.send(preflight("https://app.example")).await;
    assert!(allowed.status < 300, "{}", allowed.status);
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    let methods = allowed
        .header("access-control-allow-methods")
        .unwrap_or_default();
    assert!(methods.contains("POST"), "{methods}");
    let headers = allowed
        .header("access-control-allow-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(headers.contains("idempotency-key"), "{headers}");
    assert_eq!(allowed.header("access-control-allow-credentials"), None);
    assert_eq!(
        allowed.header("strict-transport-security"),
        Some(gateway::api::HSTS)
    );
    // An actual request from the other configured origin: readable, request id exposed.
    let read = api
        .send(Req::get("/v1/accounts").header("origin", "https://admin.example:8443"))
        .await;
    read.expect(200);
    assert_eq!(
        read.header("access-control-allow-origin"),
        Some("https://admin.example:8443")
    );
    let exposed = read
        .header("access-control-expose-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(exposed.contains("x-request-id"), "{exposed}");
    // Any other origin gets no permission, on a preflight or a request.
    for origin in [
        "https://evil.example",
        "http://app.example",
        "https://app.example.evil",
    ] {
        let refused = api.send(preflight(origin)).await;
        assert_eq!(
            refused.header("access-control-allow-origin"),
            None,
            "{origin}"
        );
        let read = api
            .send(Req::get("/v1/accounts").header("origin", origin))
            .await;
        read.expect(200);
        assert_eq!(read.header("access-control-allow-origin"), None, "{origin}");
    }
    instance.stop().await;
}

/// HTTP/2 rapid reset (CVE-2023-44487): a client that opens streams and resets them before the
/// server has taken them up gets its connection closed with `ENHANCE_YOUR_CALM` once it passes
/// `H2_PENDING_RESETS_MAX`; other clients are served throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_reset_flood_closes_the_connection() {
    let instance = Instance::start().await;
    let (mut client, connection) = h2_connect(&instance).await;
    let token = instance.tokens.mint("acme", READ_WRITE);
    // Bursts of streams reset at once, with a pause after each for the server's answer to
    // arrive (else the client may meet the closed socket before it reads the GOAWAY).
    let burst = 2 * gateway::server::H2_PENDING_RESETS_MAX;
    let bursts_max = 50;
    let mut reset = 0;
    'flood: for _ in 0..bursts_max {
        for _ in 0..burst {
            let Ok(ready) = client.clone().ready().await else {
                break 'flood;
            };
            client = ready;
            let req = hyper::Request::get(format!("{}/v1/accounts", instance.url))
                .header("authorization", format!("Bearer {token}"))
                .body(())
                .unwrap();
            let Ok((_response, mut stream)) = client.send_request(req, false) else {
                break 'flood;
            };
            stream.send_reset(h2::Reason::CANCEL);
            reset += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        if connection.is_finished() {
            break;
        }
    }
    let ended = tokio::time::timeout(Duration::from_secs(10), connection)
        .await
        .expect("the server closes a flooding connection")
        .unwrap();
    let error = ended.expect_err("closed with an error, not a clean end");
    // The server's GOAWAY, or (when the client was still writing as it arrived) the closed
    // socket behind it.
    assert!(
        error.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM) || error.is_io(),
        "{error} after {reset} resets"
    );
    assert!(reset < burst * bursts_max, "cut off before the flood ended");
    // The same number of streams, each answered before the next: served on one connection.
    let (mut client, connection) = h2_connect(&instance).await;
    for _ in 0..reset {
        client = client.ready().await.unwrap();
        let req = hyper::Request::get(format!("{}/health/live", instance.url))
            .body(())
            .unwrap();
        let (response, _) = client.send_request(req, true).unwrap();
        assert_eq!(response.await.unwrap().status(), 200);
    }
    assert!(
        !connection.is_finished(),
        "a polite client keeps its connection"
    );
    instance.api("acme").get("/v1/accounts").await.expect(200);
    instance.stop().await;
}

/// An HTTP/2 connection over TLS to `instance`, with its connection task.
async fn h2_connect(
    instance: &Instance,
) -> (
    h2::client::SendRequest<bytes::Bytes>,
    tokio::task::JoinHandle<Result<(), h2::Error>>,
) {
    let tls = raw_tls::connect(
        &instance.url,
        &instance.cert_pem,
        rustls::DEFAULT_VERSIONS,
        &[b"h2"],
    )
    .await
    .unwrap();
    let (client, connection) = h2::client::handshake(tls).await.unwrap();
    (client, tokio::spawn(connection))
}
