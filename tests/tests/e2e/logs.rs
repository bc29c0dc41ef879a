//! What the process prints: tokens never appear, not even their signature, whichever way they
//! reach the server (the `Authorization` header, other headers, the query, the body, field
//! names); every stdout line is a JSON object; every access-log line carries the request id
//! that the client got in `x-request-id`, and the status it got.
//!
//! The process runs at `log = trace`, so that no layer's chatty logging can leak either.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::harness::{Api, BadToken, Process, Protocol, Reply, Req, unique_key};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_reaches_the_output_and_lines_are_json() {
    let dir = tempfile::tempdir().unwrap();
    let mut process = Process::spawn(dir.path(), &[("log", "trace")]);
    let token = process.tokens.mint("acme", crate::harness::READ_WRITE);
    let bad: Vec<String> = [
        BadToken::TamperedSignature,
        BadToken::Expired,
        BadToken::WrongIssuerKey,
        BadToken::WrongAudience,
        BadToken::Hs256PublicKey,
    ]
    .iter()
    .map(|k| process.tokens.bad(*k))
    .collect();

    let h2 = process.api("acme").with_token(&token);
    let h1 = Api::new(&process.url, &process.cert_pem, Protocol::Http1).with_token(&token);
    let mut replies: Vec<Reply> = Vec::new();
    for api in [&h2, &h1] {
        replies.extend(requests(api, &token, &bad).await);
    }
    assert!(replies.iter().any(|r| r.status == 200));
    assert!(replies.iter().any(|r| r.status == 201));
    assert!(replies.iter().any(|r| r.status == 401));
    assert!(replies.iter().any(|r| r.status == 400));

    process.terminate();
    let status = process
        .wait_exit(std::time::Duration::from_secs(15))
        .await
        .expect("exit");
    assert!(status.success(), "{status}");
    let (stdout, stderr) = process.output();
    assert!(
        stdout.len() > replies.len(),
        "too little logged: {stdout:?}"
    );

    let mut secrets = vec![token.clone()];
    secrets.extend(bad.iter().cloned());
    for secret in &secrets {
        let signature = secret.rsplit('.').next().unwrap();
        assert!(signature.len() > 40, "{secret}");
        for (stream, lines) in [("stdout", &stdout), ("stderr", &stderr)] {
            for line in lines.iter() {
                assert!(
                    !line.contains(signature),
                    "a token signature on {stream}: {line}"
                );
            }
        }
    }
    check_lines(&stdout, &replies);
}

/// Good and bad requests, with the token in every place a careless logger might print.
async fn requests(api: &Api, token: &str, bad: &[String]) -> Vec<Reply> {
    let signature = token.rsplit('.').next().unwrap();
    let mut replies = vec![
        api.get("/v1/accounts").await,
        api.post(
            "/v1/accounts",
            &unique_key("log"),
            &json!({"currency": "USD", "normal_side": "debit", "name": token,
                    "metadata": {"token": token, "sig": signature}}),
        )
        .await,
        api.post(
            "/v1/transfers",
            &unique_key("log"),
            &json!({"debit_account_id": crate::harness::NO_SUCH_ACCOUNT,
                    "credit_account_id": "acct_01ARZ3NDEKTSV4RRFFQ69G5FAW", "amount": 1,
                    "currency": "USD", "description": token}),
        )
        .await,
        // Echoed in the problem's detail: the client's own data, but not for the log.
        api.post(
            "/v1/accounts",
            &unique_key("log"),
            &json!({ token: 1, "currency": "USD", "normal_side": "debit" }),
        )
        .await,
        api.send(
            Req::post("/v1/accounts")
                .key(&unique_key("log"))
                .raw(format!(r#"{{"currency": "{token}"#)),
        )
        .await,
        api.send(Req::get(&format!("/v1/accounts?cursor={token}")))
            .await,
        api.send(
            Req::get("/v1/accounts")
                .header("x-forwarded-authorization", &format!("Bearer {token}"))
                .header("cookie", &format!("session={token}")),
        )
        .await,
        api.send(
            Req::get("/v1/accounts")
                .no_token()
                .header("authorization", &format!("Token {token}")),
        )
        .await,
        api.send(Req::get("/v1/trial-balance").header("x-request-id", "e2e-client-id-1"))
            .await,
    ];
    for token in bad {
        replies.push(api.send(Req::get("/v1/accounts").token(token)).await);
        replies.push(
            api.send(
                Req::post("/v1/transfers")
                    .token(token)
                    .key(&unique_key("log"))
                    .json(&json!({"description": token})),
            )
            .await,
        );
    }
    replies
}

/// Every stdout line is a JSON object; access-log lines carry the request id and status the
/// client saw.
fn check_lines(stdout: &[String], replies: &[Reply]) {
    let mut access: BTreeMap<String, Value> = BTreeMap::new();
    for line in stdout {
        let value: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(value.is_object(), "{line}");
        assert!(
            value["level"].is_string() && value["timestamp"].is_string(),
            "{line}"
        );
        let span = &value["span"];
        if span["name"] == "request" {
            let id = span["request_id"].as_str().unwrap_or_default();
            assert!(
                !id.is_empty(),
                "a request's line without request_id: {line}"
            );
        }
        if value["message"] == "request" {
            let id = span["request_id"]
                .as_str()
                .unwrap_or_else(|| panic!("access line without request_id: {line}"));
            assert!(
                span["method"].is_string() && span["path"].is_string(),
                "{line}"
            );
            access.insert(id.to_owned(), value["status"].clone());
        }
    }
    for reply in replies {
        let id = reply.header("x-request-id").expect("x-request-id");
        assert_eq!(
            access.get(id),
            Some(&json!(reply.status)),
            "no access line for request {id}"
        );
    }
    assert!(
        access.contains_key("e2e-client-id-1"),
        "a client's request id is kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_kept_when_sane_and_replaced_otherwise() {
    let instance = crate::harness::Instance::start().await;
    let api = instance.api("acme");
    let long = "a".repeat(65);
    for (given, kept) in [
        ("client-id_1.2", true),
        (&"b".repeat(64)[..], true),
        ("has space", false),
        ("semi;colon", false),
        (&long[..], false),
        ("", false),
    ] {
        let reply = api
            .send(Req::get("/v1/nope").header("x-request-id", given))
            .await;
        reply.expect_problem(404, "not-found");
        let id = reply.header("x-request-id").unwrap();
        if kept {
            assert_eq!(id, given);
        } else {
            assert_ne!(id, given);
            assert_eq!(id.len(), 26, "a fresh ULID: {id}");
        }
    }
    let a = api.get("/health/live").await;
    let b = api.get("/health/live").await;
    assert_ne!(a.header("x-request-id"), b.header("x-request-id"));
    instance.stop().await;
}
