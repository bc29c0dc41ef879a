//! The route policy (`policies/routes.toml`, or the file `policy_file` names): the server does
//! not start when the policy leaves a route out or asks less than a handler; a rule asking more
//! is enforced before the handler runs; roles grant their scopes; the tenant stays the token's.

use serde_json::json;

use crate::harness::{Instance, Protocol, Req, unique_key};

/// The built-in policy with `edit` applied, written to the file `name` in `dir`; its path.
fn policy_file(dir: &std::path::Path, name: &str, edit: impl Fn(&str) -> String) -> String {
    let text = edit(gateway::policy::BUILT_IN);
    assert_ne!(text, gateway::policy::BUILT_IN, "the edit changed nothing");
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

const CLOSE_RULE: &str =
    "method = \"POST\"\npath = \"/v1/accounts/{account_id}/close\"\nscopes = [\"ledger:write\"]";

#[test]
fn a_policy_that_leaves_a_route_out_or_weakens_one_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data").display().to_string();
    let cases: Vec<(String, &str)> = vec![
        (
            policy_file(dir.path(), "gap.toml", |t| {
                t.replace(
                    CLOSE_RULE,
                    "method = \"POST\"\npath = \"/v1/nothing\"\nscopes = []",
                )
            }),
            "POST /v1/accounts/{account_id}/close has no rule",
        ),
        (
            policy_file(dir.path(), "weak.toml", |t| {
                t.replace(
                    CLOSE_RULE,
                    &CLOSE_RULE.replace("ledger:write", "ledger:read"),
                )
            }),
            "needs at least scope ledger:write",
        ),
    ];
    for (file, fragment) in cases {
        let output = crate::harness::program(
            &["serve"],
            &[
                ("data_dir", data_dir.as_str()),
                ("policy_file", file.as_str()),
            ],
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(64), "{stderr}");
        assert!(stderr.contains(fragment), "{stderr}");
    }
}

#[tokio::test]
async fn a_stricter_rule_and_roles_are_enforced_before_the_handler() {
    let dir = tempfile::tempdir().unwrap();
    // Closing an account needs `ledger:admin` as well.
    let file = policy_file(dir.path(), "strict.toml", |t| {
        t.replace(
            CLOSE_RULE,
            &CLOSE_RULE.replace("[\"ledger:write\"]", "[\"ledger:write\", \"ledger:admin\"]"),
        )
        .replace(
            "operator = [\"ledger:read\"]",
            "operator = [\"ledger:read\", \"ledger:admin\"]",
        )
    });
    let instance = Instance::start_with(&[("policy_file", file.as_str())]).await;
    let partner = instance.api("acme");
    let account = partner.account("USD", "debit", "none").await;
    let close = format!("/v1/accounts/{account}/close");

    // A token with read and write but not admin: refused before the handler ran, so the
    // missing Idempotency-Key is not what it hears about, and nothing changed.
    let refused = partner.send(Req::post(&close).json(&json!({}))).await;
    refused.expect_problem(403, "insufficient-scope");
    assert_eq!(refused.json["required_scope"], "ledger:admin");
    assert_eq!(partner.get_account(&account).await["status"], "open");

    // The operator role grants `ledger:admin` (and read); with write, the close goes through.
    let mut claims = crate::harness::Tokens::claims("acme", &["ledger:write"]);
    claims.roles = Some(vec!["operator".to_owned()]);
    let operator = instance
        .anonymous(Protocol::Negotiated)
        .with_token(&instance.tokens.sign(&claims));
    operator
        .send(Req::post(&close).key(&unique_key("close")).json(&json!({})))
        .await
        .expect(200);
    assert_eq!(partner.get_account(&account).await["status"], "closed");

    // An auditor token (a role, no scopes of its own) reads and cannot write.
    let mut claims = crate::harness::Tokens::claims("acme", &[]);
    claims.roles = Some(vec!["auditor".to_owned()]);
    let auditor = instance
        .anonymous(Protocol::Negotiated)
        .with_token(&instance.tokens.sign(&claims));
    auditor.send(Req::get("/v1/accounts")).await.expect(200);
    auditor
        .send(Req::get(&format!("/v1/accounts/{account}")))
        .await
        .expect(200);
    let write = auditor
        .send(
            Req::post("/v1/accounts")
                .key(&unique_key("acct"))
                .json(&json!({"currency": "USD", "normal_side": "debit"})),
        )
        .await;
    write.expect_problem(403, "insufficient-scope");
    assert_eq!(write.json["required_scope"], "ledger:write");
    // A role the policy does not define grants nothing.
    let mut claims = crate::harness::Tokens::claims("acme", &[]);
    claims.roles = Some(vec!["superuser".to_owned()]);
    let nobody = instance
        .anonymous(Protocol::Negotiated)
        .with_token(&instance.tokens.sign(&claims));
    nobody
        .send(Req::get("/v1/accounts"))
        .await
        .expect_problem(403, "insufficient-scope");
    // Roles do not cross tenants: another tenant's auditor sees none of acme's accounts.
    let mut claims = crate::harness::Tokens::claims("globex", &[]);
    claims.roles = Some(vec!["auditor".to_owned()]);
    let other = instance
        .anonymous(Protocol::Negotiated)
        .with_token(&instance.tokens.sign(&claims));
    other
        .send(Req::get(&format!("/v1/accounts/{account}")))
        .await
        .expect_problem(404, "not-found");
    // Public routes need no token.
    instance
        .anonymous(Protocol::Http1)
        .send(Req::get("/openapi.json").no_token())
        .await
        .expect(200);
    instance.stop().await;
}
