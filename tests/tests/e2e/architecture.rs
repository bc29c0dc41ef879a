//! The layering invariants of ARCHITECTURE.md, checked against `cargo metadata`:
//! - `ledger` knows nothing of HTTP, tokens, TLS or the API description: none of those crates is
//!   in its normal dependency closure (dev-dependencies are its tests' business), except behind
//!   the AWS SDK, whose own HTTPS client reaches DynamoDB and KMS (`aws-*` crates are not walked
//!   into; that nothing else brings them is the point);
//! - nothing depends on `gateway` except the end-to-end tests and the benchmarks;
//! - `audit` depends on no other crate of the workspace: an auditor's verifier needs nothing
//!   else, and every crate can call its card-number masking.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value;

/// Crates `ledger` must not reach, even indirectly.
const NOT_IN_LEDGER: &[&str] = &[
    "axum",
    "hyper",
    "http",
    "tower",
    "jsonwebtoken",
    "rustls",
    "utoipa",
    "validator",
];

/// The only workspace crates allowed to depend on `gateway`.
const MAY_USE_GATEWAY: &[&str] = &["tests", "bench"];

fn metadata() -> Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Names of the packages in the normal (not dev, not build) dependency closure of `root`,
/// not walking into packages for which `opaque` holds (they are in the set, their dependencies
/// are not, unless something else brings them).
fn normal_closure(meta: &Value, root: &str, opaque: impl Fn(&str) -> bool) -> BTreeSet<String> {
    let names: BTreeMap<&str, &str> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let nodes: BTreeMap<&str, &Value> = meta["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["id"].as_str().unwrap(), n))
        .collect();
    let root_id = meta["workspace_members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap())
        .find(|id| names[id] == root)
        .unwrap_or_else(|| panic!("{root} is not a workspace member"));
    let mut seen = BTreeSet::from([root_id]);
    let mut todo = vec![root_id];
    while let Some(id) = todo.pop() {
        for dep in nodes[id]["deps"].as_array().unwrap() {
            let normal = dep["dep_kinds"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["kind"].is_null());
            let dep_id = dep["pkg"].as_str().unwrap();
            if normal && seen.insert(dep_id) && !opaque(names[dep_id]) {
                todo.push(dep_id);
            }
        }
    }
    seen.iter().map(|id| names[id].to_owned()).collect()
}

#[test]
fn ledger_knows_nothing_of_http_and_only_tests_use_the_gateway() {
    let meta = metadata();
    let aws = |name: &str| name.starts_with("aws-");
    let closure = normal_closure(&meta, "ledger", aws);
    assert!(
        closure.contains("rusqlite") && closure.contains("aws-sdk-dynamodb"),
        "the walk found nothing: {closure:?}"
    );
    let found: Vec<&&str> = NOT_IN_LEDGER
        .iter()
        .filter(|name| closure.contains(**name))
        .collect();
    assert!(found.is_empty(), "ledger depends on {found:?}");
    // The same walk finds them from the gateway: the check can see them when they are there.
    let gateway = normal_closure(&meta, "gateway", |_| false);
    for name in NOT_IN_LEDGER {
        assert!(gateway.contains(*name), "{name} not found under gateway");
    }

    let members: BTreeSet<&str> = meta["workspace_members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap())
        .collect();
    let mut users = Vec::new();
    for package in meta["packages"].as_array().unwrap() {
        if !members.contains(package["id"].as_str().unwrap()) {
            continue;
        }
        let name = package["name"].as_str().unwrap();
        let uses_gateway = package["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["name"] == "gateway");
        if uses_gateway && !MAY_USE_GATEWAY.contains(&name) {
            users.push(name.to_owned());
        }
    }
    assert!(users.is_empty(), "{users:?} depend on gateway");
}

#[test]
fn audit_depends_on_no_other_workspace_crate() {
    let meta = metadata();
    let member_ids: BTreeSet<&str> = meta["workspace_members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap())
        .collect();
    let members: BTreeSet<&str> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| member_ids.contains(p["id"].as_str().unwrap()))
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    let ours: Vec<String> = normal_closure(&meta, "audit", |_| false)
        .into_iter()
        .filter(|name| name != "audit" && members.contains(name.as_str()))
        .collect();
    assert!(ours.is_empty(), "audit depends on {ours:?}");
    // The same walk finds a workspace crate where there is one.
    assert!(normal_closure(&meta, "ledger", |_| false).contains("audit"));
}
