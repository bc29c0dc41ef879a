//! Who may call which route: the route policy (`policies/routes.toml`).
//!
//! The policy names, per route (method and path template), the scopes a caller's token must
//! hold, and roles: named sets of scopes that a token's `roles` claim grants. It is built into
//! the binary and may be replaced by a file (`policy_file`). At start [`Policy::check`] holds it
//! against the routes the server serves and their handlers' own scopes (from the OpenAPI
//! document): a served route without a rule, a rule for no route, a rule asking less than the
//! handler, or scopes on a route that is public in code (no token is read there) stops the
//! start. The `Auth` extractor (`api::extract`), the first a handler takes, enforces the route's
//! rule and the handler's own scope, so a refused request reaches no other extractor.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use axum::http::Method;
use serde::Deserialize;

use crate::auth::Identity;

/// The policy built into the binary.
pub const BUILT_IN: &str = include_str!("../../policies/routes.toml");

/// Where the built-in policy comes from, for messages.
pub const BUILT_IN_NAME: &str = "policies/routes.toml (built in)";

/// Why a policy cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("route policy {origin}: {reason}")]
pub struct PolicyError {
    /// The file, or the built-in policy.
    pub origin: String,
    /// What is wrong.
    pub reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    roles: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    route: Vec<RouteRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteRule {
    method: String,
    path: String,
    scopes: Vec<String>,
}

/// A route as the server serves it: method, path template, and the scopes its handler
/// requires itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedRoute {
    /// The method.
    pub method: Method,
    /// The path template (`/v1/accounts/{account_id}`).
    pub path: String,
    /// The handler's own scopes.
    pub scopes: Vec<String>,
}

/// A loaded route policy.
#[derive(Debug, Clone)]
pub struct Policy {
    origin: String,
    /// By path template, then method: looked up by `&str`, no allocation per request.
    routes: HashMap<String, Vec<(Method, Vec<String>)>>,
    roles: BTreeMap<String, Vec<String>>,
}

impl Policy {
    /// The policy built into the binary.
    pub fn built_in() -> Result<Policy, PolicyError> {
        Policy::parse(BUILT_IN, BUILT_IN_NAME)
    }

    /// The policy in a file.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| PolicyError {
            origin: origin.clone(),
            reason: e.to_string(),
        })?;
        Policy::parse(&text, &origin)
    }

    /// Parses a policy; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Policy, PolicyError> {
        let fail = |reason: String| PolicyError {
            origin: origin.to_owned(),
            reason,
        };
        let file: PolicyFile = toml::from_str(text).map_err(|e| fail(e.to_string()))?;
        for (role, scopes) in &file.roles {
            if role.trim().is_empty() || scopes.iter().any(|s| s.trim().is_empty()) {
                return Err(fail(format!(
                    "role {role:?}: names and scopes must not be empty"
                )));
            }
        }
        let mut routes: HashMap<String, Vec<(Method, Vec<String>)>> = HashMap::new();
        for rule in file.route {
            let method = Method::from_bytes(rule.method.as_bytes())
                .map_err(|_| fail(format!("{:?} is not a method", rule.method)))?;
            if !rule.path.starts_with('/') {
                return Err(fail(format!("path {:?} does not start with /", rule.path)));
            }
            if rule.scopes.iter().any(|s| s.trim().is_empty()) {
                return Err(fail(format!("{method} {}: an empty scope", rule.path)));
            }
            let methods = routes.entry(rule.path.clone()).or_default();
            if methods.iter().any(|(m, _)| *m == method) {
                return Err(fail(format!("{method} {}: two rules", rule.path)));
            }
            methods.push((method, rule.scopes));
        }
        Ok(Policy {
            origin: origin.to_owned(),
            routes,
            roles: file.roles,
        })
    }

    /// Holds the policy against the routes the server serves; see the module docs.
    pub fn check(&self, served: &[ServedRoute]) -> Result<(), PolicyError> {
        let fail = |reason: String| PolicyError {
            origin: self.origin.clone(),
            reason,
        };
        let mut known: BTreeSet<&str> = BTreeSet::new();
        for route in served {
            let Some(scopes) = self.rule(&route.method, &route.path) else {
                return Err(fail(format!(
                    "{} {} has no rule: every route needs one",
                    route.method, route.path
                )));
            };
            if route.scopes.is_empty() && !scopes.is_empty() {
                return Err(fail(format!(
                    "{} {} is public (its handler reads no token): a rule cannot ask scopes of it",
                    route.method, route.path
                )));
            }
            if let Some(missing) = route.scopes.iter().find(|s| !scopes.contains(s)) {
                return Err(fail(format!(
                    "{} {} needs at least scope {missing}, which its handler requires",
                    route.method, route.path
                )));
            }
            known.extend(route.scopes.iter().map(String::as_str));
        }
        let mut rules: Vec<(&Method, &String)> = self
            .routes
            .iter()
            .flat_map(|(path, methods)| methods.iter().map(move |(m, _)| (m, path)))
            .collect();
        rules.sort_by(|a, b| (a.1, a.0.as_str()).cmp(&(b.1, b.0.as_str())));
        for (method, path) in rules {
            if !served
                .iter()
                .any(|r| r.method == *method && r.path == *path)
            {
                return Err(fail(format!("{method} {path}: no such route")));
            }
        }
        // A role can grant only scopes some route asks for: a misspelt one grants nothing.
        let asked: BTreeSet<&str> = self
            .routes
            .values()
            .flatten()
            .flat_map(|(_, scopes)| scopes)
            .map(String::as_str)
            .chain(known)
            .collect();
        for (role, scopes) in &self.roles {
            if let Some(unknown) = scopes.iter().find(|s| !asked.contains(s.as_str())) {
                return Err(fail(format!(
                    "role {role} grants {unknown}, which no route asks for"
                )));
            }
        }
        Ok(())
    }

    /// The scopes a request needs: `None` for a route the policy does not name. HEAD is
    /// treated as GET.
    pub fn required(&self, method: &Method, path: &str) -> Option<&[String]> {
        let method = if method == Method::HEAD {
            &Method::GET
        } else {
            method
        };
        self.rule(method, path)
    }

    fn rule(&self, method: &Method, path: &str) -> Option<&[String]> {
        self.routes
            .get(path)?
            .iter()
            .find(|(m, _)| m == method)
            .map(|(_, scopes)| scopes.as_slice())
    }

    /// Whether `identity` holds `scope`, itself or through one of its roles.
    pub fn grants(&self, identity: &Identity, scope: &str) -> bool {
        identity.has_scope(scope)
            || identity.roles.iter().any(|role| {
                self.roles
                    .get(role)
                    .is_some_and(|scopes| scopes.iter().any(|s| s == scope))
            })
    }
}

/// The routes an OpenAPI document describes, with the scopes of each operation's `bearer`
/// security requirement.
pub fn served_routes(doc: &serde_json::Value) -> Vec<ServedRoute> {
    let mut out = Vec::new();
    let Some(paths) = doc.get("paths").and_then(|p| p.as_object()) else {
        return out;
    };
    for (path, item) in paths {
        let Some(item) = item.as_object() else {
            continue;
        };
        for (method, operation) in item {
            let Ok(method) = Method::from_bytes(method.to_ascii_uppercase().as_bytes()) else {
                continue;
            };
            let scopes = operation
                .get("security")
                .and_then(|s| s.as_array())
                .into_iter()
                .flatten()
                .filter_map(|req| req.get("bearer").and_then(|b| b.as_array()))
                .flatten()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect();
            out.push(ServedRoute {
                method,
                path: path.clone(),
                scopes,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served() -> Vec<ServedRoute> {
        let route = |method: Method, path: &str, scopes: &[&str]| ServedRoute {
            method,
            path: path.to_owned(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        };
        vec![
            route(Method::GET, "/health/live", &[]),
            route(Method::GET, "/v1/accounts", &["ledger:read"]),
            route(Method::POST, "/v1/accounts", &["ledger:write"]),
        ]
    }

    const GOOD: &str = r#"
        [roles]
        auditor = ["ledger:read"]
        [[route]]
        method = "GET"
        path = "/health/live"
        scopes = []
        [[route]]
        method = "GET"
        path = "/v1/accounts"
        scopes = ["ledger:read"]
        [[route]]
        method = "POST"
        path = "/v1/accounts"
        scopes = ["ledger:write", "ledger:admin"]
    "#;

    fn refusal(text: &str) -> String {
        match Policy::parse(text, "test").and_then(|p| p.check(&served())) {
            Ok(()) => panic!("accepted: {text}"),
            Err(e) => e.reason,
        }
    }

    #[test]
    fn a_policy_that_covers_every_route_at_least_as_strictly_is_accepted() {
        let policy = Policy::parse(GOOD, "test").expect("parse");
        policy.check(&served()).expect("check");
        assert_eq!(
            policy.required(&Method::POST, "/v1/accounts"),
            Some(&["ledger:write".to_owned(), "ledger:admin".to_owned()][..])
        );
        assert_eq!(
            policy.required(&Method::HEAD, "/v1/accounts"),
            Some(&["ledger:read".to_owned()][..])
        );
        assert_eq!(policy.required(&Method::DELETE, "/v1/accounts"), None);
    }

    #[test]
    fn gaps_excess_and_weakening_are_refused() {
        // A served route without a rule.
        let missing = GOOD.replace("path = \"/health/live\"", "path = \"/health/gone\"");
        assert!(refusal(&missing).contains("GET /health/live has no rule"));
        // A rule asking less than the handler.
        let weak = GOOD.replace("[\"ledger:write\", \"ledger:admin\"]", "[\"ledger:read\"]");
        assert!(refusal(&weak).contains("needs at least scope ledger:write"));
        // A rule for a route that does not exist.
        let extra = format!(
            "{GOOD}\n[[route]]\nmethod = \"DELETE\"\npath = \"/v1/accounts\"\nscopes = []\n"
        );
        assert!(refusal(&extra).contains("DELETE /v1/accounts: no such route"));
        // Two rules for one route.
        let twice =
            format!("{GOOD}\n[[route]]\nmethod = \"GET\"\npath = \"/v1/accounts\"\nscopes = []\n");
        assert!(refusal(&twice).contains("two rules"));
        // A role granting a scope no route asks for (a typo).
        let typo = GOOD.replace("auditor = [\"ledger:read\"]", "auditor = [\"ledger:raed\"]");
        assert!(refusal(&typo).contains("grants ledger:raed"));
        // Scopes on a route that is public in code.
        let public = GOOD.replacen("scopes = []", "scopes = [\"ledger:read\"]", 1);
        assert!(refusal(&public).contains("is public"));
        // Unknown fields, bad methods, bad paths, empty scopes, bad syntax.
        assert!(
            refusal(&GOOD.replace("scopes = []", "scopes = []\npublic = true"))
                .contains("unknown field")
        );
        assert!(refusal(&GOOD.replace("\"GET\"", "\"G ET\"")).contains("is not a method"));
        assert!(
            refusal(&GOOD.replace("\"/health/live\"", "\"health/live\""))
                .contains("does not start with /")
        );
        assert!(refusal(&GOOD.replace("scopes = []", "scopes = [\"\"]")).contains("empty scope"));
        assert!(!refusal("[[route]").is_empty());
    }

    #[test]
    fn roles_grant_their_scopes() {
        let policy = Policy::parse(GOOD, "test").expect("parse");
        let identity = |scopes: &[&str], roles: &[&str]| Identity {
            client_id: None,
            subject: "s".into(),
            tenant: ledger::TenantId::new("acme").expect("tenant"),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            roles: roles.iter().map(|s| (*s).to_owned()).collect(),
            expires_at: 0,
            cert_thumbprint: None,
        };
        assert!(policy.grants(&identity(&["ledger:read"], &[]), "ledger:read"));
        assert!(policy.grants(&identity(&[], &["auditor"]), "ledger:read"));
        assert!(!policy.grants(&identity(&[], &["auditor"]), "ledger:write"));
        assert!(!policy.grants(&identity(&[], &["nobody"]), "ledger:read"));
    }

    #[test]
    fn the_built_in_policy_parses() {
        Policy::built_in().expect("built in");
    }
}
