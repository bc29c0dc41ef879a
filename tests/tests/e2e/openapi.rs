//! The contract: `/openapi.json` is OpenAPI 3.1, the same document as `strongroom openapi`
//! prints, it lists exactly the operations we expect, and the running routes agree with it
//! (every documented operation exists, with the documented method and scope).

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::Value;

use crate::harness::{Instance, NO_SUCH_ACCOUNT, NO_SUCH_TRANSFER, Req, run_program};

/// Every operation of the API, by method and path template.
const OPERATIONS: &[(&str, &str)] = &[
    ("GET", "/health/live"),
    ("GET", "/health/ready"),
    ("GET", "/v1/accounts"),
    ("POST", "/v1/accounts"),
    ("POST", "/v1/cards"),
    ("GET", "/v1/cards/{card_id}"),
    ("DELETE", "/v1/cards/{card_id}"),
    ("POST", "/v1/cards/{card_id}/reveal"),
    ("GET", "/v1/accounts/{account_id}"),
    ("GET", "/v1/accounts/{account_id}/balance"),
    ("POST", "/v1/accounts/{account_id}/close"),
    ("GET", "/v1/accounts/{account_id}/entries"),
    ("POST", "/v1/accounts/{account_id}/freeze"),
    ("POST", "/v1/accounts/{account_id}/unfreeze"),
    ("POST", "/v1/journal-entries"),
    ("GET", "/v1/transfers"),
    ("POST", "/v1/transfers"),
    ("POST", "/v1/transfers/batch"),
    ("GET", "/v1/transfers/{transfer_id}"),
    ("POST", "/v1/transfers/{transfer_id}/post"),
    ("POST", "/v1/transfers/{transfer_id}/reverse"),
    ("POST", "/v1/transfers/{transfer_id}/void"),
    ("GET", "/v1/trial-balance"),
    ("GET", "/v1/audit/events"),
    ("GET", "/v1/audit/checkpoints/latest"),
    ("GET", "/v1/audit/proofs/inclusion"),
    ("GET", "/v1/audit/proofs/consistency"),
];

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "patch", "head", "options", "trace",
];

/// (method, path, operation) of every operation in a document.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if METHODS.contains(&method.as_str()) {
                out.push((method.to_ascii_uppercase(), path.clone(), op.clone()));
            }
        }
    }
    out
}

/// The scope an operation documents, if it is secured.
fn scope(op: &Value) -> Option<String> {
    let security = op.get("security")?.as_array()?;
    assert_eq!(security.len(), 1, "{op}");
    let scopes = security[0]["bearer"].as_array().unwrap();
    assert_eq!(scopes.len(), 1, "{op}");
    Some(scopes[0].as_str().unwrap().to_owned())
}

/// A well-formed card id that names no card.
const NO_SUCH_CARD: &str = "card_00000000000000000000000000";

/// POSTs that change nothing, so take no `Idempotency-Key`: a reveal (it is audited, and rate
/// limited, not replayed).
const READ_ONLY_POSTS: &[&str] = &["/v1/cards/{card_id}/reveal"];

fn concrete(path: &str) -> String {
    path.replace("{account_id}", NO_SUCH_ACCOUNT)
        .replace("{transfer_id}", NO_SUCH_TRANSFER)
        .replace("{card_id}", NO_SUCH_CARD)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_matches_the_command_and_the_routes() {
    let instance = Instance::start().await;
    let anonymous = instance.anonymous(crate::harness::Protocol::Negotiated);
    let served = anonymous.send(Req::get("/openapi.json").no_token()).await;
    served.expect(200);
    assert_eq!(served.header("content-type"), Some("application/json"));
    let doc = served.json;
    assert_eq!(doc["openapi"], "3.1.0");
    let printed: Value = serde_json::from_str(&run_program(&["openapi"])).unwrap();
    assert_eq!(doc, printed, "served and printed documents differ");
    let bearer = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(
        (&bearer["type"], &bearer["scheme"]),
        (&"http".into(), &"bearer".into())
    );

    let ops = operations(&doc);
    let documented: BTreeSet<(String, String)> =
        ops.iter().map(|(m, p, _)| (m.clone(), p.clone())).collect();
    let expected: BTreeSet<(String, String)> = OPERATIONS
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(documented, expected);
    assert_eq!(ops.len(), OPERATIONS.len(), "an operation is listed twice");

    let token_of = |scope: &str| instance.tokens.mint("acme", &[scope]);
    for (method, path, op) in &ops {
        let method: Method = method.parse().unwrap();
        let url = concrete(path);
        let what = format!("{method} {path}");
        // The route exists with this method.
        let reply = anonymous
            .send(Req::new(method.clone(), &url).no_token())
            .await;
        assert!(
            reply.status != 404 && reply.status != 405,
            "{what}: documented but answered {}",
            reply.status
        );
        let Some(scope) = scope(op) else {
            assert_eq!(reply.status, 200, "{what}: open route");
            continue;
        };
        reply.expect_problem(401, "unauthorized");
        // The documented scope is the enforced one: the other scope alone is refused.
        let other = if scope == "ledger:read" {
            "ledger:write"
        } else {
            "ledger:read"
        };
        let reply = anonymous
            .send(Req::new(method.clone(), &url).token(&token_of(other)))
            .await;
        reply.expect_problem(403, "insufficient-scope");
        assert_eq!(reply.json["required_scope"], scope.as_str(), "{what}");
        // Every POST or DELETE that changes something documents the Idempotency-Key it
        // requires.
        if (method == Method::POST || method == Method::DELETE)
            && !READ_ONLY_POSTS.contains(&path.as_str())
        {
            let params = op["parameters"].as_array().unwrap();
            let key = params
                .iter()
                .find(|p| p["name"] == "Idempotency-Key")
                .unwrap_or_else(|| panic!("{what}: no Idempotency-Key parameter"));
            assert_eq!(key["in"], "header", "{what}");
            assert_eq!(key["required"], true, "{what}");
        }
        // Every operation documents its problem answers.
        let problem = &op["responses"]["4XX"]["content"]["application/problem+json"];
        assert!(problem.is_object(), "{what}: 4XX problem not documented");
    }
    instance.stop().await;
}
