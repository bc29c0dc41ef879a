//! Authentication and authorization at the door: every kind of bad token gets 401 with a
//! `WWW-Authenticate` challenge; scopes are enforced per route; a good token reaches its own
//! tenant's data only.

use serde_json::json;

use crate::harness::{BadToken, Instance, Req, unique_key};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_token_is_refused() {
    let instance = Instance::start().await;
    let api = instance.api("acme");
    let account = api.account("USD", "debit", "none").await;
    let routes = [
        Req::get("/v1/accounts"),
        Req::get(&format!("/v1/accounts/{account}")),
        Req::post("/v1/accounts")
            .key(&unique_key("k"))
            .json(&json!({"currency": "USD", "normal_side": "debit"})),
    ];
    for kind in BadToken::ALL {
        let token = instance.tokens.bad(*kind);
        for route in &routes {
            let reply = api.send(route.clone().token(&token)).await;
            assert_eq!(reply.status, 401, "{kind:?}: {}", reply.json);
            reply.expect_problem(401, "unauthorized");
            let challenge = reply.header("www-authenticate").unwrap_or_default();
            assert!(
                challenge.starts_with(r#"Bearer realm="strongroom", error="invalid_token""#),
                "{kind:?}: {challenge:?}"
            );
        }
    }
    // Without a token, or with another scheme: a bare challenge.
    for req in [
        Req::get("/v1/accounts").no_token(),
        Req::get("/v1/accounts")
            .no_token()
            .header("authorization", "Basic YWNtZTpzZWNyZXQ="),
        Req::get("/v1/accounts")
            .no_token()
            .header("authorization", "Bearer "),
    ] {
        let reply = api.send(req).await;
        reply.expect_problem(401, "unauthorized");
        assert_eq!(
            reply.header("www-authenticate"),
            Some(r#"Bearer realm="strongroom""#)
        );
    }
    // None of the refused writes wrote anything.
    assert_eq!(api.list_all("/v1/accounts").await.len(), 1);
    instance.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_are_enforced_per_route() {
    let instance = Instance::start().await;
    let api = instance.api("acme");
    let read = instance.tokens.mint("acme", &["ledger:read"]);
    let write = instance.tokens.mint("acme", &["ledger:write"]);
    let none = instance.tokens.mint("acme", &["profile"]);
    let create = || {
        Req::post("/v1/accounts")
            .key(&unique_key("k"))
            .json(&json!({"currency": "USD", "normal_side": "debit"}))
    };

    api.send(Req::get("/v1/accounts").token(&read))
        .await
        .expect(200);
    api.send(create().token(&write)).await.expect(201);
    for (req, token, scope) in [
        (create(), &read, "ledger:write"),
        (create(), &none, "ledger:write"),
        (Req::get("/v1/accounts"), &write, "ledger:read"),
        (Req::get("/v1/trial-balance"), &none, "ledger:read"),
    ] {
        let reply = api.send(req.token(token)).await;
        reply.expect_problem(403, "insufficient-scope");
        assert_eq!(reply.json["required_scope"], json!(scope));
        assert_eq!(
            reply.header("www-authenticate"),
            Some(
                format!(
                    r#"Bearer realm="strongroom", error="insufficient_scope", scope="{scope}""#
                )
                .as_str()
            )
        );
    }
    assert_eq!(api.list_all("/v1/accounts").await.len(), 1);
    instance.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_token_reaches_its_own_tenant_only() {
    let instance = Instance::start().await;
    let acme = instance.api("acme");
    let globex = instance.api("globex");
    let acme_account = acme.account("USD", "debit", "none").await;
    let globex_account = globex.account("USD", "debit", "none").await;
    acme.get(&format!("/v1/accounts/{acme_account}"))
        .await
        .expect(200);
    acme.get(&format!("/v1/accounts/{globex_account}"))
        .await
        .expect_problem(404, "not-found");
    globex
        .get(&format!("/v1/accounts/{acme_account}"))
        .await
        .expect_problem(404, "not-found");
    // A tenant is what the token says, whatever the request says.
    let reply = acme
        .send(Req::get("/v1/accounts").header("x-tenant", "globex"))
        .await;
    reply.expect(200);
    assert_eq!(reply.json["data"][0]["id"], json!(acme_account));
    assert_eq!(reply.json["data"].as_array().unwrap().len(), 1);
    instance.stop().await;
}
